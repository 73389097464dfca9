package leaktest

import (
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Edges: each ends in a clear verdict or error, with no hang and no crash.
// (Panics, Goexit, blocking, nesting and restored settings are in
// leaktest_test.go; no goroutine of leaktest's own is left behind, which
// TestMain checks for every test.)

func TestOneGiBPerCallStopsEarly(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocates several GiB")
	}
	defer releaseKept()
	start := time.Now()
	rep, err := Measure(keep(1 << 30))
	require.NoError(t, err)
	f := rep.finding(Heap)
	require.NotNil(t, f, "%s", rep)
	assert.InEpsilon(t, 1<<30, f.PerIteration, 0.05)
	assert.Contains(t, f.Detail, "stopped early")
	last := rep.Series[0].Values[len(rep.Series[0].Values)-1]
	assert.Less(t, last, 8.0*(1<<30), "stopped before memory ran out")
	t.Logf("%v, %d calls, heap at %s", time.Since(start), nextSlot, formatValue(Heap, last))
}

func TestGOMEMLIMITBelowTheLiveHeap(t *testing.T) {
	big := bigHeap(32 << 20)
	defer func() { _ = big.next }()
	prev := debug.SetMemoryLimit(8 << 20) // a quarter of the live heap: the collector would run all the time
	defer debug.SetMemoryLimit(prev)
	garbage := func() { _ = make([]byte, 512) }
	rep, err := Measure(garbage, Budget(2*time.Second))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "the memory limit (8 MiB) left the Go runtime less than an eighth of its memory (4 MiB at least) to allocate into: it was raised to at most")
	assert.Equal(t, int64(8<<20), debug.SetMemoryLimit(-1), "restored")

	// Raised, the limit lets the collector rest between samples: as many
	// collections as without a limit. Under the limit itself, a leaking fn
	// had the collector run between samples and each sample wait for the
	// collection under way before forcing its own (130 collections instead
	// of 68, measured). A small leak is caught under the limit.
	defer releaseKept()
	leak := keep(32)
	leaky := func() { garbage(); leak() }
	limited := collections(func() { rep, err = Measure(leaky, Iterations(2000)) })
	require.NoError(t, err)
	require.NotNil(t, rep.finding(Heap), "%s", rep)
	assert.InEpsilon(t, 32, rep.finding(Heap).PerIteration, 0.05)
	releaseKept()
	debug.SetMemoryLimit(math.MaxInt64)
	free := collections(func() { _, _ = Measure(leaky, Iterations(2000)) })
	debug.SetMemoryLimit(8 << 20)
	assert.Less(t, float64(limited), 1.25*float64(free), "collections under the limit, and without")
}

// collections counts the garbage collections that f's call completes.
func collections(f func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// The memory limit that Measure raises goes back on every path: a verdict,
// a panic, a timeout (while fn is still blocked, and after it returns),
// and not over a limit that fn set itself.
func TestMemoryLimitRestored(t *testing.T) {
	const low = 1 << 20 // below any Go process's memory: always raised
	prev := debug.SetMemoryLimit(low)
	defer debug.SetMemoryLimit(prev)

	// Garbage left before the measurement is not in the highest limit
	// noted: only the Go memory after its collections is.
	require.NotNil(t, bigHeap(64<<20)) // garbage from here on
	rep, err := Measure(func() { _ = make([]byte, 64) }, Iterations(100))
	require.NoError(t, err)
	notes := strings.Join(rep.Notes, "\n")
	assert.Contains(t, notes, "the memory limit (1 MiB) left the Go runtime less than an eighth of its memory (4 MiB at least) to allocate into: it was raised to at most ")
	assert.Contains(t, notes, ", and restored after")
	assert.Less(t, notedHigh(t, notes), 48.0, "MiB: garbage counted in the highest limit noted")
	assert.Equal(t, int64(low), debug.SetMemoryLimit(-1), "after a verdict")

	_, err = Measure(func() { panic("restore on panic too") }, Iterations(100))
	require.Error(t, err)
	assert.Equal(t, int64(low), debug.SetMemoryLimit(-1), "after a panic")

	ignore := goleak.IgnoreCurrent()
	release := make(chan struct{})
	blockAt := 0 // the abandoned loop's own: the race detector sees no order in goleak.Find's wait
	_, err = Measure(func() {
		if blockAt++; blockAt == 10 {
			<-release
		}
	}, Budget(100*time.Millisecond), Timeout(300*time.Millisecond))
	require.Error(t, err)
	assert.Equal(t, int64(low), debug.SetMemoryLimit(-1), "after a timeout, fn still blocked")
	close(release)
	require.NoError(t, goleak.Find(ignore)) // the abandoned loop has ended
	assert.Equal(t, int64(low), debug.SetMemoryLimit(-1), "after the abandoned loop ended")

	const own = 3 << 30
	calls := 0
	rep, err = Measure(func() {
		if calls++; calls == 50 {
			debug.SetMemoryLimit(own)
		}
	}, Iterations(100))
	require.NoError(t, err)
	assert.Equal(t, int64(own), debug.SetMemoryLimit(-1), "fn's own limit is kept")
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "until the limit was set again during the measurement (by fn?), which was kept")
}

// notedHigh is the highest limit in the memory limit's note, in MiB.
func notedHigh(t *testing.T, notes string) float64 {
	t.Helper()
	_, after, ok := strings.Cut(notes, "raised to at most ")
	require.True(t, ok, notes)
	var v float64
	var unit string
	_, err := fmt.Sscanf(after, "%g %3s", &v, &unit)
	require.NoError(t, err, after)
	switch unit {
	case "KiB":
		return v / 1024
	case "MiB":
		return v
	case "GiB":
		return v * 1024
	}
	t.Fatalf("unit %q in %q", unit, after)
	return 0
}

// Run in a parallel test, beside parallel tests that allocate and do not
// measure: their garbage is noise, not growth.
func TestRunBesideAllocatingParallelTests(t *testing.T) {
	var measuring sync.WaitGroup
	measuring.Add(2)
	done := make(chan struct{})
	go func() { measuring.Wait(); close(done) }()
	t.Run("group", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			t.Run(fmt.Sprint("allocating", i), func(t *testing.T) {
				t.Parallel()
				var keepSome [][]byte
				// Until the measurements end, or for a while: with
				// -parallel 2 they may have to wait for these to finish.
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					select {
					case <-done:
						return
					default:
					}
					keepSome = append(keepSome, make([]byte, 32<<10))
					if len(keepSome) > 64 { // a bounded working set, churned
						keepSome = keepSome[:0]
					}
					time.Sleep(100 * time.Microsecond)
				}
			})
		}
		for i := 0; i < 2; i++ {
			t.Run(fmt.Sprint("measuring", i), func(t *testing.T) {
				t.Parallel()
				defer measuring.Done()
				tb := &fakeTB{name: t.Name()}
				rep := Run(tb, func() { _ = strings.Repeat("x", 300) }, Budget(time.Second))
				assert.False(t, tb.Failed(), "false alarm beside allocating tests:\n%s", rep)
			})
		}
	})
}
