package leaktest

import "slices"

// A standing leak is one found again at the next judgement of its chain
// (rule 5) whose growth has not been seen to stop since. Later judgements
// can find it clean without it stopping: growth per call thins out when
// the calls get faster, and they do, as the samples (a full collection
// each) get sparser. A goroutine that fn starts and that keeps 64 KiB
// every 2 ms grew the heap from 0.7 to 27 MiB in a cheap function's
// 1 s run, at 250 B per call at first and 2 B at the end, under the
// limit: judged clean, 4 runs in 4. So a leak found again stands, and
// the verdict is that leak, until a judgement sees its growth stop
// (stillGrowing): a ring filled by append or a pool that warmed up then
// passes, as before. The attribution window cannot overturn it as growth
// that stopped while the heap still rises (attribution.standing).
type standingLeak struct {
	set bool
	j   judgement
}

// judgeChain judges every series at a judgement of chain c: leak if one
// leaks, clean if all are; again when a series that leaks was found
// leaking by the chain's judgement before too (rule 5 holds per series:
// one series' leak does not confirm another's). It keeps track of leaks
// found again (standingLeak) and of their growth stopping.
//
// Clean early needs power too: a series whose growth per call could still
// be above its limit (the upper end of its Sen interval is) keeps the run
// going, for the budget to tell. A small leak on a sawtooth (32 B per
// call beside a 1 MiB batch flushed every 1000 calls) has no clear trend
// after 4096 calls, but is no longer hidden after tens of thousands.
// A count, with a limit of 0, keeps the run going while its floor rose
// over the region (floorRose): a goroutine left every 2000 calls is two
// steps in a cheap function's first 4096 calls, too few for a trend, and
// ended the run clean there, 565 ms into a 3 s budget that catches it.
func (m *meter) judgeChain(c int) (v verdict, again bool) {
	r0, _ := m.window()
	for _, s := range m.judgedSeries() {
		if _, ok := m.limit(s); !ok {
			continue
		}
		j := m.judgeNow(s)
		switch j.verdict {
		case leak:
			v = leak
			if m.found[c][s] {
				again = true
				j.stood = [2]int{int(m.xs[r0]), m.calls}
				m.standing[s] = standingLeak{set: true, j: j}
			}
		case unsure:
			v = max(v, unsure)
		case clean:
			if j.limit > 0 && j.region.hi > j.limit || j.limit == 0 && floorRose(m.ys[s][r0:m.n]) {
				v = max(v, unsure)
			}
		}
		m.found[c][s] = j.verdict == leak
		if j.verdict != leak && m.standing[s].set && !m.stillGrowing(s) {
			m.standing[s] = standingLeak{}
		}
	}
	return v, again
}

// floorRose says whether the least of the last quarter of ys (three
// values at least) is above the least of its first quarter: what a count
// kept for good does, step by step. Not the quarters' medians: a count of
// goroutines in flight (each ending 3 ms after its call) moves its
// medians by chance, and kept a third of such runs going to their budget.
func floorRose(ys []float64) bool {
	q := max(3, len(ys)/4)
	if len(ys) < 2*q {
		return false
	}
	return slices.Min(ys[len(ys)-q:]) > slices.Min(ys[:q])
}

// anyStanding says whether a leak stands.
func (m *meter) anyStanding() bool {
	for _, l := range m.standing {
		if l.set {
			return true
		}
	}
	return false
}

// stillGrowing says whether series s still grows over the last quarter
// of the judged region (8 samples at least): an upward trend over it
// (Mann–Kendall z >= zLate) and in each of its halves (z >= zHint), so
// that one step (a goroutine more, a map's last doubling) does not count,
// and by more than the process's own growth over it (tailFloor).
func (m *meter) stillGrowing(s int) bool {
	r0, _ := m.window()
	t0 := m.n - max(8, (m.n-r0)/4)
	if t0 < 0 {
		return true
	}
	xs, ys := m.xs[t0:m.n], m.ys[s][t0:m.n]
	h := len(xs) / 2
	if m.st.fitTrend(xs, ys, ciZ).z < zLate ||
		m.st.fitTrend(xs[:h+1], ys[:h+1], ciZ).z < zHint ||
		m.st.fitTrend(xs[h:], ys[h:], ciZ).z < zHint {
		return false
	}
	return ys[len(ys)-1]-ys[0] > m.tailFloor(s, t0)
}

// tailFloor is the growth from sample t0 to the last that the process
// makes by itself: for the heap, the runtime's allowance for the
// collections between; outside it, rssFloor; for counts, 1.
func (m *meter) tailFloor(s, t0 int) float64 {
	switch s {
	case sHeap:
		return runtimeHeap(m.cycles[m.n-1] - m.cycles[t0])
	case sOffGo:
		return rssFloor
	}
	return 1
}

// stand puts a standing leak of series s in place of j, the last
// judgement, once the loop has ended, when j found no leak and the
// growth did not stop.
func (m *meter) stand(s int, j judgement) judgement {
	if !m.final || j.verdict == leak || !m.standing[s].set || !m.stillGrowing(s) ||
		j.undecided() == unwrittenHeap { // settleUnwritten decides that one
		return j
	}
	_, mid := m.window()
	l := m.standing[s].j
	l.nowRate = j.lateRate
	l.nowCalls = [2]int{int(m.xs[mid]), int(m.xs[m.n-1])}
	return l
}
