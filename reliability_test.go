package leaktest

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Leaks of known size. Each call keeps one object that links to the
// previous call's, from a package variable: nothing but the object itself
// is retained per call (no slice to grow, no array of slots to run out
// of: a leak whose calls came faster late in the run is confirmed only
// later, up to the budget's end, after a million calls of the fastest),
// so live heap after a collection is exact, and the
// object's size class is the truth. The link comes first, so that the
// collector scans 8 bytes of each object, not all of a 1 GiB one.
type link[P any] struct {
	next *link[P]
	_    P
}

// link8 is the 8-byte leak: link[struct{}] would be padded to 16 bytes.
type link8 struct{ next *link8 }

var chained any // the last object kept

// keep returns fn leaking a link[P] per call: 8 bytes more than P.
func keep[P any]() func() {
	return func() {
		prev, _ := chained.(*link[P])
		chained = &link[P]{next: prev}
	}
}

func keep8() {
	prev, _ := chained.(*link8)
	chained = &link8{next: prev}
}

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
		{"8B", Heap, 8, keep8, false},
		{"64B", Heap, 64, keep[[64 - 8]byte](), false},
		// Above 512 B, Go 1.22 and later put an 8-byte header before an
		// object with pointers: 1016 bytes take the 1 KiB class either way.
		{"1KiB", Heap, 1024, keep[[1<<10 - 16]byte](), false},
		{"30KiB", Heap, 32768, keep[[30<<10 - 8]byte](), false}, // size class 32 KiB
		{"1MiB", Heap, 1 << 20, keep[[1<<20 - 8]byte](), false},
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
			chained = nil
			require.NoError(t, err)
			f := rep.finding(tc.res)
			require.NotNil(t, f, "%s", rep)
			assert.InEpsilon(t, tc.truth, f.PerIteration, 0.05, "%s", rep)
			assert.LessOrEqual(t, f.Uncertainty, 0.05*tc.truth, "the interval is tight on an exact series")
		})
	}
}
