package leaktest

// The decision rule. A resource leaks when its growth is a slope that runs
// through the whole judged region, not a step, a plateau or a sawtooth:
//
//   - over the judged region (the last three quarters of the samples) the
//     Mann–Kendall trend has z >= zRegion;
//   - over its last two thirds (growth still going on at the end) z >=
//     zLate and the lower end of the Sen interval is above the limit;
//   - over its first third (growth already there before) z >= zEarly and
//     the Theil–Sen slope is above the limit;
//   - the slopes of the two windows agree within a factor of maxRatio.
//
// A step lies in one window only, a plateau leaves the last window flat, a
// sawtooth has no rank trend once the sampling is jittered. Each threshold
// alone would let a rare noise pattern through; together they make a false
// alarm on a stationary series a joint event of probability below 1e-7.
const (
	zRegion  = 4.0
	zLate    = 3.0
	zEarly   = 2.0
	ciZ      = 3.0 // Sen interval: the reported uncertainty and the lower bound
	zHint    = 2.0 // growth this clear in the last window asks for more data
	maxRatio = 3.0
)

type verdict int

const (
	clean  verdict = iota
	unsure         // growth in the last window only: a step, or a leak that started late
	leak
)

type judgement struct {
	verdict
	region, early, late fit
}

// judge applies the rule to samples r0.. of xs, ys; mid splits the region
// into the early and the late window (both hold sample mid).
func (s *stats) judge(xs, ys []float64, r0, mid int, limit float64) judgement {
	var j judgement
	j.region = s.fitTrend(xs[r0:], ys[r0:], ciZ)
	j.early = s.fitTrend(xs[r0:mid+1], ys[r0:mid+1], ciZ)
	j.late = s.fitTrend(xs[mid:], ys[mid:], ciZ)
	agree := j.early.slope*maxRatio >= j.late.slope && j.late.slope*maxRatio >= j.early.slope
	switch {
	case j.region.z >= zRegion && j.late.z >= zLate && j.late.lo > limit &&
		j.early.z >= zEarly && j.early.slope > limit && agree:
		j.verdict = leak
	case j.late.z >= zHint && j.late.slope > limit:
		j.verdict = unsure
	}
	return j
}
