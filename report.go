package leaktest

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of one measurement.
type Report struct {
	// Findings holds one entry per resource that leaked; empty when clean.
	Findings []Finding
	// Notes are observations that are not failures: goroutines left from
	// warm-up, files closed only by the garbage collector, growth seen too
	// late to judge.
	Notes []string
	// Warmup is the number of calls before the judged region: those
	// before the first quarter of the samples ended, or as set with the
	// Warmup option.
	Warmup int
	// Iterations is the number of calls judged, after the warm-up.
	Iterations int
	// Series holds the samples of each resource available on this system.
	Series []Series
	// Elapsed is the time the measurement took.
	Elapsed time.Duration
	// Files lists the artifacts written (see ReportDir).
	Files []string
}

// Finding is one resource that grew faster than its limit.
type Finding struct {
	// Resource is what leaked.
	Resource Resource
	// PerIteration is the estimated growth per call after warm-up: the
	// Theil–Sen slope of the judged region, in bytes or a count, or for
	// growth in steps whose median slope is within the limit, the change
	// of level over the region per call (see the README's decision rule).
	// For a leak that stood (Detail says so) the region is the one of the
	// judgement that found it again, not the last one.
	// For RSS it is the growth outside the memory the Go runtime holds.
	PerIteration float64
	// Uncertainty is the half-width of the interval around PerIteration
	// (Sen's interval at z = 3, about 99.7%).
	Uncertainty float64
	// Limit is the limit the growth was judged against: both windows of
	// the judged region grew faster than it (PerIteration, the slope over
	// the whole region, can fall a little below it). For Heap it is at
	// least 64 B × GOMAXPROCS × the collections per call: what the runtime
	// may keep per collection while its caches fill.
	Limit float64
	// Detail says where to look, when known: the leaked goroutines grouped
	// by creation site, the descriptors left open.
	Detail string
	// Sites are the allocation sites of a Heap leak, largest first, found
	// by profiling a confirmation window of calls.
	Sites []Site
}

// Site is one allocation site of a heap leak: the innermost frame of the
// allocating stack outside the runtime and leaktest itself.
type Site struct {
	Function string
	File     string
	Line     int
	// Stack is the allocating stack, innermost first, as "function
	// file:line" lines.
	Stack []string
	// BytesPerCall and ObjectsPerCall are the in-use growth per call that
	// the site accounts for; Share is its part of the heap growth (0–1).
	BytesPerCall, ObjectsPerCall, Share float64
}

// Series is the samples of one resource, each taken after a full
// collection.
type Series struct {
	// Resource is what was sampled.
	Resource Resource
	// Calls is the number of calls of fn made before each sample.
	Calls []int
	// Values is the resource at each sample: bytes for Heap and RSS, a
	// count for Goroutines and FDs.
	Values []float64
	// PerIteration and Uncertainty are the Theil–Sen slope of the judged
	// region and its interval, whether or not it passed the limit. For RSS
	// they are those of RSS outside mapped files and the Go runtime's
	// memory, which is what is judged, while Values is the whole RSS.
	PerIteration, Uncertainty float64
}

// Leaked reports whether any resource leaked.
func (r *Report) Leaked() bool { return r != nil && len(r.Findings) > 0 }

func (r *Report) finding(res Resource) *Finding {
	for i := range r.Findings {
		if r.Findings[i].Resource == res {
			return &r.Findings[i]
		}
	}
	return nil
}

var builtinResource = [numSeries]Resource{sHeap: Heap, sRSS: RSS, sOffGo: RSS, sOffGoHigh: RSS, sAnon: RSS, sHeapMem: RSS, sGoroutines: Goroutines, sFDs: FDs}

// resource names series s: a built-in one, or a Track gauge.
func (m *meter) resource(s int) Resource {
	if s < numSeries {
		return builtinResource[s]
	}
	return m.cfg.gauges[s-numSeries].name
}

// judgedSeries lists the series the rule judges: RSS is judged on its
// part outside mapped files and the Go runtime's memory. Built once, in
// newMeter.
func (m *meter) judgedSeries() []int { return m.judgedList }

func judgedList(gauges int) []int {
	list := []int{sHeap, sOffGo, sGoroutines, sFDs}
	for i := 0; i < gauges; i++ {
		list = append(list, numSeries+i)
	}
	return list
}

// reportedSeries lists the series shown in the Report.
func (m *meter) reportedSeries() []int {
	list := []int{sHeap, sRSS, sGoroutines, sFDs}
	for i := range m.cfg.gauges {
		list = append(list, numSeries+i)
	}
	return list
}

// limit returns the limit of series s and whether s is judged here. RSS
// is not judged under the race detector, whose own memory outside the Go
// heap grows with every goroutine and synchronisation it tracks.
func (m *meter) limit(s int) (float64, bool) {
	if m.n == 0 || math.IsNaN(m.ys[s][0]) || (s == sOffGo && raceEnabled) {
		return 0, false
	}
	return m.cfg.limits[m.resource(s)], true
}

// window returns the first index of the judged region and the index that
// splits it into the early and the late window.
func (m *meter) window() (r0, mid int) {
	last := m.n - 1
	if m.cfg.warmup >= 0 {
		return 0, last / 3
	}
	return last / 4, last / 2
}

// judge judges series s on the samples held; once the loop has ended, a
// leak that stands (standingLeak) replaces a judgement that found none.
func (m *meter) judge(s int) judgement {
	return m.stand(s, m.judgeNow(s))
}

func (m *meter) judgeNow(s int) judgement {
	r0, mid := m.window()
	limit := m.judgedLimit(s)
	if s == sOffGo {
		j := m.judgeOffGo(r0, mid, limit)
		m.checkUnwritten(&j, r0)
		return j
	}
	j := m.st.judge(m.xs, m.ys[s], r0, mid, limit)
	if j.verdict == leak && (s == sGoroutines || s == sFDs) {
		m.checkStopped(&j, s, r0)
	}
	return j
}

// checkStopped turns a leak of goroutines or descriptors into unsure when
// the count stayed exactly the same over the last quarter of the judged
// region, where the leak's own rate would have added five or more: growth
// that stopped late, such as a worker per tenant started on the tenant's
// first call. A leak at that rate, however irregular (an error path taken
// now and then), leaves such a tail unchanged less than 1% of the time.
// (The heap has its confirmation window instead: growth in steps, a slice
// or map doubling, can leave a long flat stair at the end.)
func (m *meter) checkStopped(j *judgement, s, r0 int) {
	t0 := m.n - (m.n-r0)/4
	if m.n-t0 < 8 {
		return
	}
	xs, ys := m.xs[t0:m.n], m.ys[s][t0:m.n]
	if j.region.slope*(xs[len(xs)-1]-xs[0]) < 5 {
		return
	}
	for _, y := range ys {
		if y != ys[0] {
			return
		}
	}
	j.verdict = unsure
	j.stoppedAt = int(xs[0])
}

// checkUnwritten turns a leak of RSS outside Go into unsure while it may
// still be Go heap memory written for the first time: a buffer allocated
// before the run and written during it (a ring buffer, a Bloom filter, a
// map made with a size hint) grows RSS page by page exactly as memory
// outside Go would, and RSS cannot tell the two apart. It may be when
// more than rssFloor of the heap was proven unwritten at the region's
// start and the growth since is no more than the heap's memory (more than
// that cannot be the heap's). An adaptive run goes on past its budget
// when that can be told in time (extend); whatever is left
// unsure at the end is settled by settleUnwritten. (Levels are medians of
// three samples: the kernel's counters lag by some pages.)
func (m *meter) checkUnwritten(j *judgement, r0 int) {
	last := m.n - 1
	if j.verdict != leak || last-r0 < 6 || len(m.ys[sHeapMem]) < m.n { // (synthetic series may have none)
		return
	}
	level := func(s, i int) float64 { return m.st.medianOf(m.ys[s][i : i+3]) }
	// The growth measured, not the slope times the calls: that overstates
	// growth that ended within the region (the buffer was all written).
	// Heap memory allocated later is counted by the runtime at once: its
	// first writes do not move RSS outside Go.
	grown := level(sOffGo, last-2) - level(sOffGo, r0)
	heapMem, anon := level(sHeapMem, r0), level(sAnon, r0)
	if heapMem-anon > rssFloor && grown <= heapMem {
		j.verdict = unsure
		j.unwritten = heapMem - anon
		j.grown = grown
		j.room = heapMem - grown
		j.explainable = -level(sOffGo, r0)
	}
}

// settleUnwritten decides a leak of RSS outside Go that checkUnwritten
// left unsure at the end of the run (Iterations, growth that could not be
// told in time, a run ended by another resource). The proven lower bound on unwritten heap is too
// weak to settle it (the runtime's memory outside the heap, 4–5 MiB in a
// test binary, counts as unwritten in it, and what the process holds
// outside Go makes it smaller), so this estimates: the growth is the
// heap's while RSS outside Go has not risen above 0, i.e. up to -sOffGo
// at the region's start (exact if the runtime's memory outside the heap
// is resident and the process holds nothing outside Go; a test binary
// holds about 1 MiB there, measured). Past that it is a leak. Either way
// a real leak outside Go beside unwritten heap may be read as the heap's,
// and a buffer written to its end in a process holding more than some
// MiB outside Go as a leak: the adaptive run's extension avoids both when
// it can run.
func settleUnwritten(j *judgement) {
	if j.verdict == unsure && j.unwritten > 0 && j.grown > j.explainable {
		j.verdict = leak
	}
}

// ambiguousFree is the free heap memory at a sample above which RSS
// outside Go is not known there (see sOffGoHigh): a quarter of rssFloor,
// so that even free pages that drain steadily cannot add up to it.
const ambiguousFree = rssFloor / 4

// judgeOffGo judges RSS outside Go. Where free heap pages left after the
// scavenge leave it unknown at no more than half the judged samples, it
// judges the others, where it is known; otherwise both bounds, and the
// weaker judgement stands: a leak grows both, free pages that stay at one
// sample and go at the next move only one. (TestRSSOutsideGoPower: with
// MiBs of free pages at one sample in three, 200 of 200 leaks of 1 KiB a
// call are caught, and judged on both bounds about half of them were.)
func (m *meter) judgeOffGo(r0, mid int, limit float64) judgement {
	lo, hi := m.ys[sOffGo], m.ys[sOffGoHigh]
	xs, ys := m.knownX[:0], m.knownY[:0]
	k0, kmid, unknown := -1, -1, 0
	for i := 0; i < m.n; i++ {
		if hi[i]-lo[i] > ambiguousFree {
			if i >= r0 {
				unknown++
			}
			continue
		}
		if i >= r0 && k0 < 0 {
			k0 = len(xs)
		}
		if i >= mid && kmid < 0 {
			kmid = len(xs)
		}
		xs, ys = append(xs, m.xs[i]), append(ys, lo[i])
	}
	if unknown*2 <= m.n-r0 && k0 >= 0 && kmid >= 0 {
		return m.st.judge(xs, ys, k0, kmid, limit)
	}
	j := m.st.judge(m.xs, lo, r0, mid, limit)
	h := m.st.judge(m.xs, hi, r0, mid, limit)
	if h.verdict < j.verdict || (h.verdict == j.verdict && h.region.slope < j.region.slope) {
		return h
	}
	return j
}

// judgedLimit is the limit per call that series s is judged against: the
// configured one, raised where the process's own growth over the judged
// region would pass it (runtimeAllowance for the heap, rssFloor outside it).
func (m *meter) judgedLimit(s int) float64 {
	limit, _ := m.limit(s)
	r0, _ := m.window()
	last := m.n - 1
	dx := m.xs[last] - m.xs[r0]
	if last <= r0 || dx <= 0 {
		return limit
	}
	switch s {
	case sHeap:
		cycles := (m.cycles[last] - m.cycles[r0]) / dx
		return math.Max(limit, runtimeHeap(cycles))
	case sOffGo:
		return math.Max(limit, rssFloor/dx)
	}
	return limit
}

// rssFloor is the least growth of RSS outside the Go heap over the judged
// region that can be a leak. Below it lie the process's own steps: a new
// thread's stack and thread-local memory (50–100 KiB each, measured), pages
// first touched one at a time. A slow fn called a few dozen times would
// otherwise be judged on them (a torture run found a 50 ms fn failing on
// 26 KiB of growth over 38 calls at GOMAXPROCS=8).
const rssFloor = 256 << 10

// runtimeAllowance is heap per P that the runtime may keep per collection
// while its per-P caches of goroutine descriptors and sudogs fill (measured:
// 20–30 B per P and collection at GOMAXPROCS=8, for the first few hundred
// collections). Every sample forces a collection, and a function that makes
// much garbage causes more, so the heap limit per call is at least this
// times GOMAXPROCS times the collections per call over the judged region.
// It matters only where collections are frequent per call: slow functions
// sampled every call or few, and functions that make megabytes of garbage.
const runtimeAllowance = 64

// runtimeHeap is the heap the runtime may keep over the given collections
// (runtimeAllowance per P at each).
func runtimeHeap(cycles float64) float64 {
	return runtimeAllowance * float64(runtime.GOMAXPROCS(0)) * cycles
}

// report judges every series and builds the Report.
func (m *meter) report() *Report {
	r0, mid := m.window()
	rep := &Report{Elapsed: time.Since(m.start)}
	if m.n > 0 {
		rep.Warmup = int(m.xs[r0])
		rep.Iterations = int(m.xs[m.n-1]) - rep.Warmup
	}
	for _, s := range m.judgedSeries() {
		plain, ok := m.limit(s)
		if !ok {
			continue
		}
		j := m.judge(s)
		res := m.resource(s)
		limit := j.limit
		if s == sOffGo && j.unwritten > 0 {
			settleUnwritten(&j)
			if j.verdict == leak {
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"at least %s of the Go heap had never been written when the judged calls began, and writing it grows RSS as a leak outside Go does, but RSS outside Go grew by %s over them, past the %s that brings it to the Go runtime's own memory: judged a leak without seeing the growth stop or pass the heap's memory (a larger Budget lets an adaptive run go on until it does)",
					formatValue(res, j.unwritten), formatValue(res, j.grown), formatValue(res, j.explainable)))
			}
		}
		overturned := false // a heap leak the attribution window overturned
		if s == m.guarded && j.verdict != leak {
			// The guard stopped the loop before the rule had enough
			// samples: judge the growth since the first call.
			j.region = m.st.fitTrend(m.xs[1:], m.ys[s][1:], ciZ)
			if j.region.slope > limit {
				j.verdict = leak
			}
		}
		if j.verdict == leak && m.inFlight(s) {
			rep.Notes = append(rep.Notes, fmt.Sprintf(
				"%s grew %.3g per call while fn was called, but fell to %g once the calls stopped, no more than their least over the judged calls: held for a while after each call (in flight), not kept, so not a leak",
				res, j.region.slope, m.drained[s]))
			j.verdict = clean
		}
		if s == sHeap && j.verdict == leak && m.attr != nil {
			if why := m.notConfirmed(limit, heapSlope(j)); why != "" {
				rep.Notes = append(rep.Notes, why)
				j.verdict = clean
				overturned = true
			} else if m.attr.planned > 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"the confirmation window ended after %d of its %d calls, to end before the Timeout (%v; profiled, fn's calls were slower than planned for): the sites are those calls', and the verdict is not confirmed: a larger Timeout lets it run",
					m.attr.calls, m.attr.planned, m.cfg.timeout))
			} else if m.attr.cut && m.attr.calls >= m.attr.measured {
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"over a confirmation window of %d calls, fn's code kept %s per call, but the heap still grew %s per call in its second half: a longer window, which could see that growth end (a Go map's tables grow for a while after its cache filled), would not fit before the Timeout: a larger Timeout lets it run",
					m.attr.calls, formatValue(Heap, m.attr.kept()), formatValue(Heap, m.attr.late)))
			} else if m.attr.cut {
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"fn's code kept no more than the limit in a confirmation window of %d calls, but a window as long as the measurement (%d calls), which could tell growth that stopped from a leak in steps, would not fit before the Timeout: a larger Timeout lets it run",
					m.attr.calls, m.attr.measured))
			}
		}
		if s == sHeap && j.verdict == leak && m.attrSkipped > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf(
				"no allocation sites, and the verdict is not confirmed: the confirmation window that finds them (%d calls at least) would not fit before the Timeout (%v): a larger Timeout lets it run",
				m.attrSkipped, m.cfg.timeout))
		}
		m.judged[s] = j
		if j.stood[1] > 0 {
			// The series' figures, drawn through its samples, are
			// the last judgement's; the finding's, the standing leak's.
			m.judged[s] = m.judgeNow(s)
		}
		if s == sHeap && j.verdict != leak && limit > 2*plain {
			rep.Notes = append(rep.Notes, fmt.Sprintf(
				"heap judged against %s per call, not %s: the runtime may keep %s per P at each collection, and there were %.2g collections per call (the sampler's, after every call or few of a slow fn, and those much garbage causes); a smaller leak is not judged",
				formatValue(res, limit), formatValue(res, plain), formatValue(res, runtimeAllowance), limit/runtimeHeap(1)))
		}
		switch j.verdict {
		case leak:
			per := j.region.slope
			if per <= limit {
				// Growth in steps: most pairs lie on one stair, so the
				// median slope misses it; the level's change does not.
				per = j.level
			}
			f := Finding{
				Resource:     res,
				PerIteration: per,
				Uncertainty:  (j.region.hi - j.region.lo) / 2,
				Limit:        limit,
			}
			if s == sOffGo {
				f.Detail = "memory outside the Go heap (cgo, anonymous or shared mmap, the runtime)"
			}
			if s == sHeap && m.attr != nil {
				f.Sites = m.attr.sites
			}
			if s == m.guarded {
				gs := s // the series the guard watched: RSS outside mapped files for RSS
				if s == sOffGo {
					gs = sAnon
				}
				// The sample's calls: m.calls counts the attribution
				// window's too, run after the guard stopped the loop.
				f.Detail = fmt.Sprintf("stopped early after %d calls: %s grew by %s, more than %s",
					int(m.xs[m.n-1]), res, formatValue(res, m.ys[gs][m.n-1]-m.guardBase[gs]), formatValue(res, guardLimit(s)))
			}
			if j.stood[1] > 0 {
				stood := fmt.Sprintf("found over calls %d–%d and at the judgement before; the last judgement found no leak, but the growth did not stop: %s per call over calls %d–%d (growth that follows time, not calls, thins out per call as the calls get faster)",
					j.stood[0], j.stood[1], formatValue(res, j.nowRate), j.nowCalls[0], j.nowCalls[1])
				if f.Detail != "" {
					stood = f.Detail + "\n" + stood
				}
				f.Detail = stood
			}
			if s == sOffGo && m.calledC && arenasPerThread() {
				// fn's own calls stay on one thread (lockIfCgo);
				// goroutines it starts do not.
				f.Detail += "\nC was called, and glibc's malloc may give each thread that calls it an arena of its own: C memory reused by goroutines that fn starts fills one arena after another, growing RSS without a leak; rerun with MALLOC_ARENA_MAX=1 to tell that from a leak"
			}
			rep.Findings = append(rep.Findings, f)
		case clean:
			dx := m.xs[m.n-1] - m.xs[r0]
			switch {
			case s == sOffGo && j.region.z >= zRegion && j.region.slope > plain && j.region.slope*dx < rssFloor:
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"%s outside the Go heap grew %s per call over %d calls, %s in all: under the %s that threads and pages account for, so not judged (a larger Budget gives more calls)",
					res, formatValue(res, j.region.slope), int(dx), formatValue(res, j.region.slope*dx), formatValue(res, rssFloor)))
			case j.undecided() == noTrend && !overturned:
				// The run ended (budget, Iterations) without the power to
				// rule out a leak above the limit: say so, not a bare
				// "no leak".
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"%s grew %s ± %s per call over the %d calls judged, more than the limit (%s), but not as a clear trend: noise hides it (a sawtooth, garbage in flight, calls descheduled), the growth varies, or it came in steps; not failed (a larger Budget or Iterations would tell)",
					res, formatValue(res, j.growth()), formatValue(res, (j.region.hi-j.region.lo)/2), int(dx), formatValue(res, limit)))
			}
		case unsure:
			switch j.undecided() {
			case unwrittenHeap:
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"%s outside the Go heap grew %s per call over %d calls (%s in all), but at least %s of the Go heap had never been written when they began (spare capacity, or a buffer allocated before the run), and writing it for the first time grows RSS the same way; the run did not see the growth stop or pass the heap's memory, and RSS outside Go stayed below the runtime's own, so it is not failed: a leak outside Go beside unwritten heap can pass this way (write such memory before measuring, or give a larger Budget)",
					res, formatValue(res, j.region.slope), int(m.xs[m.n-1]-m.xs[r0]), formatValue(res, j.grown), formatValue(res, j.unwritten)))
			case stopped:
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"%s grew %s per call, then not at all over the last %d calls: growth that stopped (a worker per tenant, a pool that filled late?); not failed (a larger Budget or Iterations would tell)",
					res, formatValue(res, j.region.slope), int(m.xs[m.n-1])-j.stoppedAt))
			default: // lateOnly
				tell := "a larger Budget or Iterations would tell"
				if m.cfg.iterations > 0 && s == sHeap {
					// A leak that doubles (judgementChain) reads so at
					// any n.
					tell = "a larger Iterations would tell, unless it is a leak that doubles, a buffer or slice written and never reset, which Iterations misses at any n: measure it without Iterations"
				}
				rep.Notes = append(rep.Notes, fmt.Sprintf(
					"%s grew %s per call over the last %d calls but not clearly before: a one-time step, a leak that started late, or a small leak that noise hides early on (a sawtooth, garbage in flight); not failed (%s)",
					res, formatValue(res, j.lateRate), int(m.xs[m.n-1]-m.xs[mid]), tell))
			}
		}
	}
	switch m.extended {
	case extendedUnwritten:
		rep.Notes = append(rep.Notes, fmt.Sprintf(
			"the run went on past its budget (%v) to tell Go heap memory written for the first time from a leak outside Go: RSS outside Go grew while some of the heap had never been written",
			m.cfg.budget))
	case extendedUndecided:
		rep.Notes = append(rep.Notes, fmt.Sprintf(
			"the run went on %v past its budget (%v), in %d extension(s) of at most a budget each, because when it ended %s",
			(m.loopEnd-m.cfg.budget).Round(time.Millisecond), m.cfg.budget, m.budgetsAdded, m.undecidedWhy))
	}
	m.fold(rep)
	if m.rss == nil || m.fds == nil {
		rep.Notes = append(rep.Notes, "rss and fds are not measured on this system (Linux only)")
	} else if raceEnabled {
		rep.Notes = append(rep.Notes, "rss is not judged under the race detector, whose own memory grows outside the Go heap")
	}
	for _, s := range m.reportedSeries() {
		if m.n == 0 || math.IsNaN(m.ys[s][0]) {
			continue
		}
		j := m.judged[s]
		if s == sRSS {
			j = m.judged[sOffGo]
		}
		ser := Series{
			Resource:     m.resource(s),
			Calls:        make([]int, m.n),
			Values:       append([]float64(nil), m.ys[s]...),
			PerIteration: j.region.slope,
			Uncertainty:  (j.region.hi - j.region.lo) / 2,
		}
		for i, x := range m.xs {
			ser.Calls[i] = int(x)
		}
		rep.Series = append(rep.Series, ser)
	}
	m.noteDropped(rep)
	return rep
}

// heapSlope is the heap growth per call that the attribution window
// checks: the region's slope, or for growth in steps (where most pairs of
// samples lie on one stair and the median slope is about 0) the windows'
// growth.
func heapSlope(j judgement) float64 {
	return math.Max(j.region.slope, math.Max(j.earlyRate, j.lateRate))
}

// notConfirmed checks a heap leak against the attribution window, a second
// measurement in the same rhythm of calls: it says why the leak is not
// one, or "". Either the profile finds no more than the limit per call
// kept by fn's code, and the runtime's own structures (goroutine
// descriptors and sudogs, cached per P until they saturate) account for at
// least half the growth; or, in a window as long as the measurement (so
// that a slice or map that doubles must have stepped in it too), fn's code
// kept less than a quarter of the growth and the live heap grew no more
// than the limit over the window's second half (or the last quarter of a
// window extended as far as it goes: lastQuarter): its growth had stopped.
// The first case trusts the profile alone, which can only overstate what
// fn's code kept; the second needs the heap to agree. Neither judges a
// window cut short of its minimum.
func (m *meter) notConfirmed(limit, slope float64) string {
	return m.attr.overturned(limit, slope)
}

// overturned is notConfirmed for this window.
func (a *attribution) overturned(limit, slope float64) string {
	if a.calls == 0 || a.calls < a.least {
		return "" // a window cut short of its minimum (attribute)
	}
	kept := a.kept()
	part := "second half"
	if a.quarter {
		part = "last quarter"
	}
	switch {
	case a.runtimeExplains(limit, slope):
		return fmt.Sprintf("heap grew %s per call, but a profile of %d more calls finds %s per call kept by fn's code and %s by the runtime for its own goroutine structures and sudogs, which it caches per P until they saturate: not a leak",
			formatValue(Heap, slope), a.calls, formatValue(Heap, a.user), formatValue(Heap, a.runtime))
	case a.calls < a.measured || kept >= slope/4 || a.late > limit:
		return ""
	case a.tail > 0:
		return fmt.Sprintf("heap grew %s per call, but of %d more calls, profiled, fn's code still held %s per call %d calls later, and %s per call of their %s's growth: memory held for a while (a map replaced by a ticker? a cache with a time to live?), not a leak",
			formatValue(Heap, slope), a.calls, formatValue(Heap, kept), a.tail, formatValue(Heap, max(0, a.late)), part)
	}
	if a.standing && a.lateZ >= zLate {
		// Under the limit per call, but growing still: a leak that
		// follows time, diluted by cheap calls as in the measurement.
		return ""
	}
	return fmt.Sprintf("heap grew %s per call, but over %d more calls, profiled, fn's code kept %s per call, the runtime %s for its own goroutine structures, and the heap grew %s per call in their %s: the growth stopped (a cache that filled late?), not a leak",
		formatValue(Heap, slope), a.calls, formatValue(Heap, kept), formatValue(Heap, a.runtime), formatValue(Heap, max(0, a.late)), part)
}

// goroutineHeap is the heap a leaked goroutine holds by itself: its
// runtime structures and a little of what its closure references; fdHeap,
// what an open *os.File or net.Conn holds.
const (
	goroutineHeap = 2048
	fdHeap        = 1024
)

// fold drops findings that another finding explains, so that one bug is
// one failure: the heap held by leaked goroutines and descriptors.
func (m *meter) fold(rep *Report) {
	g, d, h := rep.finding(Goroutines), rep.finding(FDs), rep.finding(Heap)
	held := 0.0
	if g != nil {
		held += g.PerIteration * goroutineHeap
	}
	if d != nil {
		held += d.PerIteration * fdHeap
	}
	if h != nil && held > 0 && h.PerIteration <= held {
		rep.Notes = append(rep.Notes, fmt.Sprintf(
			"heap grew %s per call, about what the leaked goroutines or descriptors hold themselves (their runtime state, *os.File): reported as that leak",
			formatValue(Heap, h.PerIteration)))
		rep.drop(Heap)
	}
}

func (r *Report) drop(res Resource) {
	kept := r.Findings[:0]
	for _, f := range r.Findings {
		if f.Resource != res {
			kept = append(kept, f)
		}
	}
	r.Findings = kept
}

// noteDropped warns about files closed only by the collector's finalizers:
// the descriptor count does not grow, but under little GC pressure such a
// program runs out of descriptors.
func (m *meter) noteDropped(rep *Report) {
	r0, _ := m.window()
	if m.fds == nil || m.n-r0 < 2 {
		return
	}
	dropped, calls, hits := 0.0, 0.0, 0
	for i := r0 + 1; i < m.n; i++ {
		dropped += m.dropped[i]
		calls += m.xs[i] - m.xs[i-1]
		if m.dropped[i] > 0 {
			hits++
		}
	}
	if hits*2 < m.n-r0-1 || dropped == 0 {
		return
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf(
		"about %.3g descriptors per call were closed only by the garbage collector: an *os.File or net.Conn dropped without Close, an os.Process (whose pidfd this is) never waited for, or a pool that the collector empties (io.Copy between TCP connections keeps splice pipes so)?",
		dropped/calls))
}

// checkFDs lists the descriptors left open, when descriptors leaked.
func (m *meter) checkFDs(rep *Report, before map[int]string) {
	f := rep.finding(FDs)
	if f == nil {
		return
	}
	kinds := map[string]int{}
	for fd, target := range openFDs() {
		if old, ok := before[fd]; ok && old == target {
			continue
		}
		kind := target
		if i := strings.IndexByte(target, '['); i > 0 {
			kind = target[:i] // socket:[123] → socket:
		}
		kinds[kind]++
	}
	type kc struct {
		kind string
		n    int
	}
	var list []kc
	for k, n := range kinds {
		list = append(list, kc{k, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].kind < list[j].kind
	})
	var b strings.Builder
	for i, e := range list {
		if i == 10 {
			fmt.Fprintf(&b, "… and %d more kinds\n", len(list)-i)
			break
		}
		fmt.Fprintf(&b, "%d × %s\n", e.n, strings.TrimSuffix(e.kind, ":"))
	}
	if b.Len() > 0 {
		open := "descriptors left open:\n" + strings.TrimSuffix(b.String(), "\n")
		if f.Detail != "" { // the descriptor guard's
			open = f.Detail + "\n" + open
		}
		f.Detail = open
	}
}

// String is the human report: the verdict, each finding in full, then the
// notes.
func (r *Report) String() string {
	if r == nil {
		return "leaktest: no report"
	}
	var b strings.Builder
	if r.Leaked() {
		fmt.Fprintf(&b, "leaktest: %d leak(s) found\n", len(r.Findings))
	} else {
		fmt.Fprintf(&b, "leaktest: no leak in %d calls after %d warm-up calls (%v)\n", r.Iterations, r.Warmup, r.Elapsed.Round(time.Millisecond))
		r.writeSeries(&b)
	}
	for _, f := range r.Findings {
		b.WriteString("\n")
		b.WriteString(r.failure(f))
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// failure is the labelled block for one finding, as Run reports it.
func (r *Report) failure(f Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s leaks: %s per call\n", f.Resource, signed(f.Resource, f.PerIteration))
	fmt.Fprintf(&b, "resource:   %s\n", describe(f.Resource))
	fmt.Fprintf(&b, "per call:   %s ± %s\n", signed(f.Resource, f.PerIteration), formatValue(f.Resource, f.Uncertainty))
	fmt.Fprintf(&b, "limit:      %s per call\n", formatValue(f.Resource, f.Limit))
	fmt.Fprintf(&b, "calls:      %d judged after %d warm-up calls\n", r.Iterations, r.Warmup)
	r.writeSeries(&b)
	for i, s := range f.Sites {
		label := ""
		if i == 0 {
			label = "sites:"
		}
		fmt.Fprintf(&b, "%-12s%3.0f%% %s per call (%s) at %s\n", label, 100*s.Share,
			signed(Heap, s.BytesPerCall), objects(s.ObjectsPerCall), s)
		if caller := s.caller(); caller != "" {
			fmt.Fprintf(&b, "%-12s     called by %s\n", "", caller)
		}
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(&b, "%-12s%s\n", "files:", strings.Join(r.Files, "\n            "))
	}
	if f.Detail != "" {
		lines := strings.Split(f.Detail, "\n")
		fmt.Fprintf(&b, "where:      %s\n", lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "            %s\n", l)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (r *Report) writeSeries(b *strings.Builder) {
	width := len("goroutines:")
	for _, s := range r.Series {
		width = max(width, len(s.Resource)+1)
	}
	for _, s := range r.Series {
		if len(s.Values) == 0 {
			continue
		}
		fmt.Fprintf(b, "%-*s %s %s → %s\n", width, string(s.Resource)+":", sparkline(s.Values, 32),
			formatValue(s.Resource, s.Values[0]), formatValue(s.Resource, s.Values[len(s.Values)-1]))
	}
}

func describe(r Resource) string {
	switch r {
	case Heap:
		return "heap (bytes live on the Go heap after a full collection)"
	case RSS:
		return "rss (resident bytes of the process, outside mapped files and the Go runtime's memory)"
	case Goroutines:
		return "goroutines (alive after the call)"
	case FDs:
		return "fds (open file descriptors)"
	}
	return string(r) + " (tracked gauge)"
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws vs in at most width characters, each the mean of its
// share of the samples, scaled from the smallest to the largest.
func sparkline(vs []float64, width int) string {
	if len(vs) == 0 {
		return ""
	}
	w := min(width, len(vs))
	cells := make([]float64, w)
	for i := range cells {
		lo, hi := i*len(vs)/w, (i+1)*len(vs)/w
		sum := 0.0
		for _, v := range vs[lo:hi] {
			sum += v
		}
		cells[i] = sum / float64(hi-lo)
	}
	mn, mx := cells[0], cells[0]
	for _, c := range cells {
		mn, mx = math.Min(mn, c), math.Max(mx, c)
	}
	out := make([]rune, w)
	for i, c := range cells {
		k := 0
		if mx > mn {
			k = int((c - mn) / (mx - mn) * float64(len(sparks)-1))
		}
		out[i] = sparks[k]
	}
	return string(out)
}

func signed(r Resource, v float64) string {
	if v >= 0 {
		return "+" + formatValue(r, v)
	}
	return "-" + formatValue(r, -v)
}

// formatValue prints bytes with binary units and counts as plain numbers,
// three significant digits.
func formatValue(r Resource, v float64) string {
	if r != Heap && r != RSS {
		return trimFloat(v)
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return trimFloat(v) + " " + units[i]
}

func trimFloat(v float64) string {
	// Whole numbers, and any from 999.5 up (where %.3g turns to an
	// exponent: 1010 KiB, not 1.01e+03 KiB), as integers.
	if a := math.Abs(v); a < 1e6 && (v == math.Trunc(v) || a >= 999.5) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func objects(n float64) string {
	if n == 1 {
		return "1 object"
	}
	return trimFloat(n) + " objects"
}
