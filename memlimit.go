package leaktest

import (
	"math"
	"runtime/debug"
	"sync"
)

// A memory limit below what the process's Go memory needs has the
// collector run non-stop. Each sample then first waits for the collection
// under way, whose mark began during fn's calls, before forcing its own:
// two full collections instead of one (a leak beside a 100 MiB live heap
// under a 64 MiB limit: 6.38 s to a verdict instead of 3.67 s, medians of
// 5). And the calls between samples run beside collections, each of which
// lets the runtime keep a little heap (runtimeAllowance), so the heap
// limit per call grows with them (to 60 B per call once, for a function
// making 512 B of garbage per call, measured).
//
// So while measuring, the limit is kept an eighth (4 MiB at least) above
// the Go memory that the last collection left, when the user's limit is
// lower (a limit just above that memory sets off collections between
// samples too), and restored when the measurement ends, on every path. The
// extra memory is bounded by that eighth; a limit above it is not touched.
type memLimit struct {
	mu      sync.Mutex
	user    int64 // the limit when the measurement began
	set     int64 // the limit in force by this measurement's doing
	high    int64 // the highest limit set after a collection of the measurement's (raise), 0 if none was
	done    bool  // restored, or given up
	changed bool  // given up: the limit changed under the measurement (fn set one)
}

// newMemLimit raises the limit for the Go memory before the measurement's
// first collections, so that they do not wait for the runtime's either.
// That memory may hold garbage, so it does not count as the highest limit.
func newMemLimit(goMem uint64) *memLimit {
	user := debug.SetMemoryLimit(-1)
	l := &memLimit{user: user, set: user}
	l.raise(goMem)
	l.high = 0
	return l
}

// headroom is the Go memory that a limit leaves free for fn's calls
// between samples.
func headroom(goMem uint64) int64 {
	return int64(max(goMem/8, 4<<20))
}

// raise sets the limit for the Go memory after a collection. It allocates
// nothing (sample calls it).
func (l *memLimit) raise(goMem uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	if debug.SetMemoryLimit(-1) != l.set {
		l.done, l.changed = true, true // fn set its own: leave it
		return
	}
	want := l.user
	if goMem < math.MaxInt64/2 {
		want = max(want, int64(goMem)+headroom(goMem))
	}
	if want != l.set {
		debug.SetMemoryLimit(want)
		l.set = want
	}
	l.high = max(l.high, want)
}

// restore puts the user's limit back, unless fn set one of its own; no
// raise takes effect after it.
func (l *memLimit) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done && debug.SetMemoryLimit(-1) == l.set {
		debug.SetMemoryLimit(l.user)
	}
	l.done = true
}

// raised reports the user's limit and the highest one set in its place
// after a sample's collection, if the limit was raised; kept is true when
// the limit changed under the measurement and was left as it was.
func (l *memLimit) raised() (user, high int64, kept, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.user, l.high, l.changed, l.high > l.user
}
