// Package leaktest finds memory, goroutine and file-descriptor leaks in a
// unit test. Run calls a function in a loop, sets its warm-up aside (the
// first quarter of the samples, or the calls given to Warmup), measures
// what each call leaves behind — live Go heap after a full collection,
// resident memory of the process (cgo and other off-heap memory),
// goroutines and open descriptors — and fails the test when one of them
// keeps growing faster than a limit per call:
//
//	func TestDrawChartDoesNotLeak(t *testing.T) {
//		leaktest.Run(t, func() { drawChart(data) })
//	}
//
// Measure does the same without a test and returns the Report.
//
// Measurements are serialised: one runs at a time in a process, so Run is
// safe in parallel tests. Other tests that allocate while a measurement
// runs only add noise, which the decision rule tolerates; a parallel test
// whose own memory keeps growing during the measurement is
// indistinguishable from a leak of fn and can be blamed for it.
package leaktest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Resource names a quantity that Measure follows per call.
type Resource string

// The resources measured by default.
const (
	// Heap is the bytes live on the Go heap after a full collection
	// (runtime/metrics /gc/heap/live:bytes).
	Heap Resource = "heap"
	// RSS is the resident bytes of the process. It is judged on its part
	// outside the memory the Go runtime holds and outside mapped files
	// (whose pages the kernel reads and drops as it likes), so that it
	// catches cgo malloc, anonymous or shared mmap and other memory the Go
	// heap never sees; at samples
	// where free heap pages blur that part, on both its bounds (see the
	// README). Linux only; reported as unavailable elsewhere.
	RSS Resource = "rss"
	// Goroutines is the number of goroutines alive.
	Goroutines Resource = "goroutines"
	// FDs is the number of open file descriptors (Linux only).
	FDs Resource = "fds"
)

// Run measures fn like Measure and reports every finding as a failure of
// t, each in a labelled block that says what grew, by how much per call,
// the limit, and how each resource moved. Notes that are not failures
// (goroutines left from warm-up, files closed only by the garbage
// collector) are logged. A measurement that could not be made (invalid
// option, fn panicked, timeout) fails t too.
//
// Run returns the report, or nil when nothing could be measured.
func Run(t testing.TB, fn func(), opts ...Option) *Report {
	t.Helper()
	cfg := newConfig(isShort(), append([]Option{named(t.Name())}, opts...))
	rep, err := measureWith(fn, cfg)
	assertNoLeak(t, rep, err)
	if err == nil {
		checkBaseline(t, rep, cfg)
	}
	return rep
}

// Measure calls fn repeatedly and returns what each call leaves behind.
// The error is for a measurement that could not be made: an invalid
// option, fn panicked or called runtime.Goexit, or the Timeout passed. A
// leak is not an error: it is a Finding in the Report.
//
// Measure waits for any other measurement in the process to end first
// (see Timeout). While it runs, it sets runtime.MemProfileRate to 0 (the
// profiler's own memory would read as RSS growth), and to 1 for the calls
// that find where a heap leak was allocated, and raises a
// memory limit (debug.SetMemoryLimit) that leaves the Go runtime less than
// an eighth of its memory to allocate into, so that the collector does
// not run non-stop; it restores both on every path.
func Measure(fn func(), opts ...Option) (*Report, error) {
	cfg := newConfig(isShort(), opts)
	if cfg.baselineSet {
		cfg.fail("Baseline(%q) is for Run, which keys its entries by the test's name; Measure has none", cfg.baseline)
	}
	return measureWith(fn, cfg)
}

// measureWith is Measure with the options already applied, so that Run
// reads them (and the environment) once for the measurement and the
// baseline.
func measureWith(fn func(), cfg *config) (*Report, error) {
	if fn == nil {
		return nil, errors.New("leaktest: fn is nil")
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if id := goroutineID(); id != 0 && id == loopGoroutine.Load() {
		return nil, errors.New("leaktest: Measure or Run called inside the function being measured (nested Run); measure the inner function on its own")
	}
	if err := awaitTurn(cfg.timeout); err != nil {
		return nil, err
	}
	// The Timeout counts from here: waiting for other tests' measurements
	// (parallel tests queue here) is not this one's time.
	deadline := time.Now().Add(cfg.timeout)
	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	return measure(fn, cfg, timer, deadline)
}

// awaitTurn takes the turn. The turn is handed back by the measuring
// goroutine when it ends, not by Measure's: after a timeout fn may still
// run, and the next measurement must not overlap it. So waiting is an
// error only when the turn's holder is such a measurement, blocked past
// its own Timeout, and stays so for this one's Timeout: a queue of
// measurements that each end in time is not.
func awaitTurn(timeout time.Duration) error {
	// Polled, to see the holder get stuck; one ticker, so that waiting
	// makes no garbage beside the measurement that runs meanwhile.
	tick := time.NewTicker(min(timeout, 100*time.Millisecond))
	defer tick.Stop()
	start := time.Now().UnixNano()
	for {
		select {
		case measuring <- struct{}{}:
			return nil
		case <-tick.C:
		}
		// Stuck for this one's whole Timeout: since it began waiting, when
		// the holder was stuck before.
		if n := stuckSince.Load(); n != 0 && time.Since(time.Unix(0, max(n, start))) >= timeout {
			return fmt.Errorf("leaktest: waited %v for another measurement to end, whose fn is still blocked past its Timeout: an fn that never returns, or one that waits for this Run (Run called from a goroutine that fn started)", timeout)
		}
	}
}

var (
	// measuring serialises measurements, one token at a time: two at once
	// would each see the other's allocations as their own.
	measuring = make(chan struct{}, 1)
	// loopGoroutine is the id of the goroutine calling fn, to refuse a
	// nested Measure at once instead of waiting for the turn.
	loopGoroutine atomic.Int64
	// stuckSince is when the turn's holder timed out with fn still
	// running (UnixNano), 0 when it did not.
	stuckSince atomic.Int64
)

func isShort() bool {
	return testing.Testing() && flag.Parsed() && testing.Short()
}

// measure runs the measuring goroutine, which holds the turn (measuring)
// and gives it back when it ends.
func measure(fn func(), cfg *config, timer *time.Timer, deadline time.Time) (*Report, error) {
	m := newMeter(cfg, fn)
	m.deadline = deadline
	before := goleak.IgnoreCurrent()
	fdsBefore := openFDs()
	gBefore := runtime.NumGoroutine()
	idsBefore := goroutineIDs(allStacks())

	// The turn goes back once: by this goroutine when the measurement
	// ends, or, after a timeout, by the measuring goroutine when fn
	// finally returns.
	var turn sync.Mutex
	finished, abandoned := false, false
	done := make(chan struct{})
	// fn runs under a pprof label that the goroutines it starts inherit,
	// so the goroutines left behind can be told from other tests'.
	go pprof.Do(context.Background(), pprof.Labels(labelKey, m.label), func(context.Context) {
		defer func() {
			m.close()
			turn.Lock()
			finished = true
			if abandoned {
				stuckSince.Store(0)
				<-measuring
			}
			turn.Unlock()
		}()
		m.loop(done)
	})
	select {
	case <-done:
		m.mem.restore() // before the turn goes to the next measurement
		defer func() { <-measuring }()
	case <-timer.C:
		m.abort.Store(true)
		m.mem.restore()
		m.closeFiles()
		turn.Lock()
		abandoned = true
		if finished {
			<-measuring
		} else {
			stuckSince.Store(time.Now().UnixNano())
		}
		turn.Unlock()
		// A call blocked in the attribution window would keep every
		// allocation of the process profiled.
		m.prof.end()
		what := fmt.Sprintf("on call %d of fn", m.callsNow.Load())
		if g := m.gaugeNow.Load(); g > 0 {
			what = fmt.Sprintf("in the gauge of %s, after %d calls", m.gaugeName(int(g)), m.callsNow.Load())
		} else if !m.inFnNow.Load() {
			what = "between calls (a Timeout shorter than the measurement needs?)"
		}
		return nil, fmt.Errorf("leaktest: timed out after %v, %s; goroutines:\n%s", cfg.timeout, what, allStacks())
	}
	if m.err != nil {
		return nil, m.err
	}
	rep := m.report()
	if user, high, kept, ok := m.mem.raised(); ok {
		after := "and restored after"
		if kept {
			after = "until the limit was set again during the measurement (by fn?), which was kept"
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf(
			"the memory limit (%s) left the Go runtime less than an eighth of its memory (4 MiB at least) to allocate into: it was raised to at most %s while measuring, so that the limit did not set off collections between samples, %s",
			formatValue(Heap, float64(user)), formatValue(Heap, float64(high)), after))
	}
	m.checkGoroutines(rep, gBefore, idsBefore, append([]goleak.Option{before}, cfg.ignore...))
	m.checkFDs(rep, fdsBefore)
	if cfg.reportDir != "" {
		if err := m.writeArtifacts(rep); err != nil {
			rep.Notes = append(rep.Notes, "writing artifacts: "+err.Error())
		}
	}
	return rep, nil
}
