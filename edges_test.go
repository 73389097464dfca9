package leaktest

import (
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	big := bigHeap(64 << 20)
	defer func() { _ = big.next }()
	prev := debug.SetMemoryLimit(16 << 20) // a quarter of the live heap: the collector runs all the time
	defer debug.SetMemoryLimit(prev)
	rep, err := Measure(func() { _ = make([]byte, 512) }, Budget(2*time.Second))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)

	// The collector runs all the time, so the runtime's allowance per
	// collection (see runtimeAllowance) is large per call here: a leak of 4 KiB
	// per call is still caught, a 64-byte one may not be.
	defer releaseKept()
	rep, err = Measure(keep(4096), Budget(2*time.Second))
	require.NoError(t, err)
	require.NotNil(t, rep.finding(Heap), "%s", rep)
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
