package leaktest

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks, with leaktest's own VerifyTestMain, that no test leaves
// a goroutine behind, leaktest's included: every workload that leaks
// goroutines releases them.
func TestMain(m *testing.M) {
	VerifyTestMain(m)
}

// fakeTB records what Run reports, so failures can be checked without
// failing the real test.
type fakeTB struct {
	testing.TB
	name   string
	mu     sync.Mutex
	errors []string
	logs   []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Name() string {
	if f.name == "" {
		return "TestFake"
	}
	return f.name
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Failed() bool { return len(f.errors) > 0 }

var testSink [][]byte

// chain48 is a 48-byte leak with no slice around it: each call's object
// points to the last, so the growth per call is exactly its size class.
type chain48 struct {
	next *chain48
	_    [40]byte
}

var chain *chain48

func TestRunFailsOnLeakAndPassesClean(t *testing.T) {
	defer func() { chain = nil }()
	leaky := &fakeTB{}
	rep := Run(leaky, func() { chain = &chain48{next: chain} })
	require.True(t, leaky.Failed())
	require.True(t, rep.Leaked())
	require.Len(t, leaky.errors, 1, "one failure per finding")
	msg := leaky.errors[0]
	for _, want := range []string{"Error:", "heap leaks: +", "per call:", "limit:", "4 B per call", "warm-up calls", "Test:", "TestFake"} {
		assert.Contains(t, msg, want)
	}
	f := rep.finding(Heap)
	require.NotNil(t, f)
	assert.InDelta(t, 48, f.PerIteration, 48*0.05, "per-call estimate")

	clean := &fakeTB{}
	rep = Run(clean, func() { _ = make([]byte, 48) })
	require.False(t, clean.Failed(), "%v", clean.errors)
	require.False(t, rep.Leaked())
}

// The failure text, pinned on a report built by hand.
func TestFailureTextIsPinned(t *testing.T) {
	rep := &Report{
		Warmup:     1024,
		Iterations: 3072,
		Series: []Series{
			{Resource: Heap, Calls: []int{0, 1024, 2048, 3072, 4096}, Values: []float64{200 << 10, 201 << 10, 225 << 10, 249 << 10, 273 << 10}},
			{Resource: Goroutines, Calls: []int{0, 1024, 2048, 3072, 4096}, Values: []float64{3, 3, 3, 3, 3}},
		},
		Findings: []Finding{{Resource: Heap, PerIteration: 24, Uncertainty: 0.5, Limit: 4}},
	}
	want := strings.Join([]string{
		"heap leaks: +24 B per call",
		"resource:   heap (bytes live on the Go heap after a full collection)",
		"per call:   +24 B ± 0.5 B",
		"limit:      4 B per call",
		"calls:      3072 judged after 1024 warm-up calls",
		"heap:       ▁▁▃▅█ 200 KiB → 273 KiB",
		"goroutines: ▁▁▁▁▁ 3 → 3",
	}, "\n")
	assert.Equal(t, want, rep.failure(rep.Findings[0]))

	tb := &fakeTB{}
	require.False(t, assertNoLeak(tb, rep, nil))
	require.Len(t, tb.errors, 1)
	// testify's labelled blocks: the text above is the Error block.
	msg := tb.errors[0]
	assert.Contains(t, msg, "Error:      \theap leaks: +24 B per call\n")
	assert.Contains(t, msg, "\t            \tgoroutines: ▁▁▁▁▁ 3 → 3\n")
	assert.Contains(t, msg, "Test:       \tTestFake")

	assert.Equal(t, "leaktest: 1 leak(s) found\n\n"+want, rep.String())

	rep.Findings[0].Detail = "1 × created by main.start at main.go:9, blocked in chan send in main.worker\n2 × elsewhere"
	assert.True(t, strings.HasSuffix(rep.failure(rep.Findings[0]),
		"\nwhere:      1 × created by main.start at main.go:9, blocked in chan send in main.worker\n            2 × elsewhere"))
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{Iterations(0), "Iterations(0): need at least 32 calls for a verdict"},
		{Iterations(31), "Iterations(31)"},
		{Timeout(time.Millisecond), "Timeout(1ms) is not longer than the budget"},
		{Iterations(-5), "Iterations(-5)"},
		{Warmup(-1), "Warmup(-1): negative count"},
		{Budget(0), "Budget(0s): budget must be positive"},
		{Budget(-time.Second), "Budget(-1s)"},
		{Timeout(0), "Timeout(0s): timeout must be positive"},
		{Limit("memory", 1), `Limit("memory", 1): unknown Resource`},
		{Limit(Heap, -1), "Limit(heap, -1): limit must be a finite number >= 0"},
		{Limit(RSS, math.NaN()), "Limit(rss, NaN)"},
		{Limit(FDs, math.Inf(1)), "Limit(fds, +Inf)"},
		{nil, "nil Option"},
	} {
		calls := 0
		rep, err := Measure(func() { calls++ }, tc.opt)
		require.Error(t, err, "%s", tc.want)
		assert.Contains(t, err.Error(), "leaktest: invalid option: ")
		assert.Contains(t, err.Error(), tc.want)
		assert.Nil(t, rep)
		assert.Zero(t, calls, "fn must not run when an option is invalid")
	}
	_, err := Measure(nil)
	assert.EqualError(t, err, "leaktest: fn is nil")

	tb := &fakeTB{}
	assert.Nil(t, Run(tb, func() {}, Iterations(-1)))
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "leaktest could not measure fn")
	assert.Contains(t, tb.errors[0], "Iterations(-1)")
}

func TestPanicIsAnError(t *testing.T) {
	calls := 0
	_, err := Measure(func() {
		calls++
		if calls == 500 {
			panic("boom at 500")
		}
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "leaktest: fn panicked on call 500: boom at 500")
	assert.Contains(t, err.Error(), "TestPanicIsAnError", "the panic's stack")

	tb := &fakeTB{}
	Run(tb, func() { panic(errors.New("always")) })
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "fn panicked on call 1: always")
}

func TestGoexitIsAnError(t *testing.T) {
	_, err := Measure(func() { runtime.Goexit() })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn called runtime.Goexit on call 1")
}

func TestTimeoutDumpsGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	release := make(chan struct{})
	calls := 0
	start := time.Now()
	_, err := Measure(func() {
		calls++
		if calls == 10 {
			<-release // blocks until the test ends
		}
	}, Budget(100*time.Millisecond), Timeout(300*time.Millisecond))
	close(release)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "no hang")
	assert.Contains(t, err.Error(), "leaktest: timed out after 300ms, on call 10 of fn; goroutines:")
	assert.Contains(t, err.Error(), "TestTimeoutDumpsGoroutines.func1", "the dump shows where fn blocks")
	// The abandoned loop sees the abort once fn returns, and ends.
	require.NoError(t, goleak.Find(ignore))
}

// Parallel tests queue for the turn: waiting for a measurement that ends
// in its own time is not this one's Timeout.
func TestWaitingInTheQueueIsNotTheTimeout(t *testing.T) {
	started := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		calls := 0
		_, err := Measure(func() {
			if calls++; calls == 1 {
				close(started)
			}
			time.Sleep(30 * time.Millisecond)
		}, Iterations(48)) // about 1.5 s
		first <- err
	}()
	<-started
	rep, err := Measure(func() {}, Budget(50*time.Millisecond), Timeout(time.Second))
	require.NoError(t, err, "waited for a measurement that ended in time")
	assert.False(t, rep.Leaked())
	require.NoError(t, <-first)
}

// A measurement whose fn is blocked past its Timeout holds the turn until
// fn returns: the next one says so after its own Timeout, and the turn is
// free again once fn returns.
func TestWaitingForABlockedMeasurementIsAnError(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // else fn holds the turn for every later test
	calls := 0
	_, err := Measure(func() {
		if calls++; calls == 10 {
			<-release
		}
	}, Budget(500*time.Millisecond), Timeout(2*time.Second))
	require.Error(t, err)
	require.Contains(t, err.Error(), "on call 10 of fn")
	// Stuck for longer than the next one's Timeout before it comes: it
	// still waits that Timeout, as its error says.
	time.Sleep(400 * time.Millisecond)
	start := time.Now()
	_, err = Measure(func() {}, Budget(50*time.Millisecond), Timeout(300*time.Millisecond))
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	assert.Contains(t, err.Error(), "leaktest: waited 300ms for another measurement to end, whose fn is still blocked past its Timeout")
	unblock()
	rep, err := Measure(func() {}, Budget(50*time.Millisecond))
	require.NoError(t, err)
	assert.False(t, rep.Leaked())
	require.NoError(t, goleak.Find(ignore))
}

// A function too slow for the samples a verdict needs before the Timeout
// is an error after the calibration calls, not a timeout a minute later.
func TestTooSlowForTheTimeoutIsAnError(t *testing.T) {
	_, err := Measure(func() { time.Sleep(100 * time.Millisecond) },
		Budget(200*time.Millisecond), Timeout(2*time.Second))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the 32 samples a verdict needs would take")
	assert.Contains(t, err.Error(), "set a larger Timeout")
}

func TestNestedRunIsAnError(t *testing.T) {
	var inner error
	rep, err := Measure(func() {
		if inner == nil {
			_, inner = Measure(func() {})
		}
	}, Iterations(32))
	require.NoError(t, err)
	require.False(t, rep.Leaked())
	require.Error(t, inner)
	assert.Contains(t, inner.Error(), "nested Run")
}

func TestRuntimeSettingsRestored(t *testing.T) {
	gogc := debug.SetGCPercent(100)
	debug.SetGCPercent(gogc)
	procs := runtime.GOMAXPROCS(0)
	rate := runtime.MemProfileRate
	for _, fn := range []func(){
		func() { testSink = append(testSink, make([]byte, 64)) },
		func() { panic("restore on panic too") },
	} {
		Measure(fn, Iterations(100))
		testSink = nil
		now := debug.SetGCPercent(gogc)
		assert.Equal(t, gogc, now, "GOGC")
		assert.Equal(t, procs, runtime.GOMAXPROCS(0), "GOMAXPROCS")
		assert.Equal(t, rate, runtime.MemProfileRate, "MemProfileRate")
	}
}

func TestFixedCounts(t *testing.T) {
	calls := 0
	rep, err := Measure(func() { calls++ }, Iterations(200))
	require.NoError(t, err)
	assert.Equal(t, 200, calls)
	assert.Equal(t, 200, rep.Warmup+rep.Iterations)
	assert.Less(t, rep.Warmup, 200/2, "warm-up found within the calls")

	calls = 0
	rep, err = Measure(func() { calls++ }, Warmup(100), Iterations(300))
	require.NoError(t, err)
	assert.Equal(t, 400, calls)
	assert.Equal(t, 100, rep.Warmup)
	assert.Equal(t, 300, rep.Iterations)

	// A fixed warm-up that covers a cache's filling makes it clean even
	// with few calls.
	cache := map[int]bool{}
	calls = 0
	rep, err = Measure(func() {
		calls++
		if calls <= 300 {
			cache[calls] = true
		}
	}, Warmup(300), Iterations(200))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
}

// Calls that become slower after the two calibration calls (as a call
// allocating 10 MiB does once it must clear reused memory) make the plan
// start again with fewer calls between samples, instead of spending many
// times the budget on the minimum number of samples.
func TestSamplingReplansWhenCallsGetSlower(t *testing.T) {
	calls := 0
	rep, err := Measure(func() {
		calls++
		if calls > 3 {
			spin(time.Millisecond)
		}
	}, Budget(time.Second))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	// Planned for 1 ms calls: 64 samples in half the budget is about 8
	// calls between samples (jittered: gaps below twice that); the plan
	// from the calibration calls alone was 64.
	got := rep.Series[0].Calls
	require.Greater(t, len(got), 2)
	for i := 2; i < len(got); i++ {
		assert.Less(t, got[i]-got[i-1], 32, "gap between samples %d and %d: %v", i-1, i, got)
	}
}

// Heap growth that stopped when the measurement ended is not a leak: the
// attribution window, as long as the measurement, sees nothing grow. So
// it is even when the measurement used up its budget and so long a window
// does not fit in the time left (it found such a false alarm under
// GOMAXPROCS=8 in the torture runs).
func TestGrowthThatStoppedIsNotALeak(t *testing.T) {
	defer func() { chain = nil }()
	rep, err := Measure(func() {
		if runtime.MemProfileRate != 1 { // grow until the window starts
			chain = &chain48{next: chain}
		}
		spin(200 * time.Microsecond)
	}, Iterations(1000), Budget(200*time.Millisecond))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "the growth stopped", "%s", rep)
}

// A bounded cache that fills at 80% of the calls and from then on replaces
// its oldest entry at each call. Judged once (Iterations), the rule sees
// growth into the late window; the window as long as the measurement must
// find that the heap stopped growing, although every entry allocated in it
// is still live at its end: the entries it replaced were allocated before
// the window, when allocations were not all profiled, so their frees are
// invisible to a diff of profiles.
func TestCacheFilledLateIsNotALeak(t *testing.T) {
	c := newLRU(1600)
	i := 0
	rep, err := Measure(func() { i++; c.add(i, make([]byte, 128)) }, Iterations(2000))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "the growth stopped", "%s", rep)
}

// The same cache beside a real leak of 48 B per call: in the window the
// heap grows far less than in the measurement, but it still grows in the
// window's second half, and that is a leak.
func TestCacheFilledLateBesideALeakIsALeak(t *testing.T) {
	defer func() { chain = nil }()
	c := newLRU(1600)
	i := 0
	rep, err := Measure(func() {
		i++
		c.add(i, make([]byte, 128))
		chain = &chain48{next: chain}
	}, Iterations(2000))
	require.NoError(t, err)
	f := rep.finding(Heap)
	require.NotNil(t, f, "%s", rep)
	require.NotEmpty(t, f.Sites, "%s", rep)
}

// pageCache is an LRU of pages on a Go map, as an adversarial corpus
// wrote it. (Not the corpus's lru: holding boxed slices, its map grows
// for longer after it filled, past even the longer window now and then;
// README Limits.)
type pageCache struct {
	max   int
	order *list.List
	items map[int]*list.Element
}

type page struct {
	key int
	_   [64]byte // the page's body
}

func (c *pageCache) put(k int) {
	c.items[k] = c.order.PushFront(&page{key: k})
	if c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*page).key)
	}
}

// A cache on a Go map that fills at 70% of a run judged once: after it
// filled, the map's tables go on splitting, 18 KiB at a time, for up to
// tens of thousands of calls (deletes leave tombstones), so a window as
// long as the measurement still sees a little growth in its second half.
// The window goes on until that growth ends (a run failed 9 times in 10
// before). A split late in the longest window still fails a run now and
// then: 3 in 1600 on 2026-11-29 (README Limits), so this asserts that
// rate, not none: at most 1 false alarm in 10 runs (at 0.2% a run, a
// failure of this test in 5000; at 20%, it fails 6 times in 10, at 10%
// only 1 time in 4: a check against a regression, not a measurement).
func TestMapCacheStillGrowingAfterItFilledIsNotALeak(t *testing.T) {
	if testing.Short() {
		t.Skip("10 measurements, each with a window of up to 12 000 profiled calls")
	}
	alarms := 0
	for run := 0; run < 10; run++ {
		c := &pageCache{max: 2800, order: list.New(), items: map[int]*list.Element{}}
		i := 0
		r, err := Measure(func() { i++; c.put(i) }, Iterations(4000))
		require.NoError(t, err)
		if r.Leaked() {
			alarms++
			t.Logf("run %d: a false alarm (a known rate; see README Limits):\n%s", run, r)
		}
	}
	assert.LessOrEqual(t, alarms, 1, "false alarms in 10 runs")
}

// chain16 is a 16-byte list node: a leak of one size class per call.
type chain16 struct {
	next *chain16
	_    [8]byte
}

var chain16s *chain16

// The same beside a leak of 16 B per call: going on finds it growing
// still, and it stays a leak.
func TestMapCacheBesideALeakIsALeak(t *testing.T) {
	defer func() { chain16s = nil }()
	before := extensions.Load()
	defer func() { assert.Positive(t, extensions.Load()-before, "the window went on") }()
	for rep := 0; rep < 3; rep++ {
		c := &pageCache{max: 2800, order: list.New(), items: map[int]*list.Element{}}
		i := 0
		r, err := Measure(func() {
			i++
			c.put(i)
			chain16s = &chain16{next: chain16s}
		}, Iterations(4000))
		require.NoError(t, err)
		require.NotNil(t, r.finding(Heap), "%s", r)
	}
}

// tenants starts a worker goroutine for each of n tenants on its first
// request; stop ends them.
func tenants(n int) (fn, stop func()) {
	workers := map[int]chan func(){}
	var wg sync.WaitGroup
	calls := 0
	fn = func() {
		calls++
		ch, ok := workers[calls%n]
		if !ok {
			ch = make(chan func())
			workers[calls%n] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range ch {
					f()
				}
			}()
		}
		done := make(chan struct{})
		ch <- func() { close(done) }
		<-done
	}
	return fn, func() {
		for _, ch := range workers {
			close(ch)
		}
		wg.Wait()
	}
}

// Goroutines that stop growing at 70% of a run judged once (Iterations)
// are growth that stopped, not a leak; one more tenant every 10 calls,
// all through the run, is a leak.
func TestGoroutinesThatStopLateAreNotALeak(t *testing.T) {
	fn, stop := tenants(1400)
	rep, err := Measure(fn, Iterations(2000))
	stop()
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "goroutines grew", "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "then not at all over the last", "%s", rep)
	// The goroutines left are listed as undecided, not as a pool that
	// did not grow: they grew.
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "still running, but their growth is undecided (the note on goroutines above)", "%s", rep)

	fn, stop = tenants(1 << 30)
	calls := 0
	rep, err = Measure(func() {
		if calls++; calls%10 == 0 {
			fn()
		}
	}, Iterations(2000))
	stop()
	require.NoError(t, err)
	require.NotNil(t, rep.finding(Goroutines), "%s", rep)

	// A rare leak (an error path, one call in 300) that happens not to
	// recur in the last quarter: at its rate, the quarter would have held
	// about 2, too few to tell that it stopped.
	fn, stop = tenants(1 << 30)
	calls = 0
	rep, err = Measure(func() {
		if calls++; calls%300 == 0 && calls < 3100 {
			fn()
		}
	}, Iterations(4000))
	stop()
	require.NoError(t, err)
	require.NotNil(t, rep.finding(Goroutines), "%s", rep)
}

// A window as long as the measurement that would not fit before the
// Timeout does not run: the verdict stands, unconfirmed, and says so,
// instead of the measurement timing out.
//
// 48 calls, a sample after each; the budget leaves the short window no
// time, so it gets its floor, 16 calls, and a call in the window takes
// 60 ms. Measurement and short window end after 1.5 s (2.2 s beside two
// CPU burners), 1.4 s or more before the Timeout; the rest of the window
// (32 calls, reckoned at 1.5× for safety) would take 2.9 s more, past
// 0.9 × the Timeout by a second or more. (Calls of 2 ms in and out of the
// window, with a Timeout 0.3 s past a 0.6 s budget, timed out under the
// burners.)
func TestConfirmationWindowKeepsToTheTimeout(t *testing.T) {
	defer func() { openFigures = nil }()
	rep, err := Measure(func() {
		if runtime.MemProfileRate != 1 { // 2 KiB a call until the window
			drawChart()
			spin(2 * time.Millisecond)
		} else {
			spin(60 * time.Millisecond)
		}
	}, Iterations(48), Budget(100*time.Millisecond), Timeout(3600*time.Millisecond))
	require.NoError(t, err)
	assert.True(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "would not fit before the Timeout", "%s", rep)
}

// A slow function is sampled after every call, and the heap limit rises
// with the collections per call: a clean report says what it judged.
func TestRaisedHeapLimitIsNoted(t *testing.T) {
	rep, err := Measure(func() { time.Sleep(10 * time.Millisecond) }, Budget(time.Second))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "heap judged against", "%s", rep)
}

func TestLimitOption(t *testing.T) {
	defer func() { chain = nil }()
	fn := func() { chain = &chain48{next: chain} }
	rep, err := Measure(fn, Limit(Heap, 1024))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "48 B per call is under a 1 KiB limit:\n%s", rep)
	s := rep.Series[0]
	require.Equal(t, Heap, s.Resource)
	assert.InDelta(t, 48, s.PerIteration, 48*0.05, "the series keeps its slope when under the limit")
}

func TestDroppedFileIsNoted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	rep, err := Measure(func() {
		f, err := os.Open(os.Args[0])
		if err != nil {
			panic(err)
		}
		_ = f // dropped without Close: only its finalizer closes it
	})
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "the collector closes them: no growth\n%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "closed only by the garbage collector", "%s", rep)
}

// A client that closes its connections: the server's side closes them a
// moment later, on its own, and that is not the collector closing them.
func TestDescriptorsClosedOnTheirOwnAreNotNoted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptors are counted on Linux only")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	rep, err := Measure(func() { getOnce(&http.Transport{}, srv.URL) })
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	assert.NotContains(t, strings.Join(rep.Notes, "\n"), "closed only by the garbage collector", "%s", rep)
}

// A file that a goroutine of fn's closes a few ms after the call is still
// open when the sample's wait for closes ends, and closes during the
// collection: not the collector's doing. Noted as the collector's at all
// three delays before the sampler looked at goroutines ending meanwhile.
func TestDescriptorsClosedLaterByAGoroutineAreNotNoted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptors are counted on Linux only")
	}
	for _, d := range []time.Duration{3 * time.Millisecond, 8 * time.Millisecond, 30 * time.Millisecond} {
		d := d // go 1.21: one d for the loop, and the last goroutines read it after Measure
		rep, err := Measure(func() {
			f, err := os.Open(os.DevNull)
			if err != nil {
				panic(err)
			}
			go func() { time.Sleep(d); f.Close() }()
		})
		require.NoError(t, err)
		assert.False(t, rep.Leaked(), "%v: %s", d, rep)
		assert.NotContains(t, strings.Join(rep.Notes, "\n"), "closed only by the garbage collector", "%v: %s", d, rep)
	}
}

func TestLeakedGoroutinesAreGrouped(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	rep, err := Measure(func() { startBlockedWorker(release) })
	require.NoError(t, err)
	f := rep.finding(Goroutines)
	require.NotNil(t, f, "%s", rep)
	assert.InDelta(t, 1, f.PerIteration, 0.05)
	assert.Regexp(t, `^\d+ × created by github.com/heapslope/leaktest.startBlockedWorker at leaktest_test.go:\d+, blocked in chan receive in github.com/heapslope/leaktest.startBlockedWorker.func1$`, f.Detail)
}

func startBlockedWorker(release chan struct{}) { go func() { <-release }() }

// Goroutines that others start during the measurement are not fn's and
// stay out of its leak's detail, where the runtime shows pprof labels.
func TestLeakDetailListsOnlyFnsGoroutines(t *testing.T) {
	if !bytes.Contains(labelledDump(), []byte("labels:{")) {
		t.Skip("this runtime does not show pprof labels in goroutine dumps (Go 1.26+)")
	}
	release, stop, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() { // alive before Measure, unlabelled, starting goroutines meanwhile
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				go func() { <-release }()
			}
		}
	}()
	rep, err := Measure(func() { startBlockedWorker(release) })
	close(stop)
	<-stopped
	require.NoError(t, err)
	f := rep.finding(Goroutines)
	require.NotNil(t, f, "%s", rep)
	assert.Regexp(t, `^\d+ × created by github.com/heapslope/leaktest.startBlockedWorker at leaktest_test.go:\d+, blocked in chan receive in github.com/heapslope/leaktest.startBlockedWorker.func1$`, f.Detail)
}

// labelledDump is goroutineDump while a goroutine runs under a pprof label.
func labelledDump() []byte {
	in, out := make(chan struct{}), make(chan struct{})
	go pprof.Do(context.Background(), pprof.Labels(labelKey, "probe"), func(context.Context) {
		close(in)
		<-out
	})
	<-in
	defer close(out)
	return goroutineDump()
}

func TestLeakedDescriptorsAreListed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	rep, err := Measure(func() {
		f, err := os.Open(os.Args[0])
		if err != nil {
			panic(err)
		}
		files = append(files, f)
	})
	require.NoError(t, err)
	f := rep.finding(FDs)
	require.NotNil(t, f, "%s", rep)
	assert.InDelta(t, 1, f.PerIteration, 0.05)
	// After 2048 descriptors the guard stops the loop, and says so first.
	assert.Regexp(t, `(^|\n)descriptors left open:\n\d+ × `+regexp.QuoteMeta(os.Args[0])+`$`, f.Detail)
}

func TestLazyPoolIsNotedNotFailed(t *testing.T) {
	p := &pool{}
	defer p.stop()
	rep, err := Measure(p.do)
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
	// (*pool).do.func1, or under -race (*pool).do-fm.(*pool).do.func1.
	assert.Regexp(t, `4 × created by github.com/heapslope/leaktest\.\(\*pool\)\.do.*func1 at corpus_test.go`, strings.Join(rep.Notes, "\n"))
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "4 goroutine(s) started by fn are still running, but their number did not keep growing through the judged calls (a pool started once?)")
}

// Run from parallel tests: measurements take turns, and the allocations of
// the others are noise, not growth.
func TestParallelRunsRaiseNoFalseAlarm(t *testing.T) {
	for i := 0; i < 4; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			stop := backgroundGarbage()
			defer stop()
			Run(t, func() { _ = make([]byte, 256) }, Budget(500*time.Millisecond))
		})
	}
}

func TestShortModeShrinksBudget(t *testing.T) {
	c := newConfig(true, nil)
	assert.Equal(t, shortBudget, c.budget)
	c = newConfig(false, nil)
	assert.Equal(t, defaultBudget, c.budget)
	c = newConfig(true, []Option{Budget(5 * time.Second)})
	assert.Equal(t, 5*time.Second, c.budget, "an explicit budget wins")
}

// The measuring loop's sampling allocates nothing, so a 16-byte leak is
// not lost among the harness's own allocations.
func TestSampleAllocatesNothing(t *testing.T) {
	prev := debug.SetMemoryLimit(1 << 20) // below the Go memory: each sample raises it
	defer debug.SetMemoryLimit(prev)
	m := newMeter(newConfig(false, nil), func() {})
	defer m.close()
	allocs := testing.AllocsPerRun(20, func() {
		if m.n == capacity+1 {
			m.decimate()
		}
		m.sample()
		m.st.judge(m.xs, m.ys[sHeap], 0, m.n/2, 4)
		m.judgeChain(0) // every series, RSS's checks included
		m.stillGrowing(sHeap)
		m.guard()
		m.grownLarge()
	})
	assert.Zero(t, allocs)
}

// At the budget's end, a run with a series undecided and none leaking
// goes on for a budget, then again while still undecided, maxBudgetsAdded
// budgets at most, and not when the Timeout leaves no room.
func TestExtendWhenUndecided(t *testing.T) {
	m := newMeter(newConfig(false, nil), func() {})
	defer m.close()
	fill := func(heap func(i int) float64) {
		m.n, m.calls = 0, 64*128
		m.xs, m.ts, m.cycles, m.dropped = m.xs[:0], m.ts[:0], m.cycles[:0], m.dropped[:0]
		for s := range m.ys {
			m.ys[s] = m.ys[s][:0]
		}
		for i := 0; i <= 128; i++ {
			m.xs, m.ts = append(m.xs, float64(64*i)), append(m.ts, float64(i)/1000)
			m.cycles, m.dropped = append(m.cycles, 0), append(m.dropped, 0) // the limit stays 4 B at any GOMAXPROCS
			for s := range m.ys {
				m.ys[s] = append(m.ys[s], 0)
			}
			m.ys[sHeap][i] = heap(i)
			m.n++
		}
	}
	reset := func(timeLeft time.Duration) {
		m.start = time.Now().Add(-m.cfg.budget)
		m.deadline = time.Now().Add(timeLeft)
		m.extended, m.extendDecided, m.extendUntil, m.budgetsAdded = 0, false, time.Time{}, 0
	}
	// 100 B per call from sample 80 on: in the late window only.
	late := func(i int) float64 { return 1e6 + 6400*float64(max(0, i-80)) }
	fill(late)
	reset(time.Minute)
	require.True(t, m.extend())
	assert.Equal(t, extendedUndecided, m.extended)
	assert.Equal(t, "heap had grown in the late window only", m.undecidedWhy)
	assert.WithinDuration(t, time.Now().Add(m.cfg.budget), m.extendUntil, time.Second)
	assert.True(t, m.extend(), "within the extension")
	assert.Equal(t, 1, m.budgetsAdded)
	m.extendUntil = time.Now()
	assert.True(t, m.extend(), "still undecided")
	assert.Equal(t, 2, m.budgetsAdded)
	m.extendUntil = time.Now()
	assert.False(t, m.extend(), "past maxBudgetsAdded")

	reset(m.cfg.timeout / 10)
	assert.False(t, m.extend(), "no room before the Timeout")

	for name, heap := range map[string]func(int) float64{
		"leak":  func(i int) float64 { return 1e6 + 6400*float64(i) },
		"clean": func(int) float64 { return 1e6 },
	} {
		fill(heap)
		reset(time.Minute)
		assert.False(t, m.extend(), name)
	}
	// Goroutines undecided beside a heap leak: the verdict is the leak.
	fill(func(i int) float64 { return 1e6 + 6400*float64(i) })
	for i := range m.ys[sGoroutines] {
		m.ys[sGoroutines][i] = float64(max(0, i-80))
	}
	reset(time.Minute)
	require.Equal(t, unsure, m.judge(sGoroutines).verdict)
	assert.False(t, m.extend(), "leak beside undecided")
}

// A leak that starts late in the budget is undecided when the budget
// ends (growth in the late window only): the run goes on for up to two
// budgets more, says so, and catches it.
func TestUndecidedAtBudgetExtends(t *testing.T) {
	const budget = 300 * time.Millisecond
	defer func() { sinkBytes = nil }()
	// Calls of 3 ms: too few for a judgement before the budget ends
	// (minCalls), so the run gets to the budget's end and its verdict.
	// And slower than half the budget over targetSample samples, so that
	// the plan (planBin) is a sample after every call whatever the load;
	// the leak's start is still wall-clock time (a setup over some 150 ms
	// would put it in the early window). With 1 ms
	// calls the plan flipped between 1 and 2 calls a sample, the series
	// restarted late (replan), and 1 run in 120 (alone or two at a time) had
	// the leak's start in the early window, found at once.
	// The clock starts with Measure's, not at fn's first call: under load
	// the warm-up of threads and goroutines before it took tens of ms, and
	// the leak began too late to be seen at all (2 runs in 140).
	// 16 KiB a call: under -race beside a CPU burner and another suite, a
	// run held only its 32 samples, the leak 8 of them, and at 1 KiB a
	// call a fall of some KiB freed elsewhere hid it (1 run in 1).
	start := time.Now()
	rep, err := Measure(func() {
		time.Sleep(3 * time.Millisecond)
		if time.Since(start) > budget*3/4 {
			sinkBytes = append(sinkBytes, make([]byte, 16<<10))
		}
	}, Budget(budget))
	require.NoError(t, err)
	assert.True(t, rep.Leaked(), "%s", rep)
	assert.Greater(t, rep.Elapsed, budget, "%s", rep)
	assert.Regexp(t, `the run went on [0-9.]+m?s past its budget \(300ms\), in [12] extension\(s\) of at most a budget each, because when it ended heap had grown in the late window only`,
		strings.Join(rep.Notes, "\n"), "%s", rep)
}

// grownLarge trips at an eighth of a guard, and only then does a leak
// found again end the run before its budget (confirmed).
func TestGrownLarge(t *testing.T) {
	m := newMeter(newConfig(false, nil), func() {})
	defer m.close()
	// 65 samples of nothing grown, 64 calls apart.
	for i := 0; i <= 64; i++ {
		m.xs, m.ts = append(m.xs, float64(64*i)), append(m.ts, float64(i)/1000)
		for s := range m.ys {
			m.ys[s] = append(m.ys[s], 0)
		}
		m.n++
	}
	assert.False(t, m.confirmed(), "found again, not grown large: the run goes on to its budget")

	m.hasGuard = true
	for s := range m.guardBase {
		m.guardBase[s] = 0
	}
	last := m.n - 1
	assert.False(t, m.grownLarge())
	m.ys[sHeap][last] = guardBytes / 8
	assert.False(t, m.grownLarge(), "an eighth is not past it")
	m.ys[sHeap][last] = guardBytes/8 + 1
	assert.True(t, m.grownLarge())
	assert.True(t, m.confirmed(), "grown large: at once")
	m.ys[sHeap][last] = 0
	m.ys[sGoroutines][last] = guardFDs
	assert.False(t, m.grownLarge(), "goroutines: no guard of their own")
	m.ys[sGoroutines][last] = 0
	m.ys[sFDs][last] = guardFDs/8 + 1
	assert.True(t, m.grownLarge())
	m.ys[sFDs][last] = 0

	// RSS 300 MiB past its start and rising: the guard stops the loop,
	// except under the race detector, whose shadow memory follows the
	// heap there (the heap's own guard stops a heap leak).
	for i := 1; i <= 4; i++ {
		m.ys[sAnon][last-4+i] = 300<<20 + float64(i)
		m.ys[sOffGo][last-4+i] = 300<<20 + float64(i)
	}
	assert.Equal(t, !raceEnabled, m.guard())
}

func TestParseGoroutine(t *testing.T) {
	block := `goroutine 42 [chan send, 3 minutes]:
main.producer(0xc000012345)
	/src/app/producer.go:12 +0x1d
created by main.startProducer in goroutine 1
	/src/app/producer.go:30 +0x3f`
	g, id, ok := parseGoroutine(block)
	require.True(t, ok)
	assert.Equal(t, 42, id)
	assert.Equal(t, goroutineGroup{createdBy: "main.startProducer at producer.go:30", top: "main.producer", state: "chan send"}, g)

	dump := []byte(block + "\n\n" + strings.Replace(block, "goroutine 42", "goroutine 43", 1) + "\n\ngoroutine 7 [running]:\nmain.main()\n\t/src/app/main.go:3 +0x1")
	assert.Equal(t, "2 × created by main.startProducer at producer.go:30, blocked in chan send in main.producer",
		groupGoroutines(dump, map[int]bool{42: true, 43: true}))
	assert.Equal(t, map[int]bool{7: true, 12: true},
		leakedIDs("found unexpected goroutines:\n[Goroutine 7 in state chan receive, with x on top of the stack:\n... Goroutine 12 in state select, with y]"))
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		r    Resource
		v    float64
		want string
	}{
		{Heap, 8, "8 B"}, {Heap, 1000, "1000 B"}, {Heap, 1024, "1 KiB"}, {Heap, 1536, "1.5 KiB"},
		{RSS, 3 << 20, "3 MiB"}, {Heap, 0.25, "0.25 B"}, {Goroutines, 1, "1"}, {FDs, 0.1, "0.1"},
		{Heap, 1010.4 * 1024, "1010 KiB"}, {Heap, 999.7, "1000 B"}, {Heap, -1010.4 * 1024, "-1010 KiB"},
		{Goroutines, 2.5e6, "2.5e+06"}, {Heap, 999.4, "999 B"},
	} {
		assert.Equal(t, tc.want, formatValue(tc.r, tc.v))
	}
	assert.Equal(t, "▁▂▃▄▅▆▇█", sparkline([]float64{0, 1, 2, 3, 4, 5, 6, 7}, 32))
	assert.Equal(t, "▁▁▁", sparkline([]float64{5, 5, 5}, 32))
	assert.Equal(t, 4, len([]rune(sparkline(make([]float64, 100), 4))))
}

func TestTrackGauge(t *testing.T) {
	open := 0.0
	rep, err := Measure(func() { open++ }, Track("figures", func() float64 { return open }, 0))
	require.NoError(t, err)
	f := rep.finding("figures")
	require.NotNil(t, f, "%s", rep)
	assert.InDelta(t, 1, f.PerIteration, 0.01)
	assert.Contains(t, rep.String(), "figures leaks: +1 per call")

	bounded := 0.0
	rep, err = Measure(func() { bounded = math.Min(bounded+1, 50) }, Track("entries", func() float64 { return bounded }, 0))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "a gauge that stops at 50 is a plateau:\n%s", rep)
	require.Equal(t, Resource("entries"), rep.Series[len(rep.Series)-1].Resource)

	rep, err = Measure(func() { open++ }, Track("figures", func() float64 { return open }, 2))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "1 per call is under a limit of 2")

	rep, err = Measure(func() { open++ }, Track("figures", func() float64 { return open }, 0), Limit("figures", 2))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "Limit may name a tracked gauge")
	rep, err = Measure(func() { open++ }, Limit("figures", 2), Track("figures", func() float64 { return open }, 0))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "a Limit given before Track wins over Track's")

	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{Track("", func() float64 { return 0 }, 0)}, "Track: empty name"},
		{[]Option{Track("x", nil, 0)}, `Track("x"): nil gauge`},
		{[]Option{Track("x", func() float64 { return 0 }, -1)}, `Track("x", -1): limit must be a finite number >= 0`},
		{[]Option{Track("heap", func() float64 { return 0 }, 0)}, `Track("heap"): name already in use`},
		{[]Option{Track("x", func() float64 { return 0 }, 0), Track("x", func() float64 { return 0 }, 0)}, `Track("x"): name already in use`},
		{[]Option{Limit("y", 1)}, `Limit("y", 1): unknown Resource`},
		{[]Option{Track("nan", func() float64 { return math.NaN() }, 0)}, `leaktest: Track("nan"): the gauge returned NaN after 0 calls`},
		// A gauge that fails is named, not taken for fn or for leaktest.
		{[]Option{Track("p", func() float64 { panic("no figures") }, 0)}, `leaktest: Track("p"): the gauge panicked after 0 calls: no figures`},
		{[]Option{Track("g", func() float64 { runtime.Goexit(); return 0 }, 0)}, `leaktest: Track("g"): the gauge called runtime.Goexit after 0 calls`},
	} {
		_, err := Measure(func() {}, tc.opts...)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	release := make(chan struct{})
	defer close(release)
	_, err = Measure(func() {}, Track("blocks", func() float64 { <-release; return 0 }, 0), Budget(100*time.Millisecond), Timeout(200*time.Millisecond))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `leaktest: timed out after 200ms, in the gauge of Track("blocks"), after 0 calls`)
}

// Built with GOEXPERIMENT=goroutineleakprofile, goroutines the runtime
// proves blocked forever are marked so. The goroutines it leaks can never
// be released, so the measurement runs in a child process.
func TestBlockedForeverIsMarked(t *testing.T) {
	if pprof.Lookup("goroutineleak") == nil {
		t.Skip("needs GOEXPERIMENT=goroutineleakprofile")
	}
	if os.Getenv("LEAKTEST_FOREVER_CHILD") == "1" {
		rep, err := Measure(func() { go func() { ch := make(chan int); <-ch }() }, Iterations(64))
		if err == nil && rep.finding(Goroutines) != nil {
			fmt.Println(rep.finding(Goroutines).Detail)
		}
		os.Exit(0) // before TestMain's check, which these goroutines would fail
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestBlockedForeverIsMarked$")
	cmd.Env = append(os.Environ(), "LEAKTEST_FOREVER_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `64 × created by .*TestBlockedForeverIsMarked\.func1 at leaktest_test.go:\d+, blocked forever in chan receive`, string(out))
}

// Rule 5 holds per series: a heap that leaked at the judgement of 64
// samples and stopped does not confirm goroutines first found leaking at
// 128 (a run ending on two series' single judgements).
func TestFoundAgainIsPerSeries(t *testing.T) {
	m := newMeter(newConfig(false, nil), func() {})
	t.Cleanup(m.close)
	heap, gs := 0.0, 0.0
	for i := 0; i <= 128; i++ {
		if i > 0 && i <= 64 {
			heap += 64 * 32 // 32 B per call, then flat
		}
		if i > 36 {
			gs++ // a goroutine a sample from sample 37
		}
		m.xs, m.ts = append(m.xs, float64(64*i)), append(m.ts, float64(i)/1000)
		m.cycles, m.dropped = append(m.cycles, 0), append(m.dropped, 0)
		for s := range m.ys {
			m.ys[s] = append(m.ys[s], 0)
		}
		m.ys[sHeap][i], m.ys[sGoroutines][i] = heap, gs
		m.n++
		m.calls = 64 * i
		if c := judgementChain(i); c >= 0 {
			v, again := m.judgeChain(c)
			switch i {
			case 64:
				require.Equal(t, leak, v)
				require.True(t, m.found[c][sHeap], "the heap leaks at 64")
				require.False(t, m.found[c][sGoroutines], "goroutines do not, yet")
			case 128:
				require.Equal(t, leak, v)
				require.True(t, m.found[c][sGoroutines], "goroutines leak at 128")
				require.False(t, m.found[c][sHeap], "the heap no longer does")
				assert.False(t, again, "no series was found leaking twice")
			}
		}
	}
}

// A leak found again stands once the loop has ended, though the last
// judgement finds its growth per call under the limit, while it still
// grows; it falls when its growth stops.
func TestStandingLeak(t *testing.T) {
	run := func(late func(i int) float64) *meter {
		m := newMeter(newConfig(false, nil), func() {})
		t.Cleanup(m.close)
		y := 0.0
		for i := 0; i <= 256; i++ {
			if i > 0 {
				if i <= 128 {
					y += 64 * 32 // 32 B per call
				} else {
					y += late(i)
				}
			}
			m.xs, m.ts = append(m.xs, float64(64*i)), append(m.ts, float64(i)/1000)
			m.cycles, m.dropped = append(m.cycles, 0), append(m.dropped, 0) // the limit stays 4 B at any GOMAXPROCS
			for s := range m.ys {
				m.ys[s] = append(m.ys[s], 0)
			}
			m.ys[sHeap][i] = y
			m.n++
			m.calls = 64 * i
			if c := judgementChain(i); c >= 0 {
				v, again := m.judgeChain(c)
				if i <= 128 {
					require.Equal(t, leak, v, "sample %d", i)
				}
				if i == 64 || i == 128 {
					require.Equal(t, i == 128, again, "sample %d", i)
				}
			}
			if i == 128 {
				require.True(t, m.standing[sHeap].set, "found at 64 and again at 128")
			}
		}
		m.final = true
		return m
	}

	// Growth thinned out to 1 B per call (calls that got faster), but
	// growing still.
	m := run(func(int) float64 { return 64 })
	require.NotEqual(t, leak, m.judgeNow(sHeap).verdict, "the last judgement alone finds no leak")
	j := m.judge(sHeap)
	assert.Equal(t, leak, j.verdict, "the leak found before stands")
	assert.Equal(t, [2]int{64 * 48, 64 * 192}, j.stood, "found last at 192, and at 96 before")
	assert.InDelta(t, 1, j.nowRate, 0.1, "the last late window's growth")
	assert.Equal(t, [2]int{64 * 128, 64 * 256}, j.nowCalls)
	assert.True(t, m.anyStanding())

	// Growth that stopped: the judgement at 256 sees the tail flat.
	m = run(func(int) float64 { return 0 })
	assert.False(t, m.anyStanding(), "growth that stopped does not stand")
	assert.NotEqual(t, leak, m.judge(sHeap).verdict)

	// One step in the tail, flat around it: not growth that goes on.
	m = run(func(i int) float64 {
		if i == 240 {
			return 64 * 32 * 16
		}
		return 0
	})
	assert.False(t, m.anyStanding(), "a step in the tail does not stand")
	assert.NotEqual(t, leak, m.judge(sHeap).verdict)
}
