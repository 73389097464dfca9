package leaktest

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heapslope/leaktest/internal/cmem"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An RSS leak found while C was called says how to tell glibc's arenas
// from a leak; one where it was not says nothing of them.
func TestRSSLeakNamesArenasWhenCWasCalled(t *testing.T) {
	if why := needsCgo(); why != "" {
		t.Skip(why)
	}
	if !arenasPerThread() {
		t.Skip("needs glibc's malloc, not capped at one arena")
	}
	for _, calls := range []bool{true, false} {
		var fn, teardown func()
		if calls {
			fn, teardown = func() { cmem.Leak(4096) }, cmem.Free
		} else {
			fn, teardown = mmapLeak(syscall.MAP_PRIVATE)(t)
		}
		rep, err := Measure(fn)
		teardown()
		require.NoError(t, err)
		var f *Finding
		for i := range rep.Findings {
			if rep.Findings[i].Resource == RSS {
				f = &rep.Findings[i]
			}
		}
		require.NotNil(t, f, "%s", rep)
		if calls {
			assert.Contains(t, f.Detail, "MALLOC_ARENA_MAX=1")
		} else {
			assert.NotContains(t, f.Detail, "MALLOC_ARENA_MAX")
		}
	}
}

// A known limit, measured on demand (LEAKTEST_MEASURE_RUNS=N): C memory reused
// by a goroutine of fn's moves between threads, and glibc's arenas grow
// RSS with it. It counts the runs judged an RSS leak; each such finding
// must name the arenas.
func TestKnownLimitCMemoryReusedByGoroutines(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("LEAKTEST_MEASURE_RUNS"))
	if runs <= 0 {
		t.Skip("a measurement of a known limit: LEAKTEST_MEASURE_RUNS=N")
	}
	if why := needsCgo(); why != "" {
		t.Skip(why)
	}
	failed := 0
	for i := 0; i < runs; i++ {
		rep, err := Measure(func() {
			done := make(chan struct{})
			go func() { cmem.RingStep(1024, 16, 256<<10); close(done) }()
			<-done
		})
		cmem.Free()
		require.NoError(t, err)
		for _, f := range rep.Findings {
			if f.Resource == RSS {
				failed++
				assert.Equal(t, arenasPerThread(), strings.Contains(f.Detail, "MALLOC_ARENA_MAX=1"), f.Detail)
			}
		}
	}
	t.Logf("judged an RSS leak in %d of %d runs (MALLOC_ARENA_MAX=%q)", failed, runs, os.Getenv("MALLOC_ARENA_MAX"))
}

// needsLockedLoop skips where the loop is never locked (lockIfCgo).
func needsLockedLoop(t *testing.T) {
	t.Helper()
	if why := needsCgo(); why != "" {
		t.Skip(why)
	}
	if !arenasPerThread() {
		t.Skip("the loop is locked only for glibc's malloc, not capped at one arena")
	}
}

// Once fn has called C, every later call runs on one thread (lockIfCgo),
// so that glibc serves its mallocs from one arena.
func TestCallsToCStayOnOneThread(t *testing.T) {
	needsLockedLoop(t)
	tids := make([]int, 0, 8192) // allocated once: not a leak
	_, err := Measure(func() {
		cmem.Churn(64)
		tids = append(tids, syscall.Gettid())
	}, Warmup(1), Iterations(4000))
	require.NoError(t, err)
	threads := map[int]int{}
	for _, tid := range tids[1:] { // the warm-up call ran before the lock
		threads[tid]++
	}
	assert.Len(t, threads, 1, "calls after the first, by thread id")
}

// The loop's thread is unlocked before Measure returns, whatever ended it:
// a goroutine that exits locked takes its thread with it.
func TestLockedThreadIsUnlocked(t *testing.T) {
	needsLockedLoop(t)
	for _, end := range []string{"returns", "panics", "Goexit"} {
		tid, calls := 0, 0
		_, err := Measure(func() {
			cmem.Churn(64)
			tid = syscall.Gettid()
			if calls++; calls == 300 {
				switch end {
				case "panics":
					panic("on call 300")
				case "Goexit":
					runtime.Goexit()
				}
			}
		}, Warmup(1), Iterations(400))
		if end == "returns" {
			require.NoError(t, err)
		} else {
			require.Error(t, err)
		}
		time.Sleep(100 * time.Millisecond) // a locked thread's exit is not instant
		_, err = os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		assert.NoError(t, err, "the thread fn ran on when Measure %s", end)
	}
}

// The descriptor guard stops a fast descriptor leak before the process
// runs out, and its finding says both: stopped early, and what was left
// open.
func TestDescriptorGuardStopsEarly(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 8192 {
		t.Skipf("needs 8192 descriptors (RLIMIT_NOFILE %d)", lim.Cur)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	rep, err := Measure(func() {
		for i := 0; i < 32; i++ { // 64 descriptors per call
			r, w, err := os.Pipe()
			if err != nil {
				panic(err)
			}
			files = append(files, r, w)
		}
	})
	require.NoError(t, err)
	f := rep.finding(FDs)
	require.NotNil(t, f, "%s", rep)
	assert.Contains(t, f.Detail, "stopped early")
	assert.Contains(t, f.Detail, "more than 2048")
	assert.Contains(t, f.Detail, "descriptors left open:")
	assert.Less(t, len(files), 4096, "stopped soon after the guard's 2048")
}

// The descriptors the samples read (/proc/self/status, /proc/self/fd) are
// closed when Measure returns: after a verdict, and after a timeout while
// fn is still blocked, so that the caller never counts them as its own.
func TestOwnDescriptorsClosedOnReturn(t *testing.T) {
	own := func() []string {
		var list []string
		for fd, target := range openFDs() {
			if strings.HasSuffix(target, "/status") || strings.HasSuffix(target, "/fd") {
				list = append(list, strconv.Itoa(fd)+" "+target)
			}
		}
		return list
	}
	require.Empty(t, own(), "before")
	_, err := Measure(func() {}, Iterations(32))
	require.NoError(t, err)
	assert.Empty(t, own(), "after a verdict")

	release := make(chan struct{})
	calls := 0
	_, err = Measure(func() {
		if calls++; calls == 10 {
			<-release
		}
	}, Budget(100*time.Millisecond), Timeout(300*time.Millisecond))
	require.Error(t, err)
	assert.Empty(t, own(), "after a timeout, fn still blocked")
	close(release)
	_, err = Measure(func() {}, Iterations(32)) // waits for the abandoned loop's turn
	require.NoError(t, err)
	assert.Empty(t, own(), "after the abandoned loop ended")
}
