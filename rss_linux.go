//go:build linux

package leaktest

import (
	"os"
	"syscall"
)

// openRSS opens /proc/self/statm once; each read is a pread of the same
// descriptor, so sampling opens no files and allocates nothing.
func openRSS() *rssSource {
	fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	r := &rssSource{fd: fd, pageSize: uint64(os.Getpagesize())}
	if _, ok := r.read(); !ok {
		r.close()
		return nil
	}
	return r
}

// read returns resident bytes: the second field of statm, in pages.
func (r *rssSource) read() (uint64, bool) {
	n, err := syscall.Pread(r.fd, r.buf[:], 0)
	if err != nil || n <= 0 {
		return 0, false
	}
	b := r.buf[:n]
	i := 0
	for i < len(b) && b[i] != ' ' { // skip "size"
		i++
	}
	i++
	var pages uint64
	digits := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		pages = pages*10 + uint64(b[i]-'0')
		digits++
	}
	if digits == 0 {
		return 0, false
	}
	return pages * r.pageSize, true
}

func (r *rssSource) close() { syscall.Close(r.fd) }
