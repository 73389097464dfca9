package leaktest

import (
	"math"
	"slices"
)

// The decision rule. A resource leaks when it grows again and again
// through the judged region, not once (a step), not for a while (a plateau)
// and not up and down (a sawtooth):
//
//   - over the judged region (the last three quarters of the samples, or
//     everything after a fixed warm-up) the Mann–Kendall trend has
//     z >= zRegion;
//   - the region's first third (early window) and its last two thirds (late
//     window) each show an upward trend of their own, z >= zEarly and
//     z >= zLate, and each grows faster than the limit;
//   - the two windows' growth per call agrees within a factor of maxRatio.
//
// A window's growth per call is its Theil–Sen slope, or, for growth in
// steps (a slice or map that reallocates as it grows) where most pairs of
// samples lie on one stair and the median slope is 0, the change of its
// level (median of its first and last quarter) per call, whichever is
// larger. A one-time step lies in one window only; a plateau leaves the late
// window flat; a sawtooth, sampled at jittered points, has no rank trend.
const (
	zRegion  = 4.0
	zLate    = 2.5
	zEarly   = 3.0
	ciZ      = 3.0 // Sen interval: the reported uncertainty
	zHint    = 2.0 // growth this clear in the late window asks for more data
	maxRatio = 4.0
)

type verdict int

const (
	clean  verdict = iota
	unsure         // growth in the late window only: a step, a leak that started late, or one that noise hid
	leak
)

type judgement struct {
	verdict
	region, early, late fit
	// earlyRate and lateRate are the windows' growth per call.
	earlyRate, lateRate float64
	// level is the region's change of level per call (levelRate).
	level float64
	// limit is the limit per call the windows were judged against.
	limit float64
	// stoppedAt is the first call of a flat tail that made a count's leak
	// unsure (checkStopped); 0 otherwise.
	stoppedAt int
	// unwritten is the Go heap memory, at least, never written at the
	// region's start that made a leak of RSS outside Go unsure
	// (checkUnwritten); 0 otherwise. grown is that leak's growth over the
	// region, and explainable the most of it settleUnwritten lets the
	// heap account for; room is how much more it can grow before it
	// cannot be the heap's.
	unwritten, grown, explainable, room float64
	// stood is the calls judged where a leak that stands was found again,
	// when this is that leak's judgement put in place of the last one
	// (stand); zero otherwise. nowRate and nowCalls are the growth per
	// call in the last judgement's late window, and its calls.
	stood    [2]int
	nowRate  float64
	nowCalls [2]int
}

// pending is why a judgement leaves growth undecided, growth that a larger
// budget would tell apart, or decided when there is none.
type pending int

const (
	decided       pending = iota
	noTrend               // clean, but grew above the limit without a clear trend
	lateOnly              // unsure: grew in the late window only
	stopped               // unsure: a count grew, then stopped (checkStopped)
	unwrittenHeap         // unsure: RSS outside Go beside unwritten heap (checkUnwritten)
)

// undecided classifies j. The report's notes and extend share it, so that
// a run goes on past its budget for exactly the growth that its notes
// would call undecided.
func (j judgement) undecided() pending {
	switch {
	case j.verdict == clean && j.limit > 0 && j.growth() > j.limit:
		return noTrend
	case j.verdict != unsure:
		return decided
	case j.unwritten > 0:
		return unwrittenHeap
	case j.stoppedAt > 0:
		return stopped
	}
	return lateOnly
}

// growth is the region's growth per call: its Theil–Sen slope, or for
// growth in steps, where most pairs of samples lie on one stair and the
// median slope is about 0, the change of its level. A buffer that doubles
// can show four steps and a slope of 0 (1.7 to 32.7 MiB, under -race).
func (j judgement) growth() float64 {
	return math.Max(j.region.slope, j.level)
}

// judge applies the rule to samples r0.. of xs, ys; mid splits the region
// into the early and the late window (both hold sample mid).
func (s *stats) judge(xs, ys []float64, r0, mid int, limit float64) judgement {
	j := judgement{limit: limit}
	j.region = s.fitTrend(xs[r0:], ys[r0:], ciZ)
	j.early = s.fitTrend(xs[r0:mid+1], ys[r0:mid+1], ciZ)
	j.late = s.fitTrend(xs[mid:], ys[mid:], ciZ)
	j.earlyRate = math.Max(j.early.slope, s.levelRate(xs[r0:mid+1], ys[r0:mid+1]))
	j.lateRate = math.Max(j.late.slope, s.levelRate(xs[mid:], ys[mid:]))
	j.level = s.levelRate(xs[r0:], ys[r0:])
	agree := j.earlyRate*maxRatio >= j.lateRate && j.lateRate*maxRatio >= j.earlyRate
	switch {
	case j.region.z >= zRegion && j.late.z >= zLate && j.early.z >= zEarly &&
		j.lateRate > limit && j.earlyRate > limit && agree:
		j.verdict = leak
	case j.late.z >= zHint && j.lateRate > limit:
		j.verdict = unsure
	}
	return j
}

// levelRate is the change per call between the median of the first and
// of the last quarter of a window (at least three samples each, so that
// one sample disturbed by garbage in flight does not move a level).
func (s *stats) levelRate(xs, ys []float64) float64 {
	n := len(xs)
	q := max(3, n/4)
	if n < 2*q {
		return 0
	}
	a := s.medianOf(ys[:q])
	b := s.medianOf(ys[n-q:])
	dx := s.medianOf(xs[n-q:]) - s.medianOf(xs[:q])
	if dx <= 0 {
		return 0
	}
	return (b - a) / dx
}

// medianOf sorts a copy of vs in the scratch space.
func (s *stats) medianOf(vs []float64) float64 {
	c := append(s.ties[:0], vs...)
	slices.Sort(c)
	return median(c)
}
