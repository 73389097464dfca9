package leaktest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heapslope/leaktest"
)

// cache keeps every result it is given: a leak, as in a memoising map
// without eviction.
var cache [][]byte

func render(id int) []byte {
	out := []byte(strings.Repeat("x", 1000))
	cache = append(cache, out) // forgotten: the leak
	return out
}

func Example() {
	// In a test: leaktest.Run(t, func() { render(1) })
	rep, err := leaktest.Measure(func() { render(1) })
	if err != nil {
		panic(err)
	}
	for _, f := range rep.Findings {
		fmt.Printf("%s leaks more than %v bytes per call\n", f.Resource, f.Limit)
	}
	cache = nil
	// Output:
	// heap leaks more than 4 bytes per call
}

func ExampleRun() {
	// A test that fails when render leaves anything behind per call.
	// (Run marks itself a helper: failures point at the test.)
	_ = func(t *testing.T) {
		leaktest.Run(t, func() { render(1) })
	}
}

func ExampleMeasure() {
	rep, err := leaktest.Measure(func() {
		b := make([]byte, 10<<10) // garbage: allocated, never kept
		_ = b
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("leaked:", rep.Leaked())
	// Output:
	// leaked: false
}

func ExampleTrack() {
	open := 0 // figures opened and never closed
	rep, _ := leaktest.Measure(func() { open++ },
		leaktest.Track("figures", func() float64 { return float64(open) }, 0))
	f := rep.Findings[0]
	fmt.Printf("%s: %+.0f per call\n", f.Resource, f.PerIteration)
	// Output:
	// figures: +1 per call
}

func ExampleLimit() {
	// Tolerate up to 2 KiB per call on the heap (render keeps about 1 KiB:
	// say, an append-only log the test knows about), and no goroutine at
	// all.
	rep, _ := leaktest.Measure(func() { render(1) },
		leaktest.Limit(leaktest.Heap, 2048), leaktest.Limit(leaktest.Goroutines, 0))
	fmt.Println("leaked:", rep.Leaked())
	cache = nil
	// Output:
	// leaked: false
}

func ExampleIterations() {
	calls := 0
	rep, _ := leaktest.Measure(func() { calls++ },
		leaktest.Warmup(50), leaktest.Iterations(200), leaktest.Budget(time.Second))
	fmt.Println(calls, rep.Warmup, rep.Iterations)
	// Output:
	// 250 50 200
}

func ExampleBenchmark() {
	// go test -bench Render -count 10 | benchstat: retained-B/op and
	// goroutines/op beside ns/op, compared across commits.
	_ = func(b *testing.B) {
		leaktest.Benchmark(b, func() { render(1) })
	}
}

func ExampleVerifyTestMain() {
	// In the package's main_test.go: after every test passed, fail the
	// run if goroutines were left behind.
	_ = func(m *testing.M) {
		leaktest.VerifyTestMain(m)
	}
}
