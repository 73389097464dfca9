package leaktest

import "sync"

// rssSource reads the resident set size of the process: the memory the
// kernel has in RAM for it, the Go heap, cgo's malloc, mmap'd regions and
// the runtime alike. It is the only view of memory the Go heap never sees.
// Reading must not allocate: it happens inside the measuring loop.
//
// Where the operating system gives no cheap, cgo-free reading (darwin,
// windows and others), openRSS returns nil and RSS is reported as
// unavailable, never as a failure.
//
// The lock is for close, as for fdCounter.
type rssSource struct {
	mu      sync.Mutex
	fd      int  // -1 when closed
	hasFile bool // the kernel reports RssFile (Linux 4.5 and later)
	buf     [16 << 10]byte
}

// rssReading is one reading: the whole resident set, and its part that
// is pages of files mapped into memory (the binary's code, mmap'd files),
// which the kernel can drop and read again at any time. What remains
// (anonymous and shared memory) is what a leak outside the Go heap grows.
// swap is the process's memory swapped out: neither resident nor unwritten.
type rssReading struct {
	total, file, swap uint64
}
