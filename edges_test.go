package leaktest

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
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
	defer func() { chained = nil }()
	start := time.Now()
	calls, leak := 0, keep[[1<<30 - 8]byte]()
	rep, err := Measure(func() { calls++; leak() })
	require.NoError(t, err)
	f := rep.finding(Heap)
	require.NotNil(t, f, "%s", rep)
	assert.InEpsilon(t, 1<<30, f.PerIteration, 0.05)
	// The calls to the sample that stopped it, not the attribution
	// window's after it.
	assert.Contains(t, f.Detail, fmt.Sprintf("stopped early after %d calls:", rep.Warmup+rep.Iterations))
	last := rep.Series[0].Values[len(rep.Series[0].Values)-1]
	assert.Less(t, last, 8.0*(1<<30), "stopped before memory ran out")
	t.Logf("%v, %d calls, heap at %s", time.Since(start), calls, formatValue(Heap, last))
}

// A memory limit below the live heap is raised while measuring, and put
// back. With thousands of stacks in the heap profile, as a process has
// after many tests: after this suite's window tests, this test once
// counted 102–119 collections against 64 without a limit. The window read
// every stack three times, every allocation of it profiled, and that
// garbage had the collector run under the limit (191 collections against
// 61 with 4096 stacks planted; frameKinds). In a fresh process, so that
// the profile holds the stacks planted and little else.
func TestGOMEMLIMITBelowTheLiveHeap(t *testing.T) {
	if !inFreshProcess(t) {
		return
	}
	before := profileLen()
	plantStacks(12)
	settleProfile()
	require.GreaterOrEqual(t, profileLen()-before, 1<<12, "stacks planted")
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
	defer func() { chained = nil }()
	leak := keep[[32 - 8]byte]()
	leaky := func() { garbage(); leak() }
	limited := collections(func() { rep, err = Measure(leaky, Iterations(2000)) })
	require.NoError(t, err)
	require.NotNil(t, rep.finding(Heap), "%s", rep)
	assert.InEpsilon(t, 32, rep.finding(Heap).PerIteration, 0.05)
	chained = nil
	debug.SetMemoryLimit(math.MaxInt64)
	free := collections(func() { _, _ = Measure(leaky, Iterations(2000)) })
	debug.SetMemoryLimit(8 << 20)
	t.Logf("%d collections under the limit, %d without", limited, free)
	assert.Less(t, float64(limited), 1.25*float64(free), "collections under the limit, and without")
}

// plantStacks puts 2^depth stacks in the heap profile: an allocation at
// the end of each path of depth calls down one of plant's two call sites.
func plantStacks(depth int) {
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	for path := 0; path < 1<<depth; path++ {
		plant(path, depth)
	}
}

var planted *[64]byte

//go:noinline
func plant(path, depth int) {
	switch {
	case depth == 0:
		planted = new([64]byte)
	case path&1 == 0:
		plant(path>>1, depth-1)
	default:
		plant(path>>1, depth-1) // another return address
	}
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
	// noted: only the Go memory after its collections is (an eighth more
	// than that, where the garbage would add 64 MiB).
	debug.FreeOSMemory()
	held := goMemory()
	require.NotNil(t, bigHeap(64<<20)) // garbage from here on
	rep, err := Measure(func() { _ = make([]byte, 64) }, Iterations(100))
	require.NoError(t, err)
	notes := strings.Join(rep.Notes, "\n")
	assert.Contains(t, notes, "the memory limit (1 MiB) left the Go runtime less than an eighth of its memory (4 MiB at least) to allocate into: it was raised to at most ")
	assert.Contains(t, notes, ", and restored after")
	assert.Less(t, notedHigh(t, notes), float64(held)/(1<<20)+32, "MiB: garbage counted in the highest limit noted")
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

// goMemory is the Go runtime's memory, less what it returned to the OS.
func goMemory() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64()
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

// inFreshProcess runs the test named t.Name() again in a child process,
// where it returns true; in the parent it returns false after checking
// that the child passed. What this suite's other tests leave outside Go
// (C memory freed but kept by malloc, ~20 MiB) makes the unwritten heap
// impossible to prove, as it would in any process holding that much.
func inFreshProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv("LEAKTEST_FRESH_PROCESS") == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "LEAKTEST_FRESH_PROCESS="+t.Name())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "%s", out)
	return false
}

// After warmGoroutines, rounds of 64 goroutines at once, ending on
// whichever P ran them, at GOMAXPROCS=8, allocate no goroutine descriptor:
// however the free ones spread over the Ps' lists, the global list or the
// starting P's holds enough. In a fresh process, which has few: the
// suite's own tests leave hundreds.
func TestWarmGoroutinesLeavesFreeDescriptors(t *testing.T) {
	if !inFreshProcess(t) {
		return
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1 // every descriptor allocated is profiled
	defer func() { runtime.MemProfileRate = rate }()
	warmGoroutines()
	before := descriptors(t)
	for round := 0; round < 100; round++ {
		var started, ended sync.WaitGroup
		started.Add(64)
		ended.Add(64)
		release := make(chan struct{})
		for i := 0; i < 64; i++ {
			go func() {
				defer ended.Done()
				started.Done()
				<-release
			}()
		}
		started.Wait()
		close(release)
		ended.Wait()
	}
	assert.Equal(t, before, descriptors(t), "goroutine descriptors allocated")
}

// A measurement's threads are started before its first sample, spare
// ones too: GOMAXPROCS+2 goroutines holding their threads at once
// afterwards (as goroutines blocked in system calls do) start none.
func TestWarmThreadsLeavesSpareThreads(t *testing.T) {
	if !inFreshProcess(t) {
		return
	}
	threads := pprof.Lookup("threadcreate")
	warmThreads()
	before := threads.Count()
	spareThreads(runtime.GOMAXPROCS(0) + 2)
	assert.Equal(t, before, threads.Count(), "threads started after warmThreads")
}

// descriptors counts the goroutine descriptors allocated for new
// goroutines while runtime.MemProfileRate was 1, from the heap profile.
func descriptors(t *testing.T) int64 {
	runtime.GC() // the profile shows allocations up to the last collection
	runtime.GC()
	n, _ := runtime.MemProfile(nil, true)
	recs := make([]runtime.MemProfileRecord, n+64)
	n, ok := runtime.MemProfile(recs, true)
	require.True(t, ok)
	var total int64
	for _, r := range recs[:n] {
		// malg called by newproc1: not a new thread's own descriptors.
		frames := runtime.CallersFrames(r.Stack())
		malg := false
		for {
			f, more := frames.Next()
			malg = malg || f.Function == "runtime.malg"
			if malg && f.Function == "runtime.newproc1" {
				total += r.AllocObjects
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}
