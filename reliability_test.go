package leaktest

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Leaks of known size. Each call keeps one pointer-free object in the next
// slot of an array that lives outside the heap, so nothing but the object
// itself is retained per call: live heap after a collection is exact, and
// the object's size class is the truth.
var kept [1 << 15][]byte

var nextSlot int

func keep(size int) func() {
	return func() {
		if nextSlot < len(kept) {
			kept[nextSlot] = make([]byte, size)
			nextSlot++
		}
	}
}

func releaseKept() {
	kept = [len(kept)][]byte{}
	nextSlot = 0
}

// tinyTruth is what an 8-byte pointer-free object costs: half of a 16-byte
// tiny block, or a whole 16-byte slot under the race detector, which pads
// tiny allocations.
var tinyTruth = map[bool]float64{false: 8, true: 16}[raceEnabled]

// TestReportedGrowthIsWithin5Percent plants leaks of known size and checks
// the reported growth per call, not just the verdict.
func TestReportedGrowthIsWithin5Percent(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	calls := 0
	for _, tc := range []struct {
		name  string
		res   Resource
		truth float64
		fn    func()
		skip  bool
	}{
		{"8B", Heap, tinyTruth, keep(8), false},
		{"64B", Heap, 64, keep(64), false},
		{"1KiB", Heap, 1024, keep(1024), false},
		{"30KiB", Heap, 32768, keep(30 << 10), false}, // size class 32 KiB
		{"1MiB", Heap, 1 << 20, keep(1 << 20), false},
		{"goroutine-per-call", Goroutines, 1, func() { go func() { <-release }() }, false},
		{"goroutine-per-10-calls", Goroutines, 0.1, func() {
			calls++
			if calls%10 == 0 {
				go func() { <-release }()
			}
		}, false},
		{"fd-per-call", FDs, 1, func() {
			f, err := os.Open(os.Args[0])
			if err != nil {
				panic(err)
			}
			files = append(files, f)
		}, runtime.GOOS != "linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("needs /proc")
			}
			rep, err := Measure(tc.fn)
			releaseKept()
			require.NoError(t, err)
			f := rep.finding(tc.res)
			require.NotNil(t, f, "%s", rep)
			assert.InEpsilon(t, tc.truth, f.PerIteration, 0.05, "%s", rep)
			assert.LessOrEqual(t, f.Uncertainty, 0.05*tc.truth, "the interval is tight on an exact series")
		})
	}
}
