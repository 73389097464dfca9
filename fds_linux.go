//go:build linux

package leaktest

import (
	"os"
	"strconv"
	"sync"
	"syscall"
)

// fdCounter counts the open descriptors of the process by listing
// /proc/self/fd into a buffer it owns. The directory stays open and is
// rewound for each count (procfs lists the table anew), because opening it
// would allocate the path.
//
// The lock is for close, which a timed-out Measure calls while the
// abandoned loop may still count: a descriptor number closed and reused
// would be read as another file.
type fdCounter struct {
	mu  sync.Mutex
	dir int // -1 when closed
	buf [8192]byte
}

func newFDCounter() *fdCounter {
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	c := &fdCounter{dir: dir}
	if _, ok := c.count(); !ok {
		c.close()
		return nil
	}
	return c
}

func (c *fdCounter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir >= 0 {
		syscall.Close(c.dir)
		c.dir = -1
	}
}

// count returns the number of open descriptors, not counting its own.
func (c *fdCounter) count() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir < 0 {
		return 0, false
	}
	if _, err := syscall.Seek(c.dir, 0, 0); err != nil {
		return 0, false
	}
	total := 0
	for {
		n, err := syscall.Getdents(c.dir, c.buf[:])
		if err != nil {
			return 0, false
		}
		if n <= 0 {
			break
		}
		// linux_dirent64: ino(8) off(8) reclen(2) type(1) name...
		for off := 0; off+19 < n; {
			reclen := int(c.buf[off+16]) | int(c.buf[off+17])<<8
			if reclen == 0 {
				break
			}
			name := c.buf[off+19]
			if name != '.' { // "." and ".."; descriptors are digits
				total++
			}
			off += reclen
		}
	}
	return total - 1, true
}

// openFDs lists the descriptors open now with what they point at (a path,
// socket:[inode], pipe:[inode], anon_inode:...). It allocates, so it runs
// only before and after the measuring loop.
func openFDs() map[int]string {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	self := int(f.Fd())
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil
	}
	m := make(map[int]string, len(names))
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == self {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + name)
		if err != nil {
			continue // closed meanwhile
		}
		m[fd] = target
	}
	return m
}
