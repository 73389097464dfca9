package leaktest

import "syscall"

// The mappings rss/mmap-4KiB keeps, in an array outside the heap.
var (
	maps   [1 << 15][]byte
	mapped int
)

// Workloads that need Linux system calls.
func init() {
	leakyCorpus = append(leakyCorpus, []workload{
		{name: "rss/mmap-4KiB", leaks: RSS, needs: rssJudged, setup: simple(func() {
			b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
			if err != nil {
				panic(err)
			}
			b[0] = 1 // touched, so resident
			if mapped < len(maps) {
				maps[mapped] = b // outside the heap: only the mapping grows
				mapped++
			}
		}, func() {
			for _, b := range maps[:mapped] {
				syscall.Munmap(b)
			}
			maps, mapped = [len(maps)][]byte{}, 0
		})},
		{name: "fds/raw-descriptor", leaks: FDs, needs: linuxOnly, setup: simple(func() {
			fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				panic(err)
			}
			sinkFDs = append(sinkFDs, fd)
		}, func() {
			for _, fd := range sinkFDs {
				syscall.Close(fd)
			}
			sinkFDs = nil
		})},
	}...)
}
