package leaktest

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sampling plan. Calls between samples stay the same for the whole run:
// a run whose rhythm changed (more calls between collections later on)
// would change what fn has in flight at each sample — goroutines not yet
// finished, their runtime structures — and that change would look like
// growth. The rule judges the samples at 64, 96, 128, 192 and 256 (a leak
// found by two judgements in a row of one chain, 64-128-256 or 96-192, more
// where the calls sped up, stands; see judgementChain); only a run still undecided
// at 256 samples drops every other one and doubles the calls between
// samples.
const (
	capacity     = 256
	firstVerdict = 64        // samples before the first judgement
	fixedSamples = 48        // samples spread over Iterations(n)
	minSamples   = 32        // taken even past the budget, for a verdict with power
	minCalls     = 4096      // an adaptive verdict needs at least this many calls...
	targetSample = 64        // ...reached after this many samples
	maxBin       = 64        // calls between samples, at most
	guardBytes   = 256 << 20 // growth that stops the loop before memory runs out
	guardFDs     = 2048      // and before descriptors do
)

// The series sampled. offGo is RSS, less its pages of mapped files, minus
// the memory the Go runtime holds: the part of RSS that the Heap series
// cannot explain. File pages are left out because the kernel reads and
// drops them as it likes: an mmap'd file read in order grows them until it
// is all resident, and so does code run for the first time. It is known
// only within bounds: free heap pages not yet returned to the OS may or may not
// be resident (pages of a large object that were never touched are not),
// and after a forced scavenge some MiB of them can stay, a different
// amount at each sample (with 10 MiB of garbage per call and other
// processes on the cores). sOffGo counts them as resident (the lower
// bound), sOffGoHigh as not (the upper bound); where the two differ by
// little, RSS outside Go is known (judgeOffGo).
//
// sAnon is RSS outside mapped files, and sHeapMem the Go heap's memory
// less what the process has swapped out. Their difference is a lower bound
// on heap memory never written (or returned to the OS and not written
// since): the resident heap cannot be more than sAnon. A buffer allocated
// before the run and written during it grows RSS outside Go exactly as a
// leak there does (checkUnwritten).
const (
	sHeap = iota
	sRSS
	sOffGo
	sOffGoHigh
	sAnon
	sHeapMem
	sGoroutines
	sFDs
	numSeries
)

const (
	mLive = iota
	mTotal
	mReleased
	mFree
	mObjects
	mUnused
	mStacks
	mAllocs
	mCycles
)

type meter struct {
	cfg *config
	fn  func()

	// Everything the loop touches is allocated in newMeter.
	xs      []float64
	ys      [][]float64 // numSeries built-in series, then one per Track gauge
	dropped []float64   // descriptors closed by the collector at each sample
	cycles  []float64   // collections completed by each sample
	ts      []float64   // seconds since start at each sample
	n       int         // samples held
	calls   int
	loopID  int64   // the goroutine that calls fn
	bin     float64 // calls between samples
	origin  int     // first call judged with a fixed warm-up; 0 otherwise
	base    int     // the calls at sample 0 of the current rhythm

	met  []metrics.Sample
	rss  *rssSource
	fds  *fdCounter
	mem  *memLimit
	prof profiling // runtime.MemProfileRate: 0 while measuring, 1 in the attribution window
	// attrSkipped is the calls of an attribution window that would not
	// have fit before the Timeout, so did not run; 0 otherwise.
	attrSkipped int
	st          *stats
	rng         uint64
	settled     int   // descriptors open after the last sample's collection
	gSettled    int   // goroutines after the last sample's collection
	cgoCalls    int64 // runtime.NumCgoCall when the loop began
	lockForC    bool  // lock the loop to its thread once C is called (lockIfCgo)
	locked      bool  // it is
	calledC     bool  // C was called while the loop ran
	// knownX and knownY are scratch space for the samples where RSS
	// outside Go is known (judgeOffGo).
	knownX, knownY []float64

	start         time.Time     // when the measurement began, setup included
	deadline      time.Time     // when the Timeout ends it, counted from Measure's call
	sampleCost    time.Duration // of the last sample
	samplesAll    time.Duration // of every sample taken, restarts included
	sampled       int
	fnTime        time.Duration // spent in fn
	plan          planMark
	grown         bool          // the plan was raised once (replan)
	extended      extension     // why the run went past its budget (extend), or 0
	undecidedWhy  string        // what was undecided when it did (extendedUndecided)
	budgetsAdded  int           // extensions for it
	loopEnd       time.Duration // when the loop ended, since start
	extendDecided bool
	extendUntil   time.Time
	guardBase     []float64
	guarded       int // series that tripped the memory guard, or -1
	// drained is the least count of goroutines and of descriptors after
	// the calls stopped (drainCounts), where one was judged to leak.
	drained    map[int]float64
	hasGuard   bool
	judged     []judgement
	judgedList []int
	// found[c][s]: the last judgement of chain c found series s leaking.
	found [2][]bool
	// standing holds, per series, a leak found again (rule 5) whose
	// growth has not been seen to stop since (standingLeak).
	standing []standingLeak
	final    bool // the loop has ended: judge lets a standing leak stand
	attr     *attribution
	label    string // pprof label value of this measurement
	allocs0  uint64

	callsNow atomic.Int64 // calls made, readable after a timeout
	abort    atomic.Bool
	inFn     bool
	inFnNow  atomic.Bool  // inFn, for the caller after a timeout
	gauge    int          // 1 + the Track gauge being read, 0 when none is
	gaugeNow atomic.Int32 // gauge, for the caller after a timeout
	err      error
}

func newMeter(cfg *config, fn func()) *meter {
	m := &meter{
		start:   time.Now(),
		cfg:     cfg,
		fn:      fn,
		xs:      make([]float64, 0, capacity+1),
		knownX:  make([]float64, 0, capacity+1),
		knownY:  make([]float64, 0, capacity+1),
		dropped: make([]float64, 0, capacity+1),
		cycles:  make([]float64, 0, capacity+1),
		ts:      make([]float64, 0, capacity+1),
		met: []metrics.Sample{
			mLive:     {Name: "/gc/heap/live:bytes"},
			mTotal:    {Name: "/memory/classes/total:bytes"},
			mReleased: {Name: "/memory/classes/heap/released:bytes"},
			mFree:     {Name: "/memory/classes/heap/free:bytes"},
			mObjects:  {Name: "/memory/classes/heap/objects:bytes"},
			mUnused:   {Name: "/memory/classes/heap/unused:bytes"},
			mStacks:   {Name: "/memory/classes/heap/stacks:bytes"},
			mAllocs:   {Name: "/gc/heap/allocs:bytes"},
			mCycles:   {Name: "/gc/cycles/total:gc-cycles"},
		},
		rss:     openRSS(),
		fds:     newFDCounter(),
		st:      newStats(capacity + 1),
		rng:     uint64(time.Now().UnixNano()) | 1,
		label:   strconv.FormatInt(measurements.Add(1), 10),
		guarded: -1,
	}
	total := numSeries + len(cfg.gauges)
	m.ys = make([][]float64, total)
	for i := range m.ys {
		m.ys[i] = make([]float64, 0, capacity+1)
	}
	m.guardBase = make([]float64, total)
	m.judged = make([]judgement, total)
	m.found = [2][]bool{make([]bool, total), make([]bool, total)}
	m.standing = make([]standingLeak, total)
	m.judgedList = judgedList(len(cfg.gauges))
	// Initialise everything lazy before the first sample: runtime/metrics
	// builds its tables on first use, and the first finalizer starts the
	// runtime's finalizer goroutine.
	metrics.Read(m.met)
	m.mem = newMemLimit(m.goMemory())
	waitFinalizers()
	if m.fds != nil {
		m.settled, _ = m.fds.count()
	}
	m.gSettled = runtime.NumGoroutine()
	return m
}

func (m *meter) close() {
	m.mem.restore()
	m.closeFiles()
}

// closeFiles closes the descriptors the samples read, before Measure
// returns, so that they are not counted as the caller's: after the loop,
// or at a timeout, while the abandoned loop may still hold them.
func (m *meter) closeFiles() {
	if m.rss != nil {
		m.rss.close()
	}
	if m.fds != nil {
		m.fds.close()
	}
}

// gaugeName names the Track gauge of m.gauge k in errors.
func (m *meter) gaugeName(k int) string {
	return fmt.Sprintf("Track(%q)", m.cfg.gauges[k-1].name)
}

// gaugeError is a Track gauge that returned no number: the measurement
// stops with it as its error.
type gaugeError struct{ error }

// measurements numbers the measurements of the process, for their labels.
var measurements atomic.Int64

// loop runs in its own goroutine so that a call that blocks can be timed
// out, and a panic or runtime.Goexit in fn is caught.
func (m *meter) loop(done chan<- struct{}) {
	m.cgoCalls = runtime.NumCgoCall()
	m.lockForC = m.rss != nil && !raceEnabled && arenasPerThread()
	id := goroutineID()
	m.loopID = id
	loopGoroutine.Store(id)
	finished := false
	defer func() {
		loopGoroutine.CompareAndSwap(id, 0)
		r := recover()
		ge, isGauge := r.(gaugeError)
		switch {
		case isGauge:
			m.err = ge.error
		case r != nil && m.inFn:
			m.err = fmt.Errorf("leaktest: fn panicked on call %d: %v\n%s", m.calls, r, debug.Stack())
		case r != nil && m.gauge > 0:
			m.err = fmt.Errorf("leaktest: %s: the gauge panicked after %d calls: %v\n%s", m.gaugeName(m.gauge), m.calls, r, debug.Stack())
		case r != nil:
			m.err = fmt.Errorf("leaktest: internal error: %v\n%s", r, debug.Stack())
		case !finished && !m.abort.Load() && m.gauge > 0:
			m.err = fmt.Errorf("leaktest: %s: the gauge called runtime.Goexit after %d calls (t.FailNow, t.Fatal or t.SkipNow inside it?)", m.gaugeName(m.gauge), m.calls)
		case !finished && !m.abort.Load():
			m.err = fmt.Errorf("leaktest: fn called runtime.Goexit on call %d (t.FailNow, t.Fatal or t.SkipNow inside fn?)", m.calls)
		}
		m.prof.stop()
		m.closeFiles()
		if m.locked {
			runtime.UnlockOSThread() // before Measure returns
		}
		close(done)
	}()
	m.prof.set(0) // (profiling)
	warmThreads()
	warmGoroutines()
	time.Sleep(time.Microsecond) // allocates this goroutine's sleep timer now (sample sleeps)
	m.allocs0 = m.met[mAllocs].Value.Uint64()
	if m.cfg.iterations > 0 {
		m.fixed()
	} else {
		m.adaptive()
	}
	m.loopEnd = time.Since(m.start)
	m.calledC = runtime.NumCgoCall() != m.cgoCalls
	m.final = true
	if !m.abort.Load() && m.err == nil {
		m.drainCounts()
		m.attributeHeap()
	}
	finished = true
}

// countLeaks says whether count s (goroutines or descriptors) is judged,
// by the rule or by the guard, to leak.
func (m *meter) countLeaks(s int) bool {
	_, ok := m.limit(s)
	return ok && (m.judge(s).verdict == leak || m.guarded == s)
}

// inFlight says whether count s, judged to leak, fell once the calls
// stopped to no more than its least over the judged calls (drainCounts):
// what each call held for a while, not what it kept.
func (m *meter) inFlight(s int) bool {
	d, ok := m.drained[s]
	r0, _ := m.window()
	return ok && d <= slices.Min(m.ys[s][r0:m.n])
}

// drainMax and drainQuiet bound waitFalling.
const (
	drainMax   = time.Second
	drainQuiet = 50 * time.Millisecond
)

// drainCounts waits, once the calls have stopped, for a count judged to
// leak to fall, and records its least (drained). Goroutines or
// descriptors that each call holds for a while (a goroutine that closes
// its file 30 ms after the call) are in flight at every sample, beyond
// the sample's wait (settle), and their number follows the calls' pace,
// which changes through a run: judged a leak in 4 of 5 runs, 5 of 5 under
// -race. Kept ones do not end.
func (m *meter) drainCounts() {
	var series []int
	for _, s := range [...]int{sGoroutines, sFDs} {
		if m.countLeaks(s) {
			series = append(series, s)
		}
	}
	if len(series) > 0 {
		m.drained = m.waitFalling(series)
	}
}

// inFlightCounts lists the counts that drainCounts found in flight.
func (m *meter) inFlightCounts() []int {
	var series []int
	for _, s := range [...]int{sGoroutines, sFDs} {
		if m.inFlight(s) { // drained, so judged to leak
			series = append(series, s)
		}
	}
	return series
}

// waitFalling reads counts series (goroutines, descriptors) every
// millisecond while one still falls (within the last drainQuiet), up to
// drainMax, or a tenth of the Timeout before it ends (the attribution
// window's margin, so that a wait never races the Timeout's watchdog),
// and returns their least.
func (m *meter) waitFalling(series []int) map[int]float64 {
	least := make(map[int]float64, len(series))
	count := func(s int) float64 {
		if s == sFDs {
			n, _ := m.fds.count()
			return float64(n)
		}
		return float64(runtime.NumGoroutine())
	}
	for _, s := range series {
		least[s] = count(s)
	}
	start := time.Now()
	end := start.Add(drainMax)
	if d := m.deadline.Add(-m.cfg.timeout / 10); d.Before(end) {
		end = d
	}
	for last := start; time.Now().Before(end) && time.Since(last) < drainQuiet; {
		time.Sleep(time.Millisecond)
		for _, s := range series {
			if c := count(s); c < least[s] {
				least[s], last = c, time.Now()
			}
		}
	}
	return least
}

// attributeHeap runs the attribution window when the heap leaks.
func (m *meter) attributeHeap() {
	if _, ok := m.limit(sHeap); !ok || m.n < 2 {
		return
	}
	j := m.judge(sHeap)
	if j.verdict != leak && m.guarded != sHeap {
		return
	}
	slope := heapSlope(j)
	// Calling fn thousands more times would grow a goroutine or
	// descriptor leak further, and the heap they hold is theirs: report
	// folds it into their finding.
	for _, s := range [...]int{sGoroutines, sFDs} {
		if m.countLeaks(s) && !m.inFlight(s) {
			return
		}
	}
	m.attribute(slope, m.judgedLimit(sHeap), j.stood[1] > 0)
}

// lockIfCgo locks the loop to its thread once C has been called (by
// anything in the process: runtime.NumCgoCall), so that fn calls C from
// one thread: glibc's malloc may give each thread that calls it an arena
// of its own, and C memory reused call after call grew RSS by its size
// once per arena while the calls moved between threads (a clean fn's ring
// of 1024 C blocks judged a leak 6 runs in 6; rss/cgo-ring-of-100KiB-blocks
// in the corpus). Only where RSS is judged and glibc's arenas are not
// capped (lockForC), and only then: a locked goroutine that blocks gives
// up its P but keeps its thread, which must be woken to run it again, and
// a call that waits on a channel took 11 times as long
// (BenchmarkLockedLoop).
func (m *meter) lockIfCgo() {
	if m.lockForC && !m.locked && runtime.NumCgoCall() != m.cgoCalls {
		runtime.LockOSThread()
		m.locked = true
	}
}

// callTo calls fn until calls reaches target; false if aborted.
func (m *meter) callTo(target int) bool {
	t := time.Now()
	first := m.calls + 1
	defer func() {
		m.fnTime += time.Since(t)
		m.lockIfCgo()
	}()
	for m.calls < target {
		if m.abort.Load() {
			return false
		}
		m.calls++
		m.callsNow.Store(int64(m.calls))
		m.inFn = true
		m.inFnNow.Store(true)
		m.fn()
		m.inFnNow.Store(false)
		m.inFn = false
		if m.calls == first {
			m.lockIfCgo() // and at the end: not after every call
		}
	}
	return !m.abort.Load()
}

// warm runs a fixed warm-up and takes the sample all judged growth is
// measured from.
func (m *meter) warm() bool {
	if m.cfg.warmup > 0 {
		m.origin = m.cfg.warmup
		if !m.callTo(m.origin) {
			return false
		}
	}
	m.sample()
	return true
}

// fixed makes exactly the calls asked for, one sample in each of up to
// capacity bins, placed at random within its bin so that a sawtooth whose
// period matches the spacing cannot alias into a slope.
func (m *meter) fixed() {
	if !m.warm() {
		return
	}
	total := m.cfg.iterations
	bins := min(fixedSamples, total)
	m.bin = float64(total) / float64(bins)
	for j := 1; j <= bins; j++ {
		lo := total * (j - 1) / bins
		hi := total * j / bins
		target := m.origin + hi
		if j < bins {
			target = m.origin + lo + 1 + m.randn(hi-lo)
		}
		if !m.callTo(target) {
			return
		}
		m.sample()
		if m.guard() {
			return
		}
	}
}

// adaptive calibrates the calls between samples on the first two calls,
// then samples until a verdict, the budget or the memory guard.
func (m *meter) adaptive() {
	if !m.warm() {
		return
	}
	m.base = m.origin
	fastest := time.Duration(math.MaxInt64)
	for i := 1; i <= 2; i++ { // calibration: the first call is often the costliest
		t := time.Now()
		if !m.callTo(m.origin + i) {
			return
		}
		call := time.Since(t)
		fastest = min(fastest, call)
		m.sample()
		m.bin = m.planBin(call)
	}
	// A verdict needs minSamples samples, however slow the calls: when
	// fn's calls alone would not fit before the Timeout, say so now, not
	// with a timeout and a goroutine dump a minute later. (The samples'
	// own cost is left out: under load it varies, and a wrong error is
	// worse than a late one.)
	need := time.Duration(minSamples-m.n) * time.Duration(m.bin) * fastest
	if time.Now().Add(need).After(m.deadline) {
		m.err = fmt.Errorf("leaktest: fn took %v per call: the %d samples a verdict needs would take %v more, past the Timeout (%v); set a larger Timeout",
			fastest.Round(time.Millisecond), minSamples, need.Round(100*time.Millisecond), m.cfg.timeout)
		return
	}
	m.markPlan()
	for {
		for m.n <= capacity {
			j := m.n
			lo := m.base + int(float64(j-1)*m.bin)
			hi := m.base + int(float64(j)*m.bin)
			target := max(m.calls+1, lo+1+m.randn(hi-lo))
			if !m.callTo(target) {
				return
			}
			m.sample()
			if m.guard() {
				return
			}
			if m.replan() {
				continue
			}
			last := m.n - 1
			// minCalls counts planned calls: the jittered last sample may
			// fall a little short of them.
			if c := judgementChain(last); c >= 0 && float64(last)*m.bin >= minCalls {
				v, again := m.judgeChain(c)
				switch v {
				case clean:
					// A clean judgement ends the run, unless a leak
					// found before still stands: its growth did not
					// stop, only slowed per call (standingLeak).
					if c == 0 && !m.anyStanding() {
						return
					}
				case leak:
					// A leak must be found again at the next
					// judgement, whose late window is all new samples:
					// a step that fooled one judgement cannot fool two.
					// Even then the run goes on to its budget:
					// growth that stops within it is bounded, not a
					// leak. The leak stands until a judgement sees its
					// growth stop (standingLeak), which ends the run
					// clean at chain 0 or lets the last judgement
					// decide; an extension for undecided growth gives
					// it more time to stop. A ring filled by
					// append, a pool warming up to 32 connections or a
					// worker per tenant stop after 10 000–30 000 calls,
					// past the first judgements of a cheap function;
					// ended at the first confirmation, such runs failed
					// up to 3 in 3. So does memory that follows the
					// calls' pace (a cache of the last 20 ms of calls,
					// on a Go map that never shrinks) and steps up when
					// they speed up. Growth of an eighth of a guard ends
					// the run at once: a fast leak of kernel objects (a
					// mapping per call) would exhaust them first.
					if again && m.confirmed() {
						return
					}
				}
			}
			if m.n >= minSamples && time.Since(m.start)+m.sampleCost > m.cfg.budget && !m.extend() {
				return
			}
		}
		m.decimate()
	}
}

// confirmed says whether a leak found again (rule 5) ends the run before
// its budget: only when it has grown large.
func (m *meter) confirmed() bool {
	return m.grownLarge()
}

// extension is why a run went past its budget (meter.extended).
type extension int

const (
	extendedUnwritten extension = 1 + iota
	extendedUndecided
)

// maxBudgetsAdded is the most budgets an undecided run is extended by.
const maxBudgetsAdded = 2

// extend keeps a run going past its budget, decided when the budget is
// first passed and when an extension ends; the run's judgements go on as
// before, and the last one decides. Two cases, the first excluding the
// second:
//
//   - RSS outside Go may be a leak or Go heap written for the first time
//     (checkUnwritten), and that can be told in time: at the growth's rate
//     so far, the growth must be able to pass the heap's memory (which
//     writing the heap cannot do: a leak) before the extension ends. If it
//     is the heap being written, it stops before that. The extension runs
//     four times that long, so that a flat tail after the growth stopped
//     dominates the late window, within four budgets in all.
//   - No series leaks, and one is undecided (undecided): the report would
//     say "a larger Budget would tell". The run goes on for one more
//     budget, and again while still so, up to maxBudgetsAdded more. Under
//     CPU contention a 3 s budget held 10 000–40 000 calls, and a map that
//     grows in steps as its tables split, or a leak under a sawtooth of
//     garbage, read as a step and was missed.
//
// Either within half the time left before the Timeout, less a reserve for
// the attribution window and the last samples.
func (m *meter) extend() bool {
	now := time.Now()
	if now.Before(m.extendUntil) {
		return true
	}
	reserve := m.cfg.timeout/10 + m.cfg.budget/4 + (2*settleCycles+8)*m.sampleAvg()
	spare := (m.deadline.Sub(now) - reserve) / 2
	if spare <= 0 || m.extended == extendedUnwritten {
		return false
	}
	if !m.extendDecided {
		m.extendDecided = true
		j := m.judge(sOffGo)
		if _, ok := m.limit(sOffGo); ok && j.undecided() == unwrittenHeap && j.region.slope > 0 && m.calls > 0 {
			perCall := time.Since(m.start).Seconds() / float64(m.calls)
			need := j.room / j.region.slope * perCall // seconds; in float, as it can be huge
			spare := min(spare, 4*m.cfg.budget-time.Since(m.start))
			if need <= spare.Seconds() {
				m.extendUntil = now.Add(min(time.Duration(4*need*float64(time.Second)), spare))
				m.extended = extendedUnwritten
				return true
			}
		}
	}
	if m.budgetsAdded == maxBudgetsAdded {
		return false
	}
	if why := m.undecided(); why != "" {
		m.extendUntil = now.Add(min(m.cfg.budget, spare))
		m.extended = extendedUndecided
		m.undecidedWhy = why
		m.budgetsAdded++
		return true
	}
	return false
}

// undecided says what the report would note as undecided, "a larger
// Budget would tell" (growth above the limit without a clear trend, in the
// late window only, or that stopped), or "" when nothing is, or when a
// series leaks: the run's verdict is that leak.
func (m *meter) undecided() string {
	why := ""
	for _, s := range m.judgedSeries() {
		if _, ok := m.limit(s); !ok {
			continue
		}
		j := m.judge(s)
		if j.verdict == leak {
			return ""
		}
		if why != "" {
			continue
		}
		switch res := m.resource(s); j.undecided() {
		case stopped:
			why = fmt.Sprintf("%s had grown, then stopped", res)
		case lateOnly:
			why = fmt.Sprintf("%s had grown in the late window only", res)
		case noTrend:
			why = fmt.Sprintf("%s had grown above its limit without a clear trend", res)
		}
	}
	return why
}

// planBin picks the calls between samples: up to maxBin (times GOMAXPROCS/4
// on larger machines), fewer when calls
// are slow enough that targetSample samples would not fit in half the
// budget, and fewer when one call grows memory or descriptors so fast that
// a sample's worth of calls would pass an eighth of the guard.
func (m *meter) planBin(call time.Duration) float64 {
	// More calls between samples with more Ps, so that the runtime's
	// allowance per collection (see runtimeAllowance) stays under 4 B per call
	// for a cheap function however many cores the machine has.
	k := float64(maxBin * max(1, (runtime.GOMAXPROCS(0)+3)/4))
	if call > 0 {
		k = math.Min(k, float64(m.cfg.budget/2)/float64(targetSample)/float64(call))
	}
	if m.n >= 2 {
		last := m.n - 1
		for _, s := range [...]int{sHeap, sRSS, sFDs} {
			if g := m.ys[s][last] - m.ys[s][last-1]; g > 0 {
				k = math.Min(k, guardLimit(s)/8/g)
			}
		}
	}
	return math.Max(1, math.Floor(k))
}

// A planMark is where the current sampling plan began.
type planMark struct {
	n, calls int
	fnTime   time.Duration
}

func (m *meter) markPlan() {
	m.plan = planMark{n: m.n, calls: m.calls, fnTime: m.fnTime}
}

// replan checks the plan against what the calls made since really cost,
// after 2, 4, 8 and 16 samples. The two calibration calls can be far
// cheaper than later ones: a call that allocates 10 MiB gets fresh,
// already-zeroed pages right after a sample returned memory to the OS, and
// must clear reused ones later. They can be far costlier too, when the
// process was descheduled during one (other processes on the cores): a
// plan of 2 calls between samples instead of 64 makes a run of a few
// thousand calls where tens of thousands fit, and a small leak in noise
// needs them. When the calls between samples now come out at half the plan
// or fewer, or twice or more, the series starts again from this sample
// with the new plan, so that the rhythm stays constant within it. Only
// once upwards: plans that went up and down in turn, on a machine that
// deschedules the process now and then, would restart the series for
// ever, and it would never reach the samples a verdict needs.
func (m *meter) replan() bool {
	k := m.n - 1 - m.plan.n
	if k < 2 || k > 16 || k&(k-1) != 0 {
		return false
	}
	calls := m.calls - m.plan.calls
	call := (m.fnTime - m.plan.fnTime) / time.Duration(calls)
	bin := m.planBin(call)
	up := bin >= m.bin*2 && !m.grown
	if !up && bin > m.bin/2 {
		return false
	}
	m.grown = m.grown || up
	m.restart()
	m.bin = bin
	m.markPlan()
	return true
}

// restart keeps only the last sample, as the first of a new series.
func (m *meter) restart() {
	last := m.n - 1
	m.xs[0] = m.xs[last]
	m.dropped[0] = m.dropped[last]
	m.cycles[0] = m.cycles[last]
	m.ts[0] = m.ts[last]
	m.xs, m.dropped, m.cycles, m.ts = m.xs[:1], m.dropped[:1], m.cycles[:1], m.ts[:1]
	for s := range m.ys {
		m.ys[s][0] = m.ys[s][last]
		m.ys[s] = m.ys[s][:1]
	}
	m.n = 1
	m.base = m.calls
	for s := range m.standing {
		m.found[0][s], m.found[1][s] = false, false
		m.standing[s] = standingLeak{}
	}
}

// judgementChain says which chain of judgements sample n begins: 0 for 64, 128
// and 256 samples, 1 for 96 and 192, -1 for none. Each judgement is
// confirmed by the next of its chain, at twice the calls, whose late
// window is all new samples. Two chains, because a leak that doubles
// (a bytes.Buffer or a slice written and never reset) grows in steps
// that double in height and in spacing: every judgement of one chain
// sees them at the same places in its windows, and where those are a
// window's edges, a step reads as a one-time step at every judgement.
// The second chain sees them elsewhere, a factor of 1.5 on.
func judgementChain(n int) int {
	switch {
	case n < firstVerdict:
		return -1
	case n&(n-1) == 0:
		return 0
	case n%3 == 0 && (n/3)&(n/3-1) == 0:
		return 1
	}
	return -1
}

// sampleAvg is the mean time a sample took: about the cost of one full
// collection.
func (m *meter) sampleAvg() time.Duration {
	return m.samplesAll / time.Duration(max(1, m.sampled))
}

// decimate keeps every other sample and doubles the calls between them.
func (m *meter) decimate() {
	keep := 0
	for i := 0; i < m.n; i += 2 {
		m.xs[keep] = m.xs[i]
		m.dropped[keep] = m.dropped[i]
		m.cycles[keep] = m.cycles[i]
		m.ts[keep] = m.ts[i]
		for s := range m.ys {
			m.ys[s][keep] = m.ys[s][i]
		}
		keep++
	}
	m.n = keep
	m.xs = m.xs[:keep]
	m.dropped = m.dropped[:keep]
	m.cycles = m.cycles[:keep]
	m.ts = m.ts[:keep]
	for s := range m.ys {
		m.ys[s] = m.ys[s][:keep]
	}
	m.bin *= 2
}

// sample records every resource after a full collection. It allocates
// nothing, except in waitFinalizers after the heap has been read.
func (m *meter) sample() {
	pre := 0
	if m.fds != nil {
		pre, _ = m.fds.count()
	}
	pre = m.settle(pre)
	gPre := runtime.NumGoroutine()
	t := time.Now() // the sample's cost is its collection's (sampleAvg)
	if m.rss != nil {
		debug.FreeOSMemory() // a full collection, then freed pages go back to the OS
	} else {
		runtime.GC()
	}
	metrics.Read(m.met)
	m.mem.raise(m.goMemory())
	live := float64(m.met[mLive].Value.Uint64())
	goMem := float64(m.goMemory())
	rss, anon, heapMem, offGo, offGoHigh := math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
	if m.rss != nil {
		if r, ok := m.rss.read(); ok {
			rss = float64(r.total)
			anon = float64(r.total - r.file)
			offGo = anon - goMem
			offGoHigh = offGo + float64(m.met[mFree].Value.Uint64())
			heapMem = float64(m.met[mObjects].Value.Uint64()+m.met[mUnused].Value.Uint64()+
				m.met[mFree].Value.Uint64()+m.met[mStacks].Value.Uint64()) - float64(r.swap)
		}
	}
	goroutines := float64(runtime.NumGoroutine())
	m.gSettled = int(goroutines)
	fds, dropped := math.NaN(), 0.0
	if m.fds != nil {
		post, _ := m.fds.count()
		if pre > m.settled {
			// Descriptors opened since the last sample were still open
			// before this collection: wait for the finalizers it queued
			// to learn how many only the collector closed. Not when
			// goroutines ended meanwhile: fn's, still ending after
			// settle, may have closed them (a file closed 8 ms after
			// its call, by a goroutine, was noted as the collector's).
			waitFinalizers()
			post, _ = m.fds.count()
			if runtime.NumGoroutine() >= gPre {
				dropped = float64(max(0, pre-post))
			}
		}
		m.settled = post
		fds = float64(post)
	}
	m.xs = append(m.xs, float64(m.calls))
	m.dropped = append(m.dropped, dropped)
	m.cycles = append(m.cycles, float64(m.met[mCycles].Value.Uint64()))
	m.ts = append(m.ts, time.Since(m.start).Seconds())
	m.ys[sHeap] = append(m.ys[sHeap], live)
	m.ys[sRSS] = append(m.ys[sRSS], rss)
	m.ys[sOffGo] = append(m.ys[sOffGo], offGo)
	m.ys[sOffGoHigh] = append(m.ys[sOffGoHigh], offGoHigh)
	m.ys[sAnon] = append(m.ys[sAnon], anon)
	m.ys[sHeapMem] = append(m.ys[sHeapMem], heapMem)
	m.ys[sGoroutines] = append(m.ys[sGoroutines], goroutines)
	m.ys[sFDs] = append(m.ys[sFDs], fds)
	for i, g := range m.cfg.gauges {
		s := numSeries + i
		m.gauge = i + 1
		m.gaugeNow.Store(int32(i + 1))
		v := g.read()
		m.gauge = 0
		m.gaugeNow.Store(0)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			panic(gaugeError{fmt.Errorf("leaktest: Track(%q): the gauge returned %v after %d calls", g.name, v, m.calls)})
		}
		m.ys[s] = append(m.ys[s], v)
	}
	m.n++
	if m.n == 2 && !m.hasGuard { // after the first call; a restart keeps it
		for s := range m.guardBase {
			m.guardBase[s] = m.ys[s][1]
		}
		m.hasGuard = true
	}
	m.sampleCost = time.Since(t)
	m.samplesAll += m.sampleCost
	m.sampled++
}

// raiseLimit keeps the memory limit above the Go memory that a collection
// left (memLimit) outside samples too: in the attribution window, whose
// profile records (288 B each, thousands in a process that ran many tests)
// and a leak's growth would otherwise fill the headroom and set off
// collection after collection (a run under an 8 MiB limit with 4016
// stacks in the profile: 191 collections, 86 with this alone, against 61
// without a limit; frameKinds did the rest). It allocates nothing.
func (m *meter) raiseLimit() {
	metrics.Read(m.met[mTotal : mReleased+1])
	m.mem.raise(m.goMemory())
}

// goMemory is the Go runtime's memory at the last metrics.Read, less what
// it returned to the OS.
func (m *meter) goMemory() uint64 {
	return m.met[mTotal].Value.Uint64() - m.met[mReleased].Value.Uint64()
}

// settle gives what fn left under way at a sample time a moment to end,
// when a count rose since the last sample: closes of descriptors opened
// since (the server's side of a connection that fn closed closes a moment
// later, on its own), and goroutines that end a moment after their call
// (one that sleeps 3 ms after each call: counted in flight, they moved the
// count's least by chance, which kept clean runs going to their budget,
// and hid a goroutine kept every 2000 calls beside them). 2 ms, then while
// a count that rose still falls (descriptors: at each 1 ms poll;
// goroutines, whose timers fire in bursts: within the last 3 ms), up to
// 20 ms. What the collection closes after that is the collector's. It
// returns the descriptors open then, given fds, those open before it.
// (The loop's sleep timer was allocated before the first sample.)
func (m *meter) settle(fds int) int {
	g := runtime.NumGoroutine()
	fdsUp, gUp := m.fds != nil && fds > m.settled, g > m.gSettled
	rose := fdsUp
	if !fdsUp && !gUp {
		return fds
	}
	time.Sleep(2 * time.Millisecond)
	for i, fell := 0, 0; i < 18 && (fdsUp || gUp); i++ {
		if fdsUp {
			now, _ := m.fds.count()
			fdsUp = now < fds && now > m.settled
			fds = min(fds, now)
		}
		if gUp {
			if now := runtime.NumGoroutine(); now < g {
				g, fell = now, i
			}
			gUp = g > m.gSettled && i-fell < 3
		}
		if fdsUp || gUp {
			time.Sleep(time.Millisecond)
		}
	}
	if rose && !fdsUp {
		// Closes that ended while goroutines were still ending are not
		// the collector's.
		now, _ := m.fds.count()
		fds = min(fds, now)
	}
	return fds
}

// guards lists the series that guard and grownLarge watch: each with the
// judged series it stands for and the growth that stops the loop.
var guards = [...]struct {
	series, judged int
	max            float64
}{{sHeap, sHeap, guardBytes}, {sAnon, sOffGo, rssGuard}, {sFDs, sFDs, guardFDs}}

// rssGuard is the guard on RSS outside mapped files. Under the race
// detector, whose shadow memory follows the heap outside it (3.7 MiB of
// RSS per MiB of heap measured here), it is 8 times larger: at the plain
// guard, a heap leak of 1 MiB per call stopped on RSS, which the race
// detector leaves unjudged, before the heap had the samples for a verdict
// (a miss). The heap's guard comes first.
const rssGuard = guardBytes * rssGuardFactor

// growth is how far series guards[g] has grown since the first call, as a
// fraction of its guard (0 for the Go heap written for the first time, by
// settleUnwritten's estimate, and where the series is not measured).
func (m *meter) growth(g int) float64 {
	sr := guards[g]
	last := m.n - 1
	if sr.series == sAnon && m.guardBase[sHeapMem]-m.guardBase[sAnon] > rssFloor && m.ys[sOffGo][last] <= 0 {
		return 0
	}
	d := m.ys[sr.series][last] - m.guardBase[sr.series]
	if math.IsNaN(d) {
		return 0
	}
	return d / sr.max
}

// grownLarge reports growth of an eighth of a guard since the first call.
// Not of goroutines: they are no kernel objects, their memory has the
// guards, and a count of goroutines in flight follows the calls' pace as
// a TTL cache does (goroutines that sleep 3 ms after each call: 4 → 637
// over a run at GOMEMLIMIT=64MiB, a false alarm at 256).
func (m *meter) grownLarge() bool {
	if !m.hasGuard {
		return false
	}
	for g := range guards {
		if m.growth(g) > 1.0/8 {
			return true
		}
	}
	return false
}

// guard stops the loop when the heap or RSS outside mapped files has grown by more than
// guardBytes (or the descriptors by more than guardFDs) since the first
// call and rose at each of the last three samples: no cache grows that
// fast and then stops, and going on would exhaust memory or descriptors.
func (m *meter) guard() bool {
	if !m.hasGuard || m.n < 5 {
		return false
	}
	last := m.n - 1
	for i, g := range guards {
		if !(m.growth(i) > 1) {
			continue
		}
		y := m.ys[g.series]
		if y[last] > y[last-1] && y[last-1] > y[last-2] && y[last-2] > y[last-3] {
			m.guarded = g.judged
			return true
		}
	}
	return false
}

// guardLimit is the growth of a judged series past which guard stops the
// loop.
func guardLimit(s int) float64 {
	if s == sFDs {
		return guardFDs
	}
	return guardBytes
}

// warmThreads has GOMAXPROCS goroutines run at once, so that the runtime
// starts a thread for every P now rather than during the measurement: a
// new thread's stack and thread-local memory (tens of KiB of RSS, outside
// the Go heap) would read as growth, and a slow fn called only tens of
// times has a budget of a few KiB. The runtime never ends its threads.
//
// It then starts spareThreads more: a thread blocked in a system call
// keeps it, and the runtime starts another for its P when no idle one is
// left. Under load a read of /proc can block that long, and a thread
// started mid-run is a step of the live heap too (the runtime's m and g
// structures, 5.5 KiB on Go 1.26, measured with a Track of threads
// created): on a 100 MiB heap, with about 2000 calls and a limit of 8 KiB
// over the run, enough to keep a clean run going past its budget.
func warmThreads() {
	n := int32(runtime.GOMAXPROCS(0))
	if threadsWarm.Load() >= n {
		return
	}
	defer threadsWarm.Store(n)
	defer spareThreads(int(n) + 4)
	deadline := time.Now().Add(20 * time.Millisecond)
	var running atomic.Int32
	var wg sync.WaitGroup
	for i := int32(0); i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			running.Add(1)
			for running.Load() < n && time.Now().Before(deadline) {
			}
		}()
	}
	wg.Wait()
}

// warmGoroutines has 64 × GOMAXPROCS + 64 goroutines run at once and end,
// so that the runtime holds that many free goroutine descriptors. It keeps up
// to 64 free ones per P and the rest in a global list, and allocates a new
// one only when both the starting P's and the global list are empty; it
// never frees one. A function whose goroutines start on one P and end on
// another (an HTTP client and server on loopback) would otherwise grow the
// heap by new descriptors until every P's list had filled, at a rate no
// leak limit allows, and only the confirmation window could tell it from
// a leak (a keep-alive HTTP client at GOMAXPROCS=8, beside another such
// process: 2 of 12 runs needed the window and took 5.5 s and more, none
// with the descriptors warm; medians 3.1 s and 2.3 s). With more free
// descriptors than all the Ps' lists can hold, the global list is never
// empty while fewer than 64 of fn's goroutines run at once.
func warmGoroutines() {
	n := 64*runtime.GOMAXPROCS(0) + 64 // more than every P's list holds
	before := runtime.NumGoroutine()
	var started, ended sync.WaitGroup
	started.Add(n)
	ended.Add(n)
	release := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-release
			ended.Done()
		}()
	}
	started.Wait()
	close(release)
	ended.Wait()
	// Done is called before a goroutine ends: give them 10 ms at most to
	// be gone, so that the first sample does not count them.
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(100 * time.Microsecond)
	}
}

// spareThreads has k goroutines lock their threads and wait at once,
// which takes k threads and more for the Ps meanwhile; unlocked before
// they end, the threads go idle, and the runtime reuses idle threads
// before it starts new ones.
func spareThreads(k int) {
	var locked, done sync.WaitGroup
	release := make(chan struct{})
	for i := 0; i < k; i++ {
		locked.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			locked.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	close(release)
	done.Wait()
}

// threadsWarm is the GOMAXPROCS that warmThreads last ran for.
var threadsWarm atomic.Int32

// waitFinalizers runs a collection and waits until the finalizers it
// queued have run. Two rounds: the runtime runs a batch of finalizers in
// no set order, so only a sentinel queued after the batch proves the batch
// is done.
func waitFinalizers() {
	for round := 0; round < 2; round++ {
		ch := make(chan struct{})
		setSentinel(ch)
		runtime.GC()
		t := time.NewTimer(time.Second)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

type sentinel struct{ _ [2]uintptr } // not tiny: tiny objects may never be finalized

//go:noinline
func setSentinel(ch chan struct{}) {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { close(ch) })
}

// randn returns a uniform int in [0, n), from a splitmix64 that
// allocates nothing.
func (m *meter) randn(n int) int {
	if n <= 1 {
		return 0
	}
	m.rng += 0x9e3779b97f4a7c15
	z := m.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z % uint64(n))
}
