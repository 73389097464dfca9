//go:build linux

package leaktest

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// openRSS opens /proc/self/status once; each read is a pread of the same
// descriptor, so sampling opens no files and allocates nothing.
func openRSS() *rssSource {
	fd, err := syscall.Open("/proc/self/status", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	r := &rssSource{fd: fd}
	n, err := syscall.Pread(fd, r.buf[:], 0)
	if err != nil || n <= 0 || n == len(r.buf) {
		r.close()
		return nil
	}
	if _, ok := statusKB(r.buf[:n], keyVmRSS); !ok {
		r.close()
		return nil
	}
	_, r.hasFile = statusKB(r.buf[:n], keyRssFile)
	return r
}

var (
	keyVmRSS   = []byte("\nVmRSS:")
	keyRssFile = []byte("\nRssFile:") // Linux 4.5 and later
	keyVmSwap  = []byte("\nVmSwap:")
)

// read returns the resident bytes (VmRSS), their file-backed part
// (RssFile, where the kernel reports it) and the bytes swapped out. A
// reading that filled the buffer, or lacks a field it had before, is no
// reading: a value cut short would read as a step.
func (r *rssSource) read() (rssReading, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return rssReading{}, false
	}
	n, err := syscall.Pread(r.fd, r.buf[:], 0)
	if err != nil || n <= 0 || n == len(r.buf) {
		return rssReading{}, false
	}
	b := r.buf[:n]
	total, ok := statusKB(b, keyVmRSS)
	if !ok {
		return rssReading{}, false
	}
	var file uint64
	if r.hasFile {
		if file, ok = statusKB(b, keyRssFile); !ok {
			return rssReading{}, false
		}
	}
	swap, _ := statusKB(b, keyVmSwap)
	return rssReading{total: total, file: min(file, total), swap: swap}, true
}

// statusKB parses the value of key ("\nName:", then blanks, digits and
// " kB") in bytes; false unless all of it is there.
func statusKB(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	i += len(key)
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	var kb uint64
	digits := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		kb = kb*10 + uint64(b[i]-'0')
		digits++
	}
	if digits == 0 || !bytes.HasPrefix(b[i:], kbSuffix) {
		return 0, false
	}
	return kb << 10, true
}

var kbSuffix = []byte(" kB")

func (r *rssSource) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		syscall.Close(r.fd)
		r.fd = -1
	}
}

// arenasPerThread reports whether this process's C library is glibc, its
// malloc not capped at one arena when the process started (glibc reads its
// settings then): each thread that mallocs may get an arena of its own,
// which C memory in use fills again.
var arenasPerThread = sync.OnceValue(func() bool {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil || !bytes.Contains(maps, []byte("/libc.so.6")) {
		return false
	}
	env, err := os.ReadFile("/proc/self/environ") // as it started
	return err != nil || !oneArena(strings.Split(string(env), "\x00"))
})

// oneArena reports whether environment env caps glibc's malloc at one
// arena: by glibc.malloc.arena_max in GLIBC_TUNABLES, which wins, or by
// MALLOC_ARENA_MAX.
func oneArena(env []string) bool {
	alias, tunable := "", ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "MALLOC_ARENA_MAX="); ok {
			alias = v
		}
		if v, ok := strings.CutPrefix(kv, "GLIBC_TUNABLES="); ok {
			for _, t := range strings.Split(v, ":") {
				if v, ok := strings.CutPrefix(t, "glibc.malloc.arena_max="); ok {
					tunable = v
				}
			}
		}
	}
	v := alias
	if tunable != "" {
		v = tunable
	}
	n, err := strconv.ParseUint(v, 0, 64)
	return err == nil && n == 1
}
