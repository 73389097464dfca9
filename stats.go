package leaktest

import (
	"math"
	"slices"
)

// fit is the robust trend of one window of samples: the Theil–Sen slope
// (median of pairwise slopes), its Sen confidence interval at the z asked
// for, and the Mann–Kendall statistic as a z-score. All three are rank
// based, so a few samples disturbed by garbage in flight elsewhere in the
// process move them little.
type fit struct {
	n      int
	slope  float64
	lo, hi float64
	z      float64
}

// stats holds the scratch space of fitTrend, so that judging a window
// inside the measuring loop allocates nothing.
type stats struct {
	pairs []float64
	ties  []float64
}

func newStats(maxPoints int) *stats {
	return &stats{
		pairs: make([]float64, 0, maxPoints*(maxPoints-1)/2),
		ties:  make([]float64, 0, maxPoints),
	}
}

// fitTrend fits ys against xs (xs strictly increasing). ciZ sets the width
// of [lo, hi].
func (s *stats) fitTrend(xs, ys []float64, ciZ float64) fit {
	n := len(xs)
	f := fit{n: n}
	if n < 2 {
		return f
	}
	pairs := s.pairs[:0]
	sum := 0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			d := ys[j] - ys[i]
			switch {
			case d > 0:
				sum++
			case d < 0:
				sum--
			}
			pairs = append(pairs, d/(xs[j]-xs[i]))
		}
	}
	slices.Sort(pairs)
	f.slope = median(pairs)

	// Mann–Kendall variance, corrected for tied values: exact counts and
	// an unchanged heap tie often.
	ties := append(s.ties[:0], ys...)
	slices.Sort(ties)
	fn := float64(n)
	v := fn * (fn - 1) * (2*fn + 5)
	for i := 0; i < n; {
		j := i
		for j < n && ties[j] == ties[i] {
			j++
		}
		t := float64(j - i)
		v -= t * (t - 1) * (2*t + 5)
		i = j
	}
	v /= 18
	if v <= 0 {
		// Every value equal: no trend, and the slope is exactly 0.
		f.lo, f.hi = f.slope, f.slope
		return f
	}
	sd := math.Sqrt(v)
	switch {
	case sum > 0:
		f.z = float64(sum-1) / sd
	case sum < 0:
		f.z = float64(sum+1) / sd
	}

	// Sen's interval: the ranks of the pairwise slopes that bound the
	// median at the asked confidence.
	np := float64(len(pairs))
	c := ciZ * sd
	lo := int(math.Floor((np - c) / 2))
	hi := int(math.Ceil((np+c)/2)) - 1
	f.lo = pairs[clamp(lo, 0, len(pairs)-1)]
	f.hi = pairs[clamp(hi, 0, len(pairs)-1)]
	return f
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
