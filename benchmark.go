package leaktest

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// Grace periods for goroutines that are still ending when a reading is
// taken: the count is polled until it stops falling.
const (
	settlePoll   = time.Millisecond
	settleBefore = 10 * time.Millisecond // quiet time before the first reading
	settleAfter  = 50 * time.Millisecond // quiet time after the calls
	settleMax    = 200 * time.Millisecond
)

// Benchmark calls fn b.N times and reports, besides the usual ns/op, what
// the calls left behind, so that a leak shows up as a number benchstat can
// compare between two commits:
//
//   - retained-B/op: bytes live on the Go heap after a full collection,
//     after the calls minus before, per call. A call that keeps a
//     1000-byte object reports about 1024 (its size class); a clean call
//     about 0.
//   - goroutines/op: goroutines alive after the calls minus before, per
//     call, counted once the goroutines that were still ending have ended.
//     A call that leaves one goroutine running reports about 1.
//
// Only the b.N calls are timed: the collections, the metric reads and the
// wait for ending goroutines run with b's timer stopped, and the timer is
// running again when Benchmark returns. Each run of the benchmark
// function (the framework runs it with b.N = 1, 100, 10000, ...) measures
// on its own; the one reported is the last, with the largest b.N, so a
// one-time cost of the first call (a cache filled, a pool started) fades.
// With -benchtime=1x it is all that is measured. b.N is chosen for time,
// not memory: a leaking fn keeps what it leaks for millions of calls, so
// release it in b.Cleanup (run after each run of the benchmark function)
// or bound b.N with -benchtime=10000x.
//
// Values can be negative when the heap or the goroutines shrank during the
// calls: they are reported as measured, so that benchstat sees the noise
// around zero of a clean function as it is. Other goroutines allocating
// while the benchmark runs (b.RunParallel, background work) add to
// retained-B/op. Do not call b.ResetTimer after Benchmark: it deletes the
// metrics.
//
// A benchmark:
//
//	func BenchmarkParse(b *testing.B) {
//		leaktest.Benchmark(b, func() { parse(input) })
//	}
//
// and the comparison of a change against its base:
//
//	git switch main   && go test -run '^$' -bench Parse -count 10 . > old.txt
//	git switch change && go test -run '^$' -bench Parse -count 10 . > new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt
func Benchmark(b *testing.B, fn func()) {
	b.Helper()
	if fn == nil {
		b.Fatal("leaktest: fn is nil")
	}
	b.StopTimer()
	// Everything the readings need exists before the first one, so that
	// the harness adds nothing to the heap between the two: the sample
	// slice, runtime/metrics' tables (built on first read) and this
	// goroutine's sleep timer (made by its first time.Sleep, in
	// settledGoroutines).
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	gBefore := settledGoroutines(-1, settleBefore)
	heapBefore := liveHeap(sample)

	b.StartTimer()
	for i := 0; i < b.N; i++ {
		fn()
	}
	b.StopTimer()

	gAfter := settledGoroutines(gBefore, settleAfter)
	heapAfter := liveHeap(sample)
	n := float64(b.N)
	b.ReportMetric(float64(int64(heapAfter-heapBefore))/n, "retained-B/op")
	b.ReportMetric(float64(gAfter-gBefore)/n, "goroutines/op")
	b.StartTimer()
}

// liveHeap returns the bytes live on the heap after two full collections:
// the first queues the finalizers of unreachable objects, the yield lets
// the finalizer goroutine run them, the second frees those objects.
func liveHeap(sample []metrics.Sample) uint64 {
	runtime.GC()
	runtime.Gosched()
	runtime.GC()
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// settledGoroutines returns the number of goroutines once it is at most
// floor, or has not fallen for quiet, or after settleMax: goroutines that
// are ending a few milliseconds after the call that started them are not
// counted. It sleeps at least once when floor is negative.
func settledGoroutines(floor int, quiet time.Duration) int {
	n := runtime.NumGoroutine()
	start := time.Now()
	lastFall := start
	for n > floor && time.Since(lastFall) < quiet && time.Since(start) < settleMax {
		time.Sleep(settlePoll)
		m := runtime.NumGoroutine()
		if m < n {
			lastFall = time.Now()
		}
		n = m
	}
	return n
}
