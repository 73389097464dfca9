//go:build linux

package leaktest

import (
	"bytes"
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
	if _, ok := r.read(); !ok {
		r.close()
		return nil
	}
	return r
}

var (
	keyVmRSS   = []byte("\nVmRSS:")
	keyRssFile = []byte("\nRssFile:") // Linux 4.5 and later
)

// read returns the resident bytes (VmRSS) and their file-backed part
// (RssFile, 0 where the kernel does not report it).
func (r *rssSource) read() (rssReading, bool) {
	n, err := syscall.Pread(r.fd, r.buf[:], 0)
	if err != nil || n <= 0 {
		return rssReading{}, false
	}
	b := r.buf[:n]
	total, ok := statusKB(b, keyVmRSS)
	if !ok {
		return rssReading{}, false
	}
	file, _ := statusKB(b, keyRssFile)
	return rssReading{total: total, file: min(file, total)}, true
}

// statusKB parses the value of key ("\nName:", then spaces, digits, " kB")
// in bytes.
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
	return kb << 10, digits > 0
}

func (r *rssSource) close() { syscall.Close(r.fd) }
