package leaktest

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Leaks behind helpers, for attribution to name.

type figure struct {
	pixels [2000]byte
	next   *figure
}

var openFigures *figure

// leakSink keeps what a planted leak allocates.
var leakSink [][]byte

func newFigure() *figure {
	f := &figure{next: openFigures}
	openFigures = f // registered, never closed
	return f
}

func drawChart() { newFigure().pixels[0] = 1 }

var registry = map[int]*[64]byte{}

func register(id int) { registry[id] = new([64]byte) }

type keeper struct {
	in   chan []byte
	tick chan struct{}
	done chan struct{}
	kept [][]byte
}

// startKeeper keeps what it is sent, and on a tick allocates and keeps a
// record of its own: a leak allocated in a worker goroutine.
func startKeeper() *keeper {
	k := &keeper{in: make(chan []byte), tick: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for {
			select {
			case b, ok := <-k.in:
				if !ok {
					return
				}
				k.kept = append(k.kept, b)
			case <-k.tick:
				k.kept = append(k.kept, workerRecord())
			}
		}
	}()
	return k
}

func workerRecord() []byte { return make([]byte, 512) }

func sendToKeeper(k *keeper) { k.in <- make([]byte, 384) }

func TestAttributionNamesTheSite(t *testing.T) {
	k := startKeeper()
	defer func() { close(k.in); <-k.done }()
	id := 0
	var timers []*time.Timer
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	// The cases that use the keeper come last: its slice, growing in
	// steps, must not grow in another case's window.
	for _, tc := range []struct {
		name, site, caller string
		fn                 func()
	}{
		{"stdlib-timer", "leaktest.TestAttributionNamesTheSite.func", "", func() {
			timers = append(timers, time.AfterFunc(time.Hour, func() {}))
		}},
		{"helper", "leaktest.newFigure", "leaktest.drawChart", drawChart},
		{"map", "leaktest.register", "", func() { id++; register(id) }},
		{"kept-by-worker", "leaktest.sendToKeeper", "", func() { sendToKeeper(k) }},
		{"allocated-in-worker", "leaktest.workerRecord", "", func() { k.tick <- struct{}{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Measure(tc.fn)
			require.NoError(t, err)
			f := rep.finding(Heap)
			require.NotNil(t, f, "%s", rep)
			require.NotEmpty(t, f.Sites, "%s", rep)
			// The site is listed with a large share. It is usually the
			// first; under -race the growth of another case's slice,
			// appended to in its own window, can show here too.
			var top Site
			for _, s := range f.Sites {
				if strings.Contains(shortFunc(s.Function), tc.site) {
					top = s
					break
				}
			}
			require.NotEmpty(t, top.Function, "%s not among the sites:\n%s", tc.site, rep)
			assert.Equal(t, "attribute_test.go", filepath.Base(top.File))
			assert.Positive(t, top.Line)
			assert.Greater(t, top.Share, 0.3)
			assert.Greater(t, top.BytesPerCall, 0.0)
			assert.Greater(t, top.ObjectsPerCall, 0.0)
			if tc.caller != "" {
				assert.Contains(t, rep.String(), "called by "+tc.caller)
			}
			assert.Contains(t, rep.String(), "sites: ")
		})
	}
	openFigures, registry = nil, map[int]*[64]byte{}
}

func TestNoAttributionOnCleanRuns(t *testing.T) {
	before := attributions.Load()
	rate := runtime.MemProfileRate
	rep, err := Measure(func() { _ = make([]byte, 4096) })
	require.NoError(t, err)
	require.False(t, rep.Leaked())
	assert.Equal(t, before, attributions.Load(), "a clean run never profiles")
	assert.Equal(t, rate, runtime.MemProfileRate)

	defer func() { openFigures = nil }()
	_, err = Measure(drawChart)
	require.NoError(t, err)
	assert.Equal(t, before+1, attributions.Load())
	assert.Equal(t, rate, runtime.MemProfileRate, "restored after the window")
}

// The memory profiler is off while the loop measures (profiling): fn's
// calls see a rate of 0, and the caller's rate comes back on every path.
func TestMemProfilerOffWhileMeasuring(t *testing.T) {
	rate := runtime.MemProfileRate
	seen := map[int]int{}
	_, err := Measure(func() { seen[runtime.MemProfileRate]++ }, Iterations(200))
	require.NoError(t, err)
	assert.Equal(t, map[int]int{0: 200}, seen)
	assert.Equal(t, rate, runtime.MemProfileRate)

	calls := 0
	_, err = Measure(func() {
		if calls++; calls == 100 {
			panic("on call 100")
		}
	}, Iterations(200))
	require.Error(t, err)
	assert.Equal(t, rate, runtime.MemProfileRate, "restored when fn panics")

	_, err = Measure(runtime.Goexit, Iterations(200))
	require.Error(t, err)
	assert.Equal(t, rate, runtime.MemProfileRate, "restored when fn calls Goexit")

	release := make(chan struct{})
	calls = 0
	_, err = Measure(func() {
		if calls++; calls == 100 {
			<-release
		}
	}, Iterations(200), Timeout(time.Second))
	require.Error(t, err)
	assert.Equal(t, rate, runtime.MemProfileRate, "restored when fn blocks past the Timeout")
	close(release)
	_, err = Measure(func() {}, Iterations(32)) // the turn comes back when fn returns
	require.NoError(t, err)
	assert.Equal(t, rate, runtime.MemProfileRate)
}

func TestMemProfileRateRestoredWhenFnPanicsInTheWindow(t *testing.T) {
	rate := runtime.MemProfileRate
	defer func() { openFigures = nil }()
	before := attributions.Load()
	calls := 0
	_, err := Measure(func() {
		calls++
		if calls == 503 { // Iterations(500) ends at 500: this is in the window
			panic("in the window")
		}
		drawChart()
	}, Iterations(500))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn panicked on call 503: in the window")
	assert.Equal(t, before+1, attributions.Load())
	assert.Equal(t, rate, runtime.MemProfileRate)
}

// A call blocked in the window past the Timeout: Measure puts the rate
// back as it returns, and the window, when the call ends, does not write
// it again (under -race, the two writes raced before).
func TestMemProfileRateRestoredWhenTheWindowTimesOut(t *testing.T) {
	rate := runtime.MemProfileRate
	defer func() { openFigures = nil }()
	release := make(chan struct{})
	calls := 0
	_, err := Measure(func() {
		calls++
		if calls == 503 { // in the window, as above
			<-release
		}
		drawChart()
	}, Iterations(500), Timeout(3*time.Second))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "timed out after 3s, on call 503 of fn")
	assert.Equal(t, rate, runtime.MemProfileRate, "restored by Measure")

	runtime.MemProfileRate = rate + 1 // the caller's own, set after Measure returned
	defer func() { runtime.MemProfileRate = rate }()
	close(release)
	// The turn comes back when the abandoned window ends.
	_, err = Measure(func() {}, Iterations(32))
	require.NoError(t, err)
	assert.Equal(t, rate+1, runtime.MemProfileRate, "left alone by the window that ended late")
}

// A leak already found stays a leak when even the window's minimum (four
// groups of calls) would not end before the Timeout: the window is
// skipped, with a note, instead of turning the verdict into a timeout (a
// review: Iterations(96) of a 10 ms call, Timeout(1.5s), timed out on
// call 123 of fn).
func TestWindowThatWouldNotFitIsSkipped(t *testing.T) {
	calls := 0
	m := newMeter(newConfig(false, nil), func() { calls++ })
	defer m.close()
	plantLeak(m)                                // 1 ms a call: the window's 1024 calls need 1.5 s, profiled
	m.start = time.Now().Add(-2 * m.cfg.budget) // past the budget: the window gets its minimum
	m.deadline = time.Now().Add(m.cfg.timeout/10 + time.Second)
	rate := runtime.MemProfileRate
	m.attribute(1024, 4, false)
	assert.Equal(t, 1024, m.attrSkipped)
	assert.Nil(t, m.attr)
	assert.Zero(t, calls)
	assert.Equal(t, rate, runtime.MemProfileRate)
	rep := m.report()
	require.True(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"),
		"no allocation sites, and the verdict is not confirmed: the confirmation window that finds them (1024 calls at least) would not fit before the Timeout (1m0s): a larger Timeout lets it run")

	// With the time for it, it runs.
	m.attrSkipped = 0
	m.deadline = time.Now().Add(m.cfg.timeout/10 + 3*time.Second)
	m.attribute(1024, 4, false)
	assert.Zero(t, m.attrSkipped)
	assert.NotNil(t, m.attr)
	assert.GreaterOrEqual(t, calls, 1024)
}

// plantLeak fills m with a measurement of 128 samples 64 calls apart and
// 10 ms apart (156.25 µs a call, samples included), the heap growing 1 KiB
// per call; fn's own time is set at 1 ms a call, which tests override.
func plantLeak(m *meter) {
	for i := 0; i <= 128; i++ {
		m.xs, m.ts = append(m.xs, float64(64*i)), append(m.ts, float64(i)/100)
		m.cycles, m.dropped = append(m.cycles, float64(i)), append(m.dropped, 0)
		for s := range m.ys {
			m.ys[s] = append(m.ys[s], 0)
		}
		m.ys[sHeap][i] = 1e6 + 1024*64*float64(i)
		m.n++
	}
	m.calls, m.bin = 64*128, 64
	m.fnTime = time.Duration(m.calls) * time.Millisecond
	m.sampled, m.samplesAll = 1, time.Millisecond
}

// plantFastFn plants plantLeak's measurement in m, fn's calls a
// microsecond each, the window given a quarter of the budget (some 4800
// calls at the measurement's pace) and no Timeout to speak of.
func plantFastFn(m *meter) {
	plantLeak(m)
	m.fnTime = time.Duration(m.calls) * time.Microsecond
	m.start = time.Now()
	m.deadline = time.Now().Add(m.cfg.timeout)
}

// leakingMeter is a meter of plantLeak's measurement whose fn calls each
// (if not nil) and leaks 1 KiB a call, found again by the window (no
// second pass); closed, and the leak dropped, when the test ends.
func leakingMeter(t *testing.T, each func()) *meter {
	m := newMeter(newConfig(false, nil), func() {
		if each != nil {
			each()
		}
		leakSink = append(leakSink, make([]byte, 1024))
	})
	t.Cleanup(func() { m.close(); leakSink = nil })
	plantLeak(m)
	return m
}

// A window longer than its minimum that would not fit before the Timeout
// runs shorter, not at all only below its minimum (1024 calls here).
func TestWindowShrinksToFit(t *testing.T) {
	calls := 0
	m := leakingMeter(t, func() { calls++ })
	m.fnTime = time.Duration(m.calls) * 200 * time.Microsecond // 0.3 ms a call, profiled
	m.start = time.Now()                                       // a quarter of the budget: some 4000 calls
	m.deadline = time.Now().Add(m.cfg.timeout/10 + time.Second)
	m.attribute(1024, 4, false)
	assert.Zero(t, m.attrSkipped)
	require.NotNil(t, m.attr)
	assert.Zero(t, m.attr.planned, "cut after %d calls", calls)
	assert.GreaterOrEqual(t, calls, 1024)
	assert.Less(t, calls, 3500, "what fits in the second left, at 0.3 ms a call")
	assert.Equal(t, calls, m.attr.calls)
}

// The window makes its calls no faster than the measurement did, in
// bursts of as many calls as it made between samples: a cache that holds
// the last 20 ms of calls must not hold more in the window (see
// attribute). plantLeak's measurement made 64 calls every 10 ms; fn's
// calls take a microsecond.
func TestWindowKeepsTheMeasurementsPace(t *testing.T) {
	var at []time.Time
	m := leakingMeter(t, func() { at = append(at, time.Now()) })
	m.fnTime = time.Duration(m.calls) * time.Microsecond
	m.start = time.Now().Add(-2 * m.cfg.budget) // past the budget: the window gets its minimum
	m.deadline = time.Now().Add(m.cfg.timeout)
	m.attribute(1024, 4, false)
	require.NotNil(t, m.attr)
	require.Len(t, at, 1024)
	// A burst starts no sooner than 10 ms after the one before it
	// started, so no 10 ms hold calls of more than two bursts.
	for i, j := 0, 0; i < len(at); i++ {
		for j < len(at) && at[j].Sub(at[i]) < 10*time.Millisecond {
			j++
		}
		require.LessOrEqual(t, j-i, 2*64, "calls %d to %d within 10 ms", i, j-1)
	}
	// And a burst starts 10 ms after the last one started, as the
	// measurement's did, a collection between them or not: one that
	// came sooner would leave a 20 ms cache holding two bursts. The
	// bursts are the calls from each multiple of 64 (known by index: a
	// gap within a burst, the process descheduled under load, is not a
	// new one).
	for i := 64; i < len(at); i += 64 {
		require.GreaterOrEqual(t, at[i].Sub(at[i-64]), 9900*time.Microsecond, "burst at call %d", i)
	}
}

// The window is sized at the measurement's pace, not at fn's own speed: a
// quarter of the budget holds 4800 calls at plantLeak's 156.25 µs a call,
// though a microsecond's fn would make all 8192 the measurement made.
func TestWindowIsSizedAtTheMeasurementsPace(t *testing.T) {
	calls := 0
	m := leakingMeter(t, func() { calls++ })
	m.fnTime = time.Duration(m.calls) * time.Microsecond
	m.start = time.Now() // a quarter of the budget for the window
	m.deadline = time.Now().Add(m.cfg.timeout)
	m.attribute(1024, 4, false)
	require.NotNil(t, m.attr)
	assert.Equal(t, 156250*time.Nanosecond, m.callTime())
	assert.Zero(t, m.attr.planned)
	// The quarter, less the settling collections at each end (plantLeak's
	// samples took 1 ms).
	assert.LessOrEqual(t, calls, 4800)
	assert.GreaterOrEqual(t, calls, 4700)
}

// lowGrowth over a window of 4000 calls and a tail of 2000, read every
// 100 calls: a sawtooth of 100 B per call let go every 730 calls grows
// not at all, whatever its phase (without the median rise taken off, it
// does at some); 16 B per call beside it grows by more than a limit of 4 B
// (the rise taken off costs it up to 10 B); a heap that only grows, 8 B
// per call, by about 8 B.
func TestLowGrowth(t *testing.T) {
	series := func(y func(x float64) float64) (xs, ys []float64) {
		for x := 0.0; x <= 6000; x += 100 {
			xs, ys = append(xs, x), append(ys, y(x))
		}
		return xs, ys
	}
	for phase := 0.0; phase < 730; phase += 37 {
		saw := func(x float64) float64 { return 1e6 + 100*math.Mod(x+phase, 730) }
		xs, ys := series(saw)
		assert.LessOrEqual(t, lowGrowth(xs, ys, 4000), 0.0, "sawtooth, phase %g", phase)
		xs, ys = series(func(x float64) float64 { return saw(x) + 16*x })
		got := lowGrowth(xs, ys, 4000)
		assert.True(t, got > 4 && got < 24, "16 B beside it, phase %g: %g", phase, got)
	}
	xs, ys := series(func(x float64) float64 { return 1e6 + 8*x })
	assert.InDelta(t, 8, lowGrowth(xs, ys, 4000), 0.5)
}

// A first window whose heap fell goes on to the full length: memory in
// flight let go in its first half (a slice dropped at call 1000), the
// rest still held at its end, reads as kept in both halves. A leak's heap
// does not fall: it is confirmed at once (TestWindowTellsMemoryInFlightFromALeak).
func TestWindowGoesOnWhenTheHeapFell(t *testing.T) {
	k := 0
	var held [][]byte
	m := newMeter(newConfig(false, nil), func() {
		k++
		held = append(held, make([]byte, 1024))
		if k == 1000 {
			held = nil
		}
	})
	defer m.close()
	defer func() { held = nil }()
	plantFastFn(m)
	m.attribute(48, 4, false)
	require.NotNil(t, m.attr)
	assert.GreaterOrEqual(t, m.attr.calls, 8192, "went on to the full window")
}

// A window of fast calls runs at least a quarter of a second, past its
// 16384 calls: memory in flight for 100 ms (a map a ticker replaces) must
// be let go in its second half for the window to tell it from a leak.
// Here the measurement made 1024 calls every 10 ms (9.77 µs a call), so
// 16384 calls would take 160 ms.
func TestWindowLastsAQuarterSecond(t *testing.T) {
	calls := 0
	m := leakingMeter(t, func() { calls++ })
	for i := range m.xs {
		m.xs[i] *= 16
		m.ys[sHeap][i] = 1e6 + 1024*m.xs[i]
	}
	m.calls, m.bin = 16*m.calls, 16*m.bin
	m.fnTime = time.Duration(m.calls) * time.Microsecond
	m.start = time.Now() // a quarter of the budget for the window
	m.deadline = time.Now().Add(m.cfg.timeout)
	m.attribute(1024, 4, false)
	require.NotNil(t, m.attr)
	assert.Equal(t, 9765625*time.Nanosecond/1000, m.callTime())
	assert.Equal(t, int(attrMinSpan/m.callTime()), calls)
}

// A cache of the last 20 ms of calls whose calls speed up through the
// window (a machine whose load eased) holds more at each reading, in both
// halves, as a leak grows; but the entries that the window's first half
// made are gone by its end, so the window goes on to the full length
// rather than confirm at once (released). A leak's first-half entries
// stay: it is confirmed at once. fn keeps its own clock, in µs, its calls
// 100 µs apart at first and 20 µs at last, so that the machine's speed
// does not matter.
func TestWindowTellsACacheSpeedingUpFromALeak(t *testing.T) {
	for _, leak := range []bool{false, true} {
		t.Run(map[bool]string{false: "cache", true: "leak"}[leak], func(t *testing.T) {
			type added struct {
				key int
				at  float64
			}
			cache := make(map[int][]byte, 16384) // no table grows in the window
			var queue []added
			k, clock := 0, 0.0
			m := newMeter(newConfig(false, nil), func() {
				k++
				clock += max(20, 100-float64(k)/60)
				cache[k] = make([]byte, 1024)
				queue = append(queue, added{k, clock})
				for !leak && clock-queue[0].at > 20000 {
					delete(cache, queue[0].key)
					queue = queue[1:]
				}
			})
			defer m.close()
			defer runtime.KeepAlive(cache)
			plantFastFn(m)
			m.attribute(64, 4, false)
			require.NotNil(t, m.attr)
			if leak {
				assert.Less(t, m.attr.calls, 8192, "confirmed at once")
			} else {
				assert.Equal(t, 8192, m.attr.calls, "went on to the full window")
			}
		})
	}
}

// Memory in flight that a window's end caught high on its rise: fn fills
// a map of 1 KiB entries that it replaces every 1366 calls, so the full
// window of 8192 calls ends 1362 calls into a cycle, holding 1362 entries
// it did not hold at its start, as a leak would (1366 calls stand for a
// ticker's 200 ms; counted, they make the test exact). What the window's
// first half allocated is gone by its end, so a tail of calls follows, in
// which the map is replaced and the window's last entries go too: not a
// leak. Three leaks are confirmed: one with no replacement (confirmed at
// once); one whose replacements stop at call 6000, the window's second
// half kept through the tail (confirmed after it); and a slice of 64 B
// values beside a map of 64 B entries, which grows by a quarter at each
// step, so that the tail copies the window's values to arrays of its own,
// but the heap's low point still rises (lowGrowth). Alone, whose heap
// never falls, that slice is confirmed without a tail.
func TestWindowTellsMemoryInFlightFromALeak(t *testing.T) {
	for _, c := range []struct {
		name       string
		replaceTo  int // the last call that may replace the map; -1: no map
		values     bool
		tail       bool
		overturned bool
	}{
		{"in flight", 1 << 30, false, true, true},
		{"leak", 0, false, false, false},
		{"leak from call 5464", 6000, false, true, false},
		{"values beside it", 1 << 30, true, true, false},
		{"values alone", -1, true, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := 0
			entries := map[int][]byte{}
			var values [][8]uint64
			m := newMeter(newConfig(false, nil), func() {
				k++
				size := 1024
				if c.values {
					values = append(values, [8]uint64{})
					size = 64
				}
				if c.replaceTo < 0 {
					return
				}
				entries[k] = make([]byte, size)
				if k%1366 == 0 && k <= c.replaceTo {
					entries = map[int][]byte{}
				}
			})
			defer m.close()
			defer func() { entries, values = nil, nil }()
			plantFastFn(m)
			m.attribute(48, 4, false)
			require.NotNil(t, m.attr)
			why := m.notConfirmed(4, 48)
			if c.tail {
				assert.Equal(t, 8192, m.attr.calls)
				assert.Equal(t, 8192, m.attr.tail)
			} else {
				assert.Zero(t, m.attr.tail)
			}
			if c.overturned {
				assert.Less(t, m.attr.kept(), 1.0)
				assert.Regexp(t, `^heap grew 48 B per call, but of 8192 more calls, profiled, fn's code still held .* per call 8192 calls later, and .* per call of their second half's growth: memory held for a while`, why)
			} else {
				assert.Empty(t, why)
			}
		})
	}
}

// The check within the window takes the profiled pace as it is: calls a
// quarter slower than the plan's pace (which has half again for
// profiling) are not cut, nor twice as slow, which still end before the
// Timeout's last twentieth; eight times as slow, they are.
func TestWindowCutOnlyWhenTheRestWouldNotFit(t *testing.T) {
	const timeout = time.Minute
	perCall := 200 * time.Microsecond
	gc := time.Millisecond
	left := time.Second                                     // before the Timeout's last tenth, at the plan
	w := int(float64(left-4*gc) / (1.5 * float64(perCall))) // what the plan fits
	for _, c := range []struct {
		slower float64
		fits   bool
	}{{1, true}, {1.25, true}, {2, true}, {8, false}} {
		pace := time.Duration(c.slower * float64(perCall))
		done := 256
		elapsed := time.Duration(done) * pace
		assert.Equal(t, c.fits, finishes(elapsed, done, w-done, gc, left+timeout/10-elapsed, timeout), "%gx slower", c.slower)
	}
}

// A window whose calls, profiled, turn out slower than planned for ends
// before the Timeout, with the sites of the calls it made and the verdict
// kept, unconfirmed.
func TestWindowEndsEarlyWhenProfiledCallsAreSlow(t *testing.T) {
	calls := 0
	m := newMeter(newConfig(false, nil), func() {
		if runtime.MemProfileRate == 1 {
			time.Sleep(8 * time.Millisecond) // stands for many small allocations, each profiled
		}
		calls++
		leakSink = append(leakSink, make([]byte, 1024)) // its site is this test's
	})
	defer m.close()
	defer func() { leakSink = nil }()
	plantLeak(m)
	m.fnTime = time.Duration(m.calls) * time.Microsecond // unprofiled, the window fits easily
	m.start = time.Now().Add(-2 * m.cfg.budget)          // past the budget: the window gets its minimum
	m.deadline = time.Now().Add(m.cfg.timeout/10 + 1500*time.Millisecond)
	m.attribute(1024, 4, false)
	require.NotNil(t, m.attr)
	assert.Equal(t, 1024, m.attr.planned)
	assert.Less(t, calls, 1024)
	assert.Equal(t, calls, m.attr.calls)
	assert.Greater(t, time.Until(m.deadline), m.cfg.timeout/20, "ended before the Timeout's last twentieth")
	require.NotEmpty(t, m.attr.sites)
	assert.Contains(t, m.attr.sites[0].Function, "TestWindowEndsEarlyWhenProfiledCallsAreSlow")
	rep := m.report()
	require.True(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), fmt.Sprintf(
		"the confirmation window ended after %d of its 1024 calls, to end before the Timeout (1m0s; profiled, fn's calls were slower than planned for): the sites are those calls', and the verdict is not confirmed", calls))
}

func TestArtifacts(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, packageDir()) // a rooted directory: a folder per package
	defer func() { openFigures = nil }()
	tb := &fakeTB{}
	tb.name = "TestArtifacts/chart leak"
	rep := Run(tb, drawChart, ReportDir(dir))
	require.True(t, rep.Leaked())
	base := filepath.Join(out, "TestArtifacts_chart_leak")
	want := []string{base + ".heap.base.pb.gz", base + ".heap.pb.gz", base + ".svg", base + ".json"}
	require.Equal(t, want, rep.Files)
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "files:      "+want[0])

	// The JSON parses back into the same report.
	data, err := os.ReadFile(base + ".json")
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, *rep, back)

	// The chart is well-formed XML.
	svg, err := os.Open(base + ".svg")
	require.NoError(t, err)
	defer svg.Close()
	dec := xml.NewDecoder(svg)
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}

	// go tool pprof reads the pair and shows the growth where it is.
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		t.Skip("no go command to run pprof")
	}
	top, err := exec.Command(gobin, "tool", "pprof", "-top", "-sample_index=inuse_space",
		"-diff_base", want[0], want[1]).CombinedOutput()
	require.NoError(t, err, "%s", top)
	assert.Contains(t, string(top), "leaktest.newFigure")

	// A clean run writes its report and chart too, and no profiles.
	tb = &fakeTB{}
	tb.name = "TestArtifacts/clean"
	rep = Run(tb, func() {}, ReportDir(dir))
	assert.Equal(t, []string{filepath.Join(out, "TestArtifacts_clean.svg"), filepath.Join(out, "TestArtifacts_clean.json")}, rep.Files)
}

// Reports of the same name do not overwrite each other within a process,
// and a report does not sit beside an earlier run's profiles.
func TestArtifactsKeepTheirOwnFiles(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, packageDir()) // a rooted directory: a folder per package
	base := filepath.Join(out, "TestX_same")
	require.NoError(t, os.MkdirAll(out, 0o755))
	for _, p := range []string{base + ".heap.base.pb.gz", base + ".heap.pb.gz"} {
		require.NoError(t, os.WriteFile(p, []byte("a leaking run's, before"), 0o644))
	}
	run := func() *Report {
		tb := &fakeTB{}
		tb.name = "TestX/same"
		return Run(tb, func() {}, ReportDir(dir), Iterations(50))
	}
	first, second := run(), run()
	assert.Equal(t, []string{base + ".svg", base + ".json"}, first.Files)
	assert.Equal(t, []string{base + "~2.svg", base + "~2.json"}, second.Files)
	files, err := filepath.Glob(filepath.Join(out, "*"))
	require.NoError(t, err)
	assert.ElementsMatch(t, append(first.Files, second.Files...), files, "the old profiles removed, no temporary files left")
	for _, f := range append(first.Files, second.Files...) {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Positive(t, fi.Size(), f)
	}
}

// Under a rooted directory (LEAKTEST_REPORT_DIR for go test ./...), each
// package's files go in a folder named by its import path: packages of
// different modules (a go.work, a monorepo) keep theirs apart too.
func TestImportPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b", "other/c"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.FromSlash(d)), 0o755))
	}
	assert.Equal(t, "", importPath(root), "no go.mod above a temporary directory")
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("// a comment\nmodule example.com/x // the root\n\ngo 1.21\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "other", "go.mod"), []byte("module \"example.com/other\"\n"), 0o644))
	assert.Equal(t, filepath.Join("example.com", "x"), importPath(root))
	assert.Equal(t, filepath.Join("example.com", "x", "a", "b"), importPath(filepath.Join(root, "a", "b")))
	assert.Equal(t, filepath.Join("example.com", "other", "c"), importPath(filepath.Join(root, "other", "c")))
	assert.Equal(t, filepath.Join("github.com", "heapslope", "leaktest"), packageDir())

	// A module path that would climb out of the directory stays in it.
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module ../../etc\n"), 0o644))
	assert.Equal(t, filepath.Join("leaktest", "leaktest", "etc"), importPath(root))
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("go 1.21\n"), 0o644))
	assert.Equal(t, "", importPath(root), "no module directive")
}

// A directory from a file system's root is shared by go test's
// packages: on Windows, \reports too, though not absolute.
func TestRooted(t *testing.T) {
	assert.False(t, rooted("reports"))
	assert.False(t, rooted(""))
	if runtime.GOOS == "windows" {
		assert.True(t, rooted(`C:\reports`))
		assert.True(t, rooted(`\reports`))
		assert.True(t, rooted(`/reports`))
		assert.False(t, rooted(`C:reports`), "relative to the drive's working directory")
	} else {
		assert.True(t, rooted("/reports"))
	}
}

// Two Runs in a subtest A write A and A~2, a suffix go test does not
// give: its own second subtest A, named A#01, keeps its name, and a test
// named A~2 gets a name of its own.
func TestArtifactNamesDoNotCollide(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, packageDir()) // a rooted directory: a folder per package
	var files []string
	for _, name := range []string{"TestY/A", "TestY/A", "TestY/A#01", "TestY/A~2", "TestY/A"} {
		tb := &fakeTB{}
		tb.name = name
		rep := Run(tb, func() {}, ReportDir(dir), Iterations(50))
		require.Len(t, rep.Files, 2)
		files = append(files, rep.Files[1])
	}
	base := filepath.Join(out, "TestY_A")
	assert.Equal(t, []string{base + ".json", base + "~2.json", base + "#01.json", base + "~2~2.json", base + "~3.json"}, files)
}

// A process writing a name first removes the files of further
// measurements under it (A~2, A~3 ...) that are older than the process,
// and nothing else: not another test's, nor go test's second subtest's
// (A#01), nor those a process running beside it has just written.
func TestArtifactsOfAnEarlierRunAreRemoved(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, packageDir()) // a rooted directory: a folder per package
	keep := []string{"TestZ_B~2.json", "TestZ_A#01.json", "TestZ_A~1.json", "TestZ_A~02.json", "TestZ_A~2.txt", "TestZ_AB~2.json", "TestZ_A~x.json"}
	stale := []string{"TestZ_A~2.json", "TestZ_A~2.svg", "TestZ_A~3.heap.pb.gz", "TestZ_A~3.heap.base.pb.gz"}
	require.NoError(t, os.MkdirAll(out, 0o755))
	before := processStart.Add(-time.Hour)
	for _, f := range append(keep, stale...) {
		p := filepath.Join(out, f)
		require.NoError(t, os.WriteFile(p, []byte("an earlier run's"), 0o644))
		require.NoError(t, os.Chtimes(p, before, before))
	}
	beside := filepath.Join(out, "TestZ_A~4.json")
	require.NoError(t, os.WriteFile(beside, []byte("another process's, now"), 0o644))
	tb := &fakeTB{}
	tb.name = "TestZ/A"
	rep := Run(tb, func() {}, ReportDir(dir), Iterations(50))
	want := append([]string{beside}, rep.Files...)
	for _, f := range keep {
		want = append(want, filepath.Join(out, f))
	}
	got, err := filepath.Glob(filepath.Join(out, "*"))
	require.NoError(t, err)
	assert.ElementsMatch(t, want, got)
}

func TestReportDirFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LEAKTEST_REPORT_DIR", dir)
	rep, err := Measure(func() {}, Iterations(50))
	require.NoError(t, err)
	require.Len(t, rep.Files, 2)
	assert.True(t, strings.HasPrefix(rep.Files[0], dir))
	// Measure has no test name: each measurement gets files of its own.
	again, err := Measure(func() {}, Iterations(50))
	require.NoError(t, err)
	require.Len(t, again.Files, 2)
	assert.NotEqual(t, rep.Files, again.Files)
	assert.Regexp(t, `leaktest-\d+-\d+\.json$`, again.Files[1])
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"TestX/sub case": "TestX_sub_case",
		"TestX/a:b*c?d":  "TestX_a_b_c_d",
		"":               "leaktest",
		"..":             "leaktest",
		"Test/../../etc": "Test_.._.._etc",
		"naïve/ü":        "naïve_ü",
		"tab\there\x00":  "tab_here_",
		"GET_/chart?x=1": "GET__chart_x=1",
	} {
		assert.Equal(t, want, safeName(in), in)
	}
}

// The profile holds a record per stack and allocation size; a slice that
// grows moves from one size to the next. Growth is counted per stack.
func TestDiffSitesSumsSizesPerStack(t *testing.T) {
	var stk [32]uintptr
	runtime.Callers(1, stk[:])
	rec := func(alloc, freed int64) runtime.MemProfileRecord {
		return runtime.MemProfileRecord{AllocBytes: alloc, FreeBytes: freed, AllocObjects: alloc / 100, FreeObjects: freed / 100, Stack0: stk}
	}
	// 100 B in use in the 100 B size, then moved to the 300 B one.
	base := []runtime.MemProfileRecord{rec(100, 0), rec(0, 0)}
	end := []runtime.MemProfileRecord{rec(100, 100), rec(300, 0)}
	for _, order := range [][]runtime.MemProfileRecord{base, {base[1], base[0]}} {
		sites, user, rt := diffSites(order, end, 10)
		assert.Equal(t, int64(200), user)
		assert.Zero(t, rt)
		require.Len(t, sites, 1)
		assert.Equal(t, 20.0, sites[0].BytesPerCall)
		assert.Contains(t, sites[0].Function, "TestDiffSitesSumsSizesPerStack")
	}
}

// frameKinds reads each stack of a real profile as siteOf and
// runtimeStructure, uncached, do: fn's code, the runtime's structures and
// its own work, and leaktest's.
func TestFrameKindsReadStacksAsSiteOf(t *testing.T) {
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	done := make(chan struct{})
	go func() { time.Sleep(time.Millisecond); close(done) }() // a descriptor and a sleep timer
	<-done
	drawChart()
	_, err := Measure(func() {}, Iterations(32)) // leaktest's own goroutine
	runtime.MemProfileRate = rate
	require.NoError(t, err)
	settleProfile()
	recs, _ := memRecords(nil)
	c := frameKinds{}
	var seen [3]int
	for i := range recs {
		stk := recs[i].Stack()
		_, want := siteOf(stk)
		if want != harnessAlloc && runtimeStructure(stk) {
			want = runtimeAlloc
		}
		require.Equal(t, want, c.of(stk), "%v", stk)
		seen[want]++
	}
	assert.Positive(t, seen[userAlloc])
	assert.Positive(t, seen[runtimeAlloc])
	assert.Positive(t, seen[harnessAlloc])
}

// The window's second opinion, case by case (slope 5.3 B per call, limit
// 6.2 B: a heap verdict from growth in steps, as at GOMAXPROCS=8).
func TestWindowOverturnsOnlyWhatItCan(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    attribution
		want string
	}{
		{"fn's code kept more than the limit", attribution{calls: 2000, measured: 1000, user: 7, runtime: 9, heap: 16, late: 16}, ""},
		{"runtime structures explain it", attribution{calls: 100, measured: 1000, user: 0.1, runtime: 3, heap: 3.1, late: 3.1}, "caches per P"},
		{"short window, little growth", attribution{calls: 100, measured: 1000, user: 0.1, runtime: 1.5, heap: 1.6, late: 1.6}, ""},
		{"cut past its minimum, runtime structures explain it", attribution{calls: 300, least: 256, planned: 1000, measured: 1000, user: 0.1, runtime: 3, heap: 3.1, late: 3.1}, "caches per P"},
		{"cut short of its minimum", attribution{calls: 200, least: 256, planned: 1000, measured: 1000, user: 0.1, runtime: 3, heap: 3.1, late: 3.1}, ""},
		{"full window, runtime still adding", attribution{calls: 1000, measured: 1000, user: 0.1, runtime: 1.5, heap: 1.6, late: 1.2}, "the growth stopped"},
		{"full window, fn's code kept a third", attribution{calls: 1000, measured: 1000, user: 1.8, heap: 1.8, late: 1.8}, ""},
		// The profile counts every entry a full cache allocates in the
		// window as kept (the ones they replaced were not profiled); the
		// heap does not grow.
		{"full window, a full cache replacing entries", attribution{calls: 1000, measured: 1000, user: 128, heap: 0.5, late: 0}, "the growth stopped"},
		// Little growth in the window, but it goes on in its second half:
		// a small leak beside a cache that filled.
		{"full window, little growth but all of it late", attribution{calls: 1000, measured: 1000, user: 1.2, heap: 1.2, late: 7}, ""},
		// After a tail of calls, what the window allocated is let go.
		{"full window and tail, let go", attribution{calls: 1000, measured: 1000, tail: 500, user: 0.2, heap: 40, late: 0.1}, "memory held for a while"},
		{"full window and tail, second half kept", attribution{calls: 1000, measured: 1000, tail: 500, user: 1, heap: 40, late: 7}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &meter{attr: &tc.a}
			got := m.notConfirmed(6.2, 5.3)
			if tc.want == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.want)
			}
		})
	}
}

// A window extended as far as it goes judges the growth it went on for over
// its last quarter: a map's tables that split early in its second half and
// then not again stopped growing; a leak, or a step in that quarter, did
// not. (The readings of a run that failed before: 4000 calls measured, a
// window of 12 000, a collection every 332 calls.)
func TestLastQuarter(t *testing.T) {
	const limit, slope = 4.0, 171.4
	mapSplits := func(x float64) float64 {
		switch {
		case x >= 10656:
			return 1346
		case x >= 7652:
			return 1310
		case x >= 6324:
			return 1292
		}
		return 1274
	}
	// Rising through most of the second half, flat in the last quarter:
	// growth that stopped, unless it is a leak that stands (one that
	// follows time), which the second half's trend still guards.
	rose := func(x float64) float64 { return 1274 + 12*(min(x, 13000)-min(x, 10000))/1024 }
	for _, tc := range []struct {
		name     string
		heap     func(x float64) float64 // KiB after x calls
		standing bool
		quarter  bool
		want     string
	}{
		{"map split early in the second half", mapSplits, false, true, "in their last quarter: the growth stopped"},
		{"a leak of 8 B per call", func(x float64) float64 { return 1274 + 8*(x-4000)/1024 }, false, false, ""},
		{"a leak of 8 B per call beside the splits", func(x float64) float64 { return mapSplits(x) + 8*(x-4000)/1024 }, false, true, ""},
		{"a step in the last quarter", func(x float64) float64 {
			if x >= 14324 {
				return 1310
			}
			return 1274
		}, false, false, ""},
		{"rose, then flat", rose, false, true, "in their last quarter: the growth stopped"},
		{"rose, then flat, a leak that stands", rose, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var xs, ys []float64
			for x := 4000.0; x < 16000; x += 332 {
				xs, ys = append(xs, x), append(ys, tc.heap(x)*1024)
			}
			xs, ys = append(xs, 16000), append(ys, tc.heap(16000)*1024)
			st := newStats(capacity + 1)
			a := attribution{calls: 12000, measured: 4000, user: 42.2, standing: tc.standing}
			f := st.fitTrend(xs, ys, ciZ)
			a.heap = windowGrowth(xs, ys, f.slope)
			h := len(xs) / 2
			a.late, a.lateZ = lateGrowth(st, xs[h:], ys[h:])
			require.Greater(t, a.late, limit, "the second half grew: the window went on")
			a.lastQuarter(xs, ys, st)
			assert.Equal(t, tc.quarter, a.quarter)
			got := (&meter{attr: &a}).notConfirmed(limit, slope)
			if tc.want == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.want)
			}
		})
	}
}

// runtimeStructure is frameKinds.of's test for kindStructure, uncached,
// frame by frame: the reference the cache is checked against.
func runtimeStructure(pcs []uintptr) bool {
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if frameKind(f)&kindStructure != 0 {
			return true
		}
		if !more {
			return false
		}
	}
}
