package leaktest

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// syntheticRSS is a meter holding n samples, 64 calls apart, of a function
// that grows RSS outside Go by perCall bytes per call (offGo0 at the
// start), in a process whose Go heap holds heapMem bytes and RSS outside
// mapped files anon0 bytes at the start; everything else is flat.
func syntheticRSS(n int, perCall, offGo0, heapMem, anon0 float64) *meter {
	m := &meter{cfg: newConfig(false, nil), st: newStats(capacity + 1), ys: make([][]float64, numSeries),
		judged: make([]judgement, numSeries), judgedList: judgedList(0), guarded: -1, start: time.Now()}
	for k := 0; k < n; k++ {
		x := float64(k * 64)
		m.xs = append(m.xs, x)
		m.cycles = append(m.cycles, float64(k))
		m.dropped = append(m.dropped, 0)
		grown := perCall * x
		for s, v := range map[int]float64{
			sHeap: 1 << 20, sRSS: 8<<20 + anon0 + grown, sOffGo: offGo0 + grown, sOffGoHigh: offGo0 + grown,
			sAnon: anon0 + grown, sHeapMem: heapMem, sGoroutines: 3, sFDs: 8,
		} {
			m.ys[s] = append(m.ys[s], v)
		}
	}
	m.n = n
	return m
}

// RSS growth beside Go heap proven unwritten is left unsure while it may
// be that heap written for the first time, and settled, when the run
// cannot go on, by whether RSS outside Go rose above the runtime's memory.
func TestUnwrittenHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("RSS is not judged under -race")
	}
	const MiB = 1 << 20
	for _, c := range []struct {
		name                   string
		offGo0, heapMem, anon0 float64
		leaks                  bool
		note                   string
	}{
		// 4 MiB of growth over the run, 20 MiB of the heap unwritten.
		{"growth within what RSS outside Go can take", -20 * MiB, 30 * MiB, 10 * MiB, false, "had never been written when they began"},
		{"growth past RSS outside Go reaching 0", -1 * MiB, 30 * MiB, 10 * MiB, true, "judged a leak without seeing the growth stop"},
		{"no heap proven unwritten", -20 * MiB, 10.1 * MiB, 10 * MiB, true, ""},
		{"growth past the heap's memory", -5.5 * MiB, 2 * MiB, 0.5 * MiB, true, ""},
		{"heap memory unknown", -20 * MiB, math.NaN(), 10 * MiB, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := syntheticRSS(64, 1024, c.offGo0, c.heapMem, c.anon0)
			rep := m.report()
			if c.leaks {
				assert.NotNil(t, rep.finding(RSS), "%s", rep)
			} else {
				assert.Nil(t, rep.finding(RSS), "%s", rep)
			}
			if c.note != "" {
				assert.Contains(t, strings.Join(rep.Notes, "\n"), c.note, "%s", rep)
			}
		})
	}
}
