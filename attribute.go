package leaktest

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Attribution: when the heap leaks, a confirmation window of calls runs
// with every allocation profiled (runtime.MemProfileRate = 1, restored
// after), and the in-use heap profile before and after the window is
// diffed per allocation stack. The clean path never pays for it.
const (
	// Growth the window never passes. A map that a ticker replaces every
	// 200 ms, filled by a fast fn, reads as growing some 50 B per call
	// over a million calls: a smaller bound (64 MiB) kept the window
	// shorter than the measurement, which cannot overturn a verdict.
	attrMaxBytes = 256 << 20
	attrMinCalls = 16
	attrMaxCalls = 16384 // unless only a longer window can overturn the verdict
	// or the window would be shorter than this: the first part confirms
	// at once when what its first half's calls allocated stays to its end,
	// which memory in flight for less than half of it does not.
	attrMinSpan = 250 * time.Millisecond
	// Full windows added at most when the growth is dying down (attribute).
	attrExtensions = 2
	maxSites       = 5
	// The window ends this long after the budget at the latest, unless
	// its minimum takes longer; the report needs the rest of a second.
	attrOverrun = 750 * time.Millisecond
)

// profiling sets runtime.MemProfileRate: to 0 while the loop measures,
// to 1 for the attribution window, and puts the caller's rate back once:
// when the window ends, or the loop when none ran, or when Measure times
// out with fn blocked (the loop's goroutine may go on long after). The lock keeps the two from
// writing the rate at once.
//
// Off while measuring, because the profiler's own memory is Go's memory
// written for the first time, which RSS outside Go cannot tell from a
// leak there: its bucket hash table (1.4 MiB, counted by the runtime when
// the first allocation is sampled) is written a page at a time as new
// allocation stacks turn up, and each stack adds a bucket. An HTTPS
// client made per call, at the default rate, grew RSS outside Go by
// 560–670 B per call that way over 3 s (0.75 MiB), failing 3 runs in 10;
// with the profiler off it stayed flat (-3682 → -3686 KiB).
type profiling struct {
	mu    sync.Mutex
	on    bool // the rate is leaktest's, and saved is the caller's
	ended bool // Measure has returned: set it no more
	saved int
}

// set sets the rate, saving the caller's the first time; false when
// Measure has already returned.
func (p *profiling) set(rate int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return false
	}
	if !p.on {
		p.saved, p.on = runtime.MemProfileRate, true
	}
	runtime.MemProfileRate = rate
	return true
}

// start profiles every allocation, for the window.
func (p *profiling) start() bool { return p.set(1) }

// stop puts the caller's rate back, if set changed it.
func (p *profiling) stop() { p.finish(false) }

// end is stop for good, when Measure returns on a timeout.
func (p *profiling) end() { p.finish(true) }

func (p *profiling) finish(ended bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		runtime.MemProfileRate, p.on = p.saved, false
	}
	p.ended = p.ended || ended
}

// attributions counts the windows run, and extensions the full windows
// added (attribute), for tests.
var attributions, extensions atomic.Int64

// attribution is what the window found.
type attribution struct {
	calls     int
	sites     []Site
	base, end []byte // heap profiles (pprof format), when artifacts are on
	// user and runtime are the in-use growth per call that fn's code
	// allocated, and that the runtime allocated for its own structures
	// (goroutine descriptors, sudogs: caches that grow with GOMAXPROCS
	// and the number of collections until they saturate).
	user, runtime float64
	// heap is the growth per call of the live heap over the window: the
	// larger of its change from end to end (which a step keeps) and its
	// Theil–Sen slope over the window's collections (which a free
	// elsewhere in the process, near either end, does not move); late is
	// the same over the window's second half (the whole window's, when
	// that half has fewer than three readings), and trend the slope alone.
	heap, late, trend float64
	// lateZ is the Mann–Kendall z of the live heap over the window's
	// second half (0 when it has fewer than three readings).
	lateZ float64
	// quarter: late is over the last quarter of a window extended as far
	// as it goes (lastQuarter), not its second half.
	quarter bool
	// standing: the verdict is a leak that stands (standingLeak), found
	// before its growth per call thinned out; the window cannot say its
	// growth stopped while the heap still rises through its second half.
	standing bool
	// measured is the calls made before the window.
	measured int
	// tail is the calls after the window whose end the figures are from
	// (tailed), if any.
	tail int
	// cut: a window as long as the measurement (or, when calls >=
	// measured, a longer one) would not fit before the Timeout, so the
	// verdict stands unconfirmed.
	cut bool
	// planned: the calls the window meant to make, when it ended early to
	// end before the Timeout (calls is what it made); the verdict stands
	// unconfirmed, unless the runtime's structures explain it over at
	// least the window's minimum, least.
	planned, least int
}

// attribute runs the window. slope is the heap growth per call, limit the
// heap limit it was judged against.
//
// The window has two jobs: find the sites of a leak, which a short window
// does, and give a second opinion on the verdict, which for growth that
// stopped (or a leak in steps, a slice or map doubling) only a window as
// long as the measurement can. So it first runs within a quarter of the
// budget, and before attrOverrun past it (past its extension, for a run
// extended); it goes on to as many calls as
// were measured, whatever the time, only when that could overturn the
// verdict: the first part did not find the same growth again, and the
// runtime's own structures do not explain it. A full window whose second
// half still grew a little, though fn's code kept little, goes on (up to
// attrExtensions more times as many calls) to see whether that growth
// ends. A full window that confirms the verdict on what its second half's
// calls allocated alone, whose heap fell, goes on to a tail of as many
// calls to see whether that is let go (tailed). A false alarm costs
// more than a slow one.
func (m *meter) attribute(slope, limit float64, standing bool) {
	bin := max(1, 4*int(m.bin)) // a collection every 4 bins
	full := max(m.calls, attrMinCalls)
	if slope > 0 {
		full = max(1, min(full, int(attrMaxBytes/slope)))
	}
	// The window costs its calls, a collection per bin calls and
	// settleCycles collections at each end.
	w := min(full, attrMaxCalls)
	// The window keeps the measurement's pace, no more calls a second
	// than its late window made (samples included), in bursts of as many
	// calls as it made between samples. Memory that follows the calls'
	// pace, not their number (a cache of the last 20 ms of calls, on a
	// Go map that never shrinks), would otherwise grow in the window,
	// whose collections cost less than samples, and confirm the growth
	// that a pace rising late in the run left in the measurement.
	burst := max(1, int(m.bin))
	interval := time.Duration(float64(m.callTime()) * float64(burst))
	end := m.cfg.budget // or the extension's end (extend)
	if m.extended != 0 {
		end = max(end, m.loopEnd)
	}
	avail := min(m.cfg.budget/4, time.Until(m.start.Add(end+attrOverrun)))
	gc := m.sampleAvg()
	avail -= 2 * settleCycles * gc
	perCall := max(float64(m.fnTime)/float64(max(1, m.calls))+float64(gc)/float64(bin),
		float64(interval)/float64(burst))
	if perCall > 0 {
		w = min(max(w, int(float64(attrMinSpan)/perCall)), full)
		w = min(w, int(float64(avail)/perCall))
	}
	// At least four collection groups, though: over fewer calls, what the
	// last ones still hold (a goroutine finishing, a timer) weighs enough
	// per call to pass the limit and confirm a leak that is none.
	least := min(full, 4*bin)
	w = max(w, least)
	// The window must end before the Timeout too, at the pace of fn's
	// calls plus half (every allocation profiled): a leak already found
	// must not turn into a timeout (Iterations leaves the budget no say
	// over the calls before it). Shorter, then, down to its minimum.
	if left := time.Until(m.deadline) - m.cfg.timeout/10 - 2*settleCycles*gc; perCall > 0 {
		w = min(w, int(max(0, float64(left)/(perCall*3/2))))
	}
	if w < least {
		m.attrSkipped = least
		return
	}

	if !m.prof.start() {
		return
	}
	defer m.prof.stop()
	attributions.Add(1)

	a := &attribution{measured: m.calls, least: least, standing: standing}
	// The live heap after the window's collections: every one up to
	// capacity of them, evenly spaced beyond, and the readings at start,
	// between passes and at the end. Allocated, like the base profile,
	// before the first reading, so that neither reads as growth.
	groups := (2+attrExtensions)*full/bin + 1 // and a tail
	every := (groups + capacity - 1) / capacity
	xs := make([]float64, 0, groups/every+4)
	ys := make([]float64, 0, cap(xs))
	// The base profile's records too, so that the collections settling
	// it count them and the first reading needs no collection of its
	// own: with a large live heap each costs tens of ms.
	recs := make([]runtime.MemProfileRecord, profileLen()+256)
	var midRecs []runtime.MemProfileRecord
	if w < full {
		// Room for the window's new allocation sites too: allocated
		// halfway through, the records would read as a step.
		midRecs = make([]runtime.MemProfileRecord, 2*len(recs))
	}
	settleProfile()
	base, grew := memRecords(recs)
	if m.cfg.reportDir != "" {
		a.base = heapProfile()
		grew = true
	}
	read := func() {
		metrics.Read(m.met[mLive : mLive+1])
		x, y := float64(m.calls), float64(m.met[mLive].Value.Uint64())
		if n := len(xs); n > 0 && xs[n-1] == x {
			ys[n-1] = y // the same calls, settled further
			return
		}
		xs, ys = append(xs, x), append(ys, y)
	}
	if grew {
		runtime.GC()
	}
	read()
	m.raiseLimit() // over the records just allocated
	held0 := heldByTag(base)
	t0 := time.Now()
	paced, last := t0, 0 // when the last burst started, and its calls
	// fits says whether k more calls fit before the Timeout, at the rate
	// of this window's calls (every allocation profiled), with room to
	// spare.
	fits := func(k, w int) bool {
		more := time.Since(t0) / time.Duration(w) * time.Duration(k) * 3 / 2
		return time.Until(m.deadline) >= more+m.cfg.timeout/10
	}
	// The profile halfway through a first window shorter than full: what
	// fn's code kept in the window's second half alone (userLate).
	var mid []runtime.MemProfileRecord
	midDone := 0
	// The calls tagged early and late, and the tail's first call (0
	// before a tail) with the window's figures before it (attribute).
	var tagged [tags]int
	tailFrom, untailed := 0, attribution{}
	for done, group, extended := 0, 1, 0; ; {
		// The window keeps something of the measuring rhythm, so that
		// what grows per collection grows here too, at a fraction of the
		// sampling's cost.
		for ; done < w; group++ {
			step := min(bin, w-done)
			for k := 0; k < step; {
				b := min(burst, step-k)
				// A burst starts an interval after the last one
				// started, as the measurement's did (its sample in
				// between): counted from that start, not from the
				// window's, so that a burst that ran late (the
				// process descheduled) does not bring the next ones
				// closer, to catch up, and a collection between two
				// does not either.
				if d := time.Duration(last)*interval/time.Duration(burst) - time.Since(paced); d > 0 {
					time.Sleep(d)
				}
				paced, last = time.Now(), b
				// Each call goes through the frame that tags its
				// part of the window (released, the tail).
				call := m.callLate
				switch {
				case tailFrom > 0:
					call = m.callTail
				case 2*done < w:
					call = m.callEarly
					tagged[early] += b
				default:
					tagged[late] += b
				}
				if !call(m.calls + b) {
					return
				}
				k += b
			}
			done += step
			if done == w {
				break // settleProfile collects after the last group
			}
			if !finishes(time.Since(t0), done, w-done, gc, time.Until(m.deadline), m.cfg.timeout) {
				// Profiled, fn's calls are slower than the plan
				// allowed for (many small allocations): end here,
				// with the sites found so far.
				a.planned, w = w, done
				break
			}
			runtime.GC()
			m.raiseLimit()
			if group%every == 0 {
				read()
			}
			if w < full && midDone == 0 && 2*done >= w {
				settleProfile()
				// Without room, no mid profile (midDone -1): the
				// window is judged as a whole.
				if k, ok := runtime.MemProfile(midRecs, true); ok {
					mid, midDone = midRecs[:k], done
				} else {
					midDone = -1
				}
			}
		}
		// Goroutines and descriptors found in flight once the loop's
		// calls stopped (drainCounts) are let end here too: what they
		// hold at the window's end is not kept. A goroutine per call that
		// closed its file 30 ms later was confirmed a heap leak by the
		// files and closures in flight at the end (1 run in 10 at
		// GOGC=25 in a torture run).
		if in := m.inFlightCounts(); len(in) > 0 {
			m.waitFalling(in)
		}
		settleProfile()
		read()
		end, _ := memRecords(nil)
		if tailFrom > 0 {
			if a.planned > 0 {
				*a = untailed // cut short: the window's figures stand
			} else {
				a.tailed(held0, heldByTag(end), tagged, w-tailFrom)
				a.late = max(a.late, lowGrowth(xs, ys, tailFrom))
			}
			break
		}
		var user, rt int64
		a.calls = w
		a.sites, user, rt = diffSites(base, end, w)
		a.user, a.runtime = float64(user)/float64(w), float64(rt)/float64(w)
		userLate, gone := a.user, 0.0
		if w < full && midDone > 0 && midDone < w {
			_, late, _ := diffSites(mid, end, w-midDone)
			userLate = float64(late) / float64(w-midDone)
			gone = float64(released(mid, end)) / float64(midDone)
		}
		a.trend = m.st.fitTrend(xs, ys, ciZ).slope
		a.heap = windowGrowth(xs, ys, a.trend)
		a.late = a.heap
		if h := len(xs) / 2; len(xs)-h >= 3 {
			a.late, a.lateZ = lateGrowth(m.st, xs[h:], ys[h:])
		}
		if extended == attrExtensions && a.planned == 0 {
			a.lastQuarter(xs, ys, m.st)
		}
		// Only a window as long as the measurement can overturn the
		// verdict (notConfirmed): worth running when it can, when this one
		// did not find at least half the growth again (in its profile and
		// in the heap's trend, a linear leak shows in both), and when it
		// fits before the Timeout (at the rate of this window's calls,
		// every allocation profiled, with room to spare).
		// fn's code must keep it in the window's second half too: what a
		// clean fn holds in flight (the last 20 ms of a TTL cache's
		// entries) reads as kept by a window of any length longer than
		// the time it is held, the same amount, so in the first half
		// only. (A window whose half is shorter than that sees it as
		// kept in both halves: see the README's Limits.)
		// And what fn's code held at the window's middle from its
		// first half's calls, it must still hold at its end: memory in
		// flight whose amount follows the calls' speed (a cache of the
		// last 20 ms of calls, run faster or slower as the machine's
		// load changes) grows and shrinks in any window, but the first
		// half's entries are gone by the end; a leak's stay.
		// Nor may the heap have fallen by an eighth of the growth
		// a leak at that slope would make in it: memory in flight
		// whose fall came in the first half, the rest still rising at
		// the end (a map a ticker replaces, in a window shorter than
		// two of its periods), shows no release from the middle on.
		again := min(a.user, userLate, a.trend-a.runtime) >= slope/2 && gone < slope/2 &&
			drop(ys) < slope*float64(w)/8
		switch {
		case a.planned > 0:
		case w >= full:
			// A full window whose growth fn's code did not keep, but
			// whose second half still grew a little above the limit: a
			// Go map's tables still growing for some thousand calls
			// after its cache filled, or a small leak beside a cache that
			// filled. Going on tells them apart: the map's growth ends, a
			// leak's does not (notConfirmed judges the longer window).
			// (Not when the runtime's structures already explain it:
			// notConfirmed overturns that one as it stands.)
			dying := full >= a.measured && a.kept() < slope/4 && a.late > limit && a.late < slope/2 &&
				!a.runtimeExplains(limit, slope)
			switch {
			case !dying || extended == attrExtensions:
				// A verdict the window confirms, though what its
				// first half's calls allocated is gone, rests on its
				// second half's: memory in flight (a map a ticker
				// replaces every 200 ms, the last 20 ms of a TTL
				// cache's entries) that the window's end caught at
				// any point of its rise, or a leak. A tail of calls
				// tells them apart: in flight, it is let go (tailed).
				// Not when the heap never fell in the window: a
				// slice that grows by a quarter at each step lets
				// its first half's arrays go too, but keeps what
				// they held.
				held := heldByTag(end)
				first := float64(held[early]-held0[early]) / float64(max(1, tagged[early]))
				other := float64(max(0, held[untagged]-held0[untagged])) / float64(w)
				fell := drop(ys) >= limit*float64(w)/2
				if t := full; first+other < slope/4 && fell && full >= a.measured &&
					a.overturned(limit, slope) == "" && fits(t, w) {
					untailed, tailFrom = *a, w
					w += t
					continue
				}
			case !fits(full, w):
				a.cut = true
			default:
				extended++
				extensions.Add(1)
				w += full
				a.sites = nil
				continue
			}
		case full < a.measured || again || a.runtime >= slope/2:
		case !fits(full-w, w):
			a.cut = true
		default:
			w = full
			// What this pass found stays live through the next one: keep
			// nothing of it to read as growth (the next pass finds it
			// again).
			a.sites = nil
			continue
		}
		break
	}
	if m.cfg.reportDir != "" {
		a.end = heapProfile()
	}
	m.attr = a
}

// The window's calls go through frames that tag their allocations in the
// heap profile: callEarly for its first half, callLate for its second,
// callTail for the calls after a full window that show what of its
// allocations was only in flight (attribute). Stack keys drop them.
//
//go:noinline
func (m *meter) callEarly(target int) bool { return m.callTo(target) }

//go:noinline
func (m *meter) callLate(target int) bool { return m.callTo(target) }

//go:noinline
func (m *meter) callTail(target int) bool { return m.callTo(target) }

// tag is the window part whose call made an allocation.
type tag int8

const (
	untagged tag = iota // elsewhere: before the window, or another goroutine
	early
	late
	tail
	tags // how many
)

var tagEntries = [tags]uintptr{
	early: funcEntry((*meter).callEarly),
	late:  funcEntry((*meter).callLate),
	tail:  funcEntry((*meter).callTail),
}

func funcEntry(f func(*meter, int) bool) uintptr {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Entry()
}

// tagPCs caches, per return address, the tag of its function: a profile
// has thousands of frames, most of them the same.
type tagPCs map[uintptr]tag

func (t tagPCs) of(pc uintptr) tag {
	g, ok := t[pc]
	if !ok {
		if f := runtime.FuncForPC(pc - 1); f != nil {
			if i := slices.Index(tagEntries[:], f.Entry()); i > 0 {
				g = tag(i)
			}
		}
		t[pc] = g
	}
	return g
}

// heldByTag sums, per tag, the bytes that fn's code holds in a profile
// (the runtime's own structures and leaktest's allocations left out).
// Allocations of the goroutines fn starts, and of stacks too deep for the
// profile to reach the tag, are untagged.
func heldByTag(recs []runtime.MemProfileRecord) (held [tags]int64) {
	t, c := tagPCs{}, frameKinds{}
	for i := range recs {
		stk := recs[i].Stack()
		if c.of(stk) != userAlloc {
			continue
		}
		g := untagged
		for _, pc := range stk {
			if g = t.of(pc); g != untagged {
				break
			}
		}
		held[g] += recs[i].InUseBytes()
	}
	return held
}

// released is what fn's code allocated in a window's first half and held
// at its middle, less what it still holds at the end: memory in flight,
// let go since. Untagged allocations are not counted.
func released(mid, end []runtime.MemProfileRecord) int64 {
	return max(0, heldByTag(mid)[early]-heldByTag(end)[early])
}

// callTime is the wall time per call, samples included, of the judged
// late window; 0 with fewer than two samples.
func (m *meter) callTime() time.Duration {
	last := m.n - 1
	_, mid := m.window()
	if dx, dt := m.xs[last]-m.xs[mid], m.ts[last]-m.ts[mid]; dx > 0 && dt > 0 {
		return time.Duration(dt / dx * float64(time.Second))
	}
	return 0
}

// finishes says whether the k calls left of a window's pass, at the pace
// of the done made in elapsed (already profiled: no margin on the pace),
// and the collections after them, each gc long, end before the Timeout's
// last twentieth (half the reserve the plan kept), left away.
func finishes(elapsed time.Duration, done, k int, gc, left, timeout time.Duration) bool {
	rest := elapsed/time.Duration(done)*time.Duration(k) + 2*settleCycles*gc
	return left >= rest+timeout/20
}

// windowGrowth is the larger of the change per call from the first
// reading to the last and the slope given.
func windowGrowth(xs, ys []float64, slope float64) float64 {
	n := len(xs) - 1
	if n < 1 {
		return slope
	}
	return max((ys[n]-ys[0])/(xs[n]-xs[0]), slope)
}

// lastQuarter judges the growth that an extended window went on for
// (dying) over the last quarter of its longest extent, when less than over
// its second half: a Go map's tables split 18 KiB at a time for thousands
// of calls after its cache filled (in runs of the cache alone, the last
// split came as late as calls 8000–24 000), and one split early in the
// second half, then thousands of calls flat, read as growth that had not
// ended (an LRU of 2800 pages filling at 70% of Iterations(4000), in a
// run that failed). A leak above the limit grows in that quarter too: it
// is three quarters of the calls measured (a window cut short is not
// judged so), longer than the second half of the first full window. A
// leak in steps further apart than that passes (see the README's Limits).
// lateZ stays the second half's: a quarter's fewer readings give a
// smaller z, and a leak that stands must not lose its guard to that.
func (a *attribution) lastQuarter(xs, ys []float64, st *stats) {
	n := len(xs)
	if n < 2 {
		return
	}
	from := xs[0] + (xs[n-1]-xs[0])*3/4
	q := sort.SearchFloat64s(xs, from)
	if n-q < 3 {
		return
	}
	if g, _ := lateGrowth(st, xs[q:], ys[q:]); g < a.late {
		a.late, a.quarter = g, true
	}
}

// lateGrowth is windowGrowth over a stretch of the window's readings, and
// the Mann–Kendall z of its trend.
func lateGrowth(st *stats, xs, ys []float64) (growth, z float64) {
	f := st.fitTrend(xs, ys, ciZ)
	return windowGrowth(xs, ys, f.slope), f.z
}

// tailed sets the figures of a window followed by a tail of calls: what
// fn's code allocated in the window and still holds after the tail (its
// tagged allocations, and the growth of the untagged ones), per call of
// the window, and of its second half; the lesser of those and the figures
// at the window's end. Memory in flight is let go in the tail; a leak's
// stays, as does the larger array a slice or map that doubles moved to
// (one that grows by less copies it in the tail: lowGrowth).
func (a *attribution) tailed(held0, held [tags]int64, tagged [tags]int, tail int) {
	grown := func(g tag) float64 { return float64(max(0, held[g]-held0[g])) }
	other := grown(untagged) / float64(a.calls)
	a.user = min(a.user, (grown(early)+grown(late))/float64(a.calls)+other)
	a.late = min(a.late, grown(late)/float64(max(1, tagged[late]))+other)
	a.tail = tail
}

// drop is the largest fall of the live heap from one reading to a later
// one.
func drop(ys []float64) float64 {
	high, fall := math.Inf(-1), 0.0
	for _, y := range ys {
		high = max(high, y)
		fall = max(fall, high-y)
	}
	return fall
}

// lowGrowth is the growth per call of the live heap's low point from the
// window's second half to the tail (win calls the window's): a slice or
// map that grows by a quarter at each step copies what the window kept
// into arrays the tail allocated, which its tags cannot tell from memory
// in flight; but its heap does not fall, as memory in flight does. A low
// point is read at some collection after the fall, when what rises again
// has risen for up to a reading's interval: the median rise between two
// readings is taken off, so that a sawtooth's low points, read at random
// points of that interval, do not read as growth.
func lowGrowth(xs, ys []float64, win int) float64 {
	mid, end := xs[0]+float64(win)/2, xs[0]+float64(win)
	low, tail := math.Inf(1), math.Inf(1)
	var rises []float64
	for i, x := range xs {
		switch {
		case x > end:
			tail = min(tail, ys[i])
		case x >= mid:
			low = min(low, ys[i])
		default:
			continue
		}
		if i > 0 && xs[i-1] >= mid && ys[i] > ys[i-1] {
			rises = append(rises, ys[i]-ys[i-1])
		}
	}
	if math.IsInf(low, 0) || math.IsInf(tail, 0) {
		return math.Inf(1) // no readings to tell: what the heap kept counts
	}
	slices.Sort(rises)
	return (tail - low - median(rises)) / (float64(win) / 2)
}

// kept is the growth per call that fn's code kept in the window: what its
// allocations in the window still hold at its end, or less when the live
// heap, net of the runtime's structures, grew less. A diff of profiles
// cannot see the frees of objects allocated before the window, when not
// every allocation was profiled: a full cache that replaces an old entry
// at each call shows every new one as kept, while the heap stays flat.
func (a *attribution) kept() float64 {
	return max(0, min(a.user, a.heap-a.runtime))
}

// runtimeExplains: fn's code kept no more than the limit per call, and the
// runtime's own structures account for at least half the growth (the
// first case of notConfirmed).
func (a *attribution) runtimeExplains(limit, slope float64) bool {
	return a.user <= limit && a.runtime >= slope/2
}

// settleProfile makes the heap profile current. runtime.GC publishes the
// profile as of its own cycle, unless a collection started elsewhere
// overtook it: a second one covers that.
const settleCycles = 2

func settleProfile() {
	for i := 0; i < settleCycles; i++ {
		runtime.GC()
	}
}

// memRecords returns the in-use heap profile, in recs when it fits (grew
// says when it did not and a larger slice was allocated).
func memRecords(recs []runtime.MemProfileRecord) (_ []runtime.MemProfileRecord, grew bool) {
	for {
		k, ok := runtime.MemProfile(recs, true)
		if ok {
			return recs[:k], grew
		}
		recs, grew = make([]runtime.MemProfileRecord, k+64), true
	}
}

// profileLen is the number of records in the heap profile.
func profileLen() int {
	n, _ := runtime.MemProfile(nil, true)
	return n
}

func heapProfile() []byte {
	var b bytes.Buffer
	if p := pprof.Lookup("heap"); p != nil {
		p.WriteTo(&b, 0)
	}
	return b.Bytes()
}

// diffSites groups the in-use growth between two profiles by allocation
// site, largest first, and sums the growth of fn's code and of the
// runtime's own structures.
func diffSites(base, end []runtime.MemProfileRecord, calls int) (sites []Site, user, rt int64) {
	before, after := inUseByStack(base), inUseByStack(end)
	type grown struct {
		site           Site
		bytes, objects int64
	}
	bySite := map[string]*grown{}
	kinds := frameKinds{}
	var total int64
	// In the keys' order, so that a site reached by several stacks shows
	// the same one every run.
	for _, r := range after {
		var b inUse
		for len(before) > 0 && slices.Compare(before[0].key[:], r.key[:]) < 0 {
			before = before[1:]
		}
		if len(before) > 0 && before[0].key == r.key {
			b = before[0]
		}
		db, do := r.bytes-b.bytes, r.objects-b.objects
		if db <= 0 {
			continue
		}
		// Classified as the window classifies (kinds.of), so that the
		// sites shown and the window's judgement agree; symbolized in
		// full (siteOf) only where the site is shown.
		switch kinds.of(r.stack) {
		case harnessAlloc:
			continue // leaktest's own, such as the profile just taken
		case runtimeAlloc:
			rt += db
			continue
		}
		site, _ := siteOf(r.stack)
		user += db
		key := fmt.Sprintf("%s\x00%s:%d", site.Function, site.File, site.Line)
		g := bySite[key]
		if g == nil {
			g = &grown{site: site}
			bySite[key] = g
		}
		g.bytes += db
		g.objects += do
		total += db
	}
	list := make([]*grown, 0, len(bySite))
	for _, g := range bySite {
		list = append(list, g)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].bytes != list[j].bytes {
			return list[i].bytes > list[j].bytes
		}
		x, y := list[i].site, list[j].site
		if x.Function != y.Function {
			return x.Function < y.Function
		}
		if x.File != y.File {
			return x.File < y.File
		}
		return x.Line < y.Line
	})
	for _, g := range list {
		if len(sites) == maxSites {
			break
		}
		share := float64(g.bytes) / float64(total)
		if share < 0.01 {
			break
		}
		s := g.site
		s.BytesPerCall = float64(g.bytes) / float64(calls)
		s.ObjectsPerCall = float64(g.objects) / float64(calls)
		s.Share = share
		sites = append(sites, s)
	}
	return sites, user, rt
}

type inUse struct {
	key            [32]uintptr // the stack without the tags' frames
	bytes, objects int64
	stack          []uintptr // one record's whole stack
}

// inUseByStack sums a profile's records per allocation stack, in the order
// of their keys. The runtime keeps a record per stack and allocation size:
// a slice that grows moves from one size to the next, and only the sum
// over sizes says whether that stack holds more. Sorted, not a map: a map
// of 256 B keys allocates each key and the copy of its stack, every
// allocation of it profiled in the window (250 ms a profile of 4096
// stacks, measured). stack points into recs.
func inUseByStack(recs []runtime.MemProfileRecord) []inUse {
	sums := make([]inUse, len(recs))
	t := tagPCs{}
	for i := range recs {
		// Keyed without the tags' frames, so that all the window's
		// allocations at a site are one stack, as before the tags; and
		// without the 32nd frame, which a tag pushes out of a deep
		// stack.
		u := &sums[i]
		k := 0
		for _, pc := range recs[i].Stack0[:31] {
			if pc != 0 && t.of(pc) == untagged {
				u.key[k] = pc
				k++
			}
		}
		u.bytes, u.objects, u.stack = recs[i].InUseBytes(), recs[i].InUseObjects(), recs[i].Stack()
	}
	slices.SortStableFunc(sums, func(a, b inUse) int { return slices.Compare(a.key[:], b.key[:]) })
	n := 0
	for i := range sums {
		if n > 0 && sums[n-1].key == sums[i].key {
			sums[n-1].bytes += sums[i].bytes
			sums[n-1].objects += sums[i].objects
			continue
		}
		sums[n] = sums[i]
		n++
	}
	return sums[:n]
}

// What a frame says of its stack's allocation (frameKind).
const (
	kindShown     = 1 << iota // outside the runtime, the harness and testing: siteOf keeps it
	kindHarness               // leaktest's own
	kindStructure             // the runtime's goroutine structures (frameKind)
)

// frameKind classifies one frame. kindStructure marks the runtime's own
// goroutine structures: a descriptor (malg, allgadd), a sudog, or the timer
// a goroutine's first time.Sleep allocates (freed when it exits).
// Goroutines that stay alive are judged as goroutines; dead descriptors and
// sudogs are cached per P and are not fn's to keep, and sleep timers in the
// profile are those of goroutines still finishing.
func frameKind(f runtime.Frame) uint8 {
	var k uint8
	switch f.Function {
	case "runtime.malg", "runtime.allgadd", "runtime.acquireSudog", "time.Sleep", "runtime.timeSleep":
		k = kindStructure
	}
	switch {
	case f.Function == "" || strings.HasPrefix(f.Function, "runtime."):
	case harness(f):
		k |= kindHarness
	case !strings.HasPrefix(f.Function, "testing."):
		k |= kindShown
	}
	return k
}

// frameKinds caches frameKind per return address (with the calls inlined
// there: each has an address of its own in a profile's stack). siteOf
// symbolizes a whole stack, and heldByTag reads every stack of a profile
// three times in a window, every allocation of it profiled: with 4016
// stacks in the profile, a window took 3.7 s instead of 0.9 s (measured).
// Most frames are the same from stack to stack.
type frameKinds map[uintptr]uint8

// of gives siteOf's kind of an allocating stack, and runtimeAlloc for one
// of fn's with a frame of kindStructure too.
func (c frameKinds) of(stk []uintptr) int {
	var k uint8
	for _, pc := range stk {
		f, ok := c[pc]
		if !ok {
			frames := runtime.CallersFrames([]uintptr{pc})
			for more := true; more; {
				var fr runtime.Frame
				fr, more = frames.Next()
				f |= frameKind(fr)
			}
			c[pc] = f
		}
		k |= f
	}
	switch {
	case k&kindShown == 0 && k&kindHarness != 0:
		return harnessAlloc
	case k&kindShown == 0 || k&kindStructure != 0:
		return runtimeAlloc
	}
	return userAlloc
}

// pkgPrefix is this package's prefix in function names.
var pkgPrefix = func() string {
	name := runtime.FuncForPC(reflect.ValueOf((*meter).callTo).Pointer()).Name()
	return name[:strings.Index(name, "(*meter)")]
}()

// harness reports whether a frame is leaktest's own (the measuring loop,
// Serve, the attribution itself, the pprof.Do it runs under): on every
// stack, never the site. The package's tests are not harness.
func harness(f runtime.Frame) bool {
	return f.Function == "runtime/pprof.Do" ||
		strings.HasPrefix(f.Function, pkgPrefix) && !strings.HasSuffix(f.File, "_test.go")
}

// goroot is the directory of the standard library's sources as they
// appear in stacks ("" under -trimpath).
var goroot = func() string {
	pc := reflect.ValueOf(runtime.GC).Pointer()
	file, _ := runtime.FuncForPC(pc).FileLine(pc)
	if i := strings.LastIndex(file, "runtime/"); i >= 0 {
		return file[:i]
	}
	return ""
}()

// Kinds of allocating stacks.
const (
	userAlloc    = iota // has a frame of the user's code (or the standard library's)
	runtimeAlloc        // runtime frames only: the runtime's own work
	harnessAlloc        // leaktest's own frames besides the runtime's
)

// siteOf picks the site of an allocating stack: its innermost frame in
// the user's code; failing that (a leak inside the standard library, such
// as a timer), its innermost frame outside the runtime. The stack kept is
// the frames outside the runtime and the harness.
func siteOf(pcs []uintptr) (Site, int) {
	frames := runtime.CallersFrames(pcs)
	var s Site
	var user, other *runtime.Frame
	harnessed := false
	for {
		f, more := frames.Next()
		switch k := frameKind(f); {
		case k&kindHarness != 0:
			harnessed = true
		case k&kindShown != 0:
			s.Stack = append(s.Stack, fmt.Sprintf("%s %s:%d", f.Function, f.File, f.Line))
			f := f
			if other == nil {
				other = &f
			}
			if user == nil && !stdlib(f.File) {
				user = &f
			}
		}
		if !more {
			break
		}
	}
	pick := user
	if pick == nil {
		pick = other
	}
	if pick == nil {
		if harnessed {
			return s, harnessAlloc
		}
		return s, runtimeAlloc
	}
	s.Function, s.File, s.Line = pick.Function, pick.File, pick.Line
	if len(s.Stack) > 8 {
		s.Stack = s.Stack[:8]
	}
	return s, userAlloc
}

// stdlib reports whether file is in the standard library: under GOROOT,
// or, under -trimpath, a path whose first element has no dot.
func stdlib(file string) bool {
	if goroot != "" {
		return strings.HasPrefix(file, goroot)
	}
	first, _, _ := strings.Cut(file, "/")
	return !strings.Contains(first, ".")
}

// shortFunc drops the import path's directories: "chartsvc.newFigure".
func shortFunc(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}

// String is the site as the failure shows it.
func (s Site) String() string {
	return fmt.Sprintf("%s %s:%d", shortFunc(s.Function), filepath.Base(s.File), s.Line)
}

// caller is the frame that called the site, short, or "".
func (s Site) caller() string {
	for i, fr := range s.Stack {
		if !strings.HasPrefix(fr, s.Function+" ") || i+1 >= len(s.Stack) {
			continue
		}
		fn, loc, _ := strings.Cut(s.Stack[i+1], " ")
		return shortFunc(fn) + " " + filepath.Base(loc)
	}
	return ""
}
