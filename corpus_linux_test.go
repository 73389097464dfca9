package leaktest

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// The mappings mmapLeak keeps, in an array allocated before the
// measurement: only the mapping grows. (Not a global array: the collector
// would scan its 3 MiB of slice headers at every collection of every test.)
var maps [][]byte

// mmapLeak maps 4 KiB of anonymous memory per call, writes it and keeps
// the mapping.
func mmapLeak(flags int) func(testing.TB) (func(), func()) {
	return func(testing.TB) (func(), func()) {
		maps = make([][]byte, 0, 1<<17) // more than any run here maps, attribution windows included
		return func() {
				b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|flags)
				if err != nil {
					panic(err)
				}
				b[0] = 1 // touched, so resident
				if len(maps) < cap(maps) {
					maps = append(maps, b)
				}
			}, func() {
				for _, b := range maps {
					syscall.Munmap(b)
				}
				maps = nil
			}
	}
}

// Workloads that need Linux system calls.
func init() {
	cleanCorpus = append(cleanCorpus, []workload{
		{name: "rss/mmap-file-read-in-order", needs: rssJudged, setup: mappedFile(64 << 20)},
		// A log ring allocated before the run and written a record at a
		// time: its pages become resident one after another, which RSS
		// cannot tell from memory outside Go, until the ring wraps.
		{name: "rss/ring-buffer-written-in-order", needs: rssJudged, setup: func(testing.TB) (func(), func()) {
			fn, ring := ringWriter(64 << 20)
			return fn, func() { runtime.KeepAlive(ring) }
		}},
	}...)
	leakyCorpus = append(leakyCorpus, []workload{
		{name: "rss/mmap-4KiB", leaks: RSS, needs: rssJudged, setup: mmapLeak(syscall.MAP_PRIVATE)},
		// Shared anonymous memory is shmem to the kernel, not anonymous
		// memory: RSS outside Go counts it too.
		{name: "rss/shared-mmap-4KiB", leaks: RSS, needs: rssJudged, setup: mmapLeak(syscall.MAP_SHARED)},
		// Beside 16 MiB of the Go heap never written, RSS growth could be
		// that heap's until it passes it (checkUnwritten), and must still
		// be found. (Whether the heap can be proven unwritten depends on
		// what the process holds outside Go: the tests that need it run
		// in a fresh process, in rss_linux_test.go.)
		{name: "rss/mmap-4KiB-beside-an-unwritten-buffer", leaks: RSS, needs: rssJudged, setup: func(tb testing.TB) (func(), func()) {
			buf := make([]byte, 16<<20)
			fn, teardown := mmapLeak(syscall.MAP_PRIVATE)(tb)
			return fn, func() { teardown(); runtime.KeepAlive(buf) }
		}},
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

const tmpfsMagic = 0x01021994

// mappedFile maps a file of size bytes and reads the next page of it at
// each call, as a reader of a memory-mapped log or database does: the
// file's pages become resident one after another, RSS grows by a page
// per call until all of it is, and that is not a leak. The file is
// written with non-zero data, so every page is a page of the page cache.
func mappedFile(size int) func(testing.TB) (func(), func()) {
	return func(tb testing.TB) (func(), func()) {
		dir := tb.TempDir()
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err == nil && fs.Type == tmpfsMagic {
			tb.Skip("the temporary directory is on tmpfs, whose files are memory (shmem), not page cache")
		}
		f, err := os.Create(filepath.Join(dir, "log"))
		if err != nil {
			tb.Fatal(err)
		}
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(i*7 + 1)
		}
		for n := 0; n < size; n += len(chunk) {
			if _, err := f.Write(chunk); err != nil {
				tb.Fatal(err)
			}
		}
		data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		off := 0
		return func() {
				sinkCount += int(data[off])
				off = (off + 4096) % size
			}, func() {
				syscall.Munmap(data)
			}
	}
}
