package leaktest

import (
	"runtime"
	"testing"
	"time"
)

// Time to a verdict for a cheap function: the figure a user waits for on
// every test. Target: median ≤ 150 ms.
func BenchmarkVerdict(b *testing.B) {
	b.Run("clean", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rep, err := Measure(func() { _ = make([]byte, 64) })
			if err != nil || rep.Leaked() {
				b.Fatalf("%v\n%s", err, rep)
			}
		}
	})
	b.Run("leaking", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rep, err := Measure(func() { chain = &chain48{next: chain} })
			chain = nil
			if err != nil || !rep.Leaked() {
				b.Fatalf("%v\n%s", err, rep)
			}
		}
	})
}

// spin busy-waits d: a 1 ms function whose cost does not depend on the
// scheduler's timer resolution.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// The overhead of Run at a fixed number of calls, against the bare loop.
// Target: run ≤ 1.15 × bare.
func BenchmarkOverhead200(b *testing.B) {
	fn := func() { spin(time.Millisecond) }
	b.Run("bare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j := 0; j < 200; j++ {
				fn()
			}
		}
	})
	b.Run("run", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := Measure(fn, Iterations(200)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Attribution costs nothing on a clean run: no profiling window runs
// (windows/op is 0), so a clean verdict takes what BenchmarkVerdict/clean
// takes. On a leak, the window's cost shows against the leaking verdict.
func BenchmarkAttribution(b *testing.B) {
	run := func(b *testing.B, fn func(), reset func()) {
		before := attributions.Load()
		for i := 0; i < b.N; i++ {
			if _, err := Measure(fn); err != nil {
				b.Fatal(err)
			}
			reset()
		}
		b.ReportMetric(float64(attributions.Load()-before)/float64(b.N), "windows/op")
	}
	b.Run("clean", func(b *testing.B) { run(b, func() { _ = make([]byte, 64) }, func() {}) })
	b.Run("leaking", func(b *testing.B) { run(b, func() { chain = &chain48{next: chain} }, func() { chain = nil }) })
	// A process that ran many tests has thousands of stacks in its heap
	// profile, which the window reads (frameKinds). Last: they stay.
	// Target: ≤ 1.2 × leaking.
	b.Run("leaking-beside-4096-stacks", func(b *testing.B) {
		plantStacks(12)
		b.ResetTimer()
		run(b, func() { chain = &chain48{next: chain} }, func() { chain = nil })
	})
}

// What locking the loop to its thread costs a call that blocks: a
// goroutine handing a value over a channel (lockIfCgo locks only once fn
// has called C).
func BenchmarkLockedLoop(b *testing.B) {
	fn := func() {
		ch := make(chan int)
		go func() { ch <- 1 }()
		<-ch
	}
	for _, lock := range []bool{false, true} {
		name := "unlocked"
		if lock {
			name = "locked"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan struct{})
			go func() {
				if lock {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
				}
				for i := 0; i < b.N; i++ {
					fn()
				}
				close(done)
			}()
			<-done
		})
	}
}
