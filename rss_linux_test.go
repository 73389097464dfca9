package leaktest

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tleaktest.test\nVmRSS:\t   17200 kB\nRssAnon:\t    9000 kB\nRssFile:\t    8200 kB\nVmSwap:\t0 kB\nVmPTE:\t  12")
	for _, c := range []struct {
		key  string
		want uint64
		ok   bool
	}{
		{"\nVmRSS:", 17200 << 10, true},
		{"\nRssFile:", 8200 << 10, true},
		{"\nVmSwap:", 0, true},
		{"\nRssShmem:", 0, false}, // absent: older kernels
		{"\nName:", 0, false},     // not a number
		{"\nVmPTE:", 0, false},    // cut short: the read ended in it
	} {
		got, ok := statusKB(status, []byte(c.key))
		assert.Equal(t, c.want, got, c.key)
		assert.Equal(t, c.ok, ok, c.key)
	}
}

// The reading is the kernel's: the file part lies within the whole, and
// the process has some of both (its code is a mapped file).
func TestRSSReading(t *testing.T) {
	r := openRSS()
	if r == nil {
		t.Skip("no /proc/self/status")
	}
	defer r.close()
	got, ok := r.read()
	require.True(t, ok)
	if !r.hasFile {
		t.Skip("the kernel reports no RssFile")
	}
	assert.Greater(t, got.total, got.file)
	assert.Greater(t, got.file, uint64(0))
}

// ringWriter returns a fn that writes a 1 KiB record per call into a ring
// of size bytes allocated now and never written before: RSS grows by a
// page every four calls until the ring wraps, with no leak anywhere.
func ringWriter(size int) (fn func(), ring []byte) {
	ring = make([]byte, size)
	var rec [1024]byte
	off := 0
	return func() {
		rec[0]++
		off += copy(ring[off:], rec[:])
		if off == len(ring) {
			off = 0
		}
	}, ring
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

// Runs that end before, at and after the ring's wrap (call 16384) are
// each judged once: Iterations lets no run go on, so settleUnwritten
// decides. Before checkUnwritten all failed on RSS, and when the growth
// checked was the slope times the calls, those ending after the wrap
// (20000–22000) still did.
func TestBufferWrittenDuringTheRunIsNotALeak(t *testing.T) {
	if why := rssJudged(); why != "" {
		t.Skip(why)
	}
	if !inFreshProcess(t) {
		return
	}
	for _, n := range []int{8000, 16384, 20000, 22000} {
		fn, ring := ringWriter(16 << 20)
		rep, err := Measure(fn, Iterations(n))
		require.NoError(t, err)
		assert.False(t, rep.Leaked(), "Iterations(%d):\n%s", n, rep)
		runtime.KeepAlive(ring)
	}
}

// spare is 16 MiB of slice capacity never written.
var spare [][]byte

// A leak outside Go beside unwritten heap (16 MiB of spare slice
// capacity) is caught: the run goes on past its budget (200 ms here) until
// the growth passes the heap's memory. When the run ended at the budget
// with a note, a 100 µs function leaking 1 KiB of C memory per call beside
// 24 MiB of spare capacity passed (found by a review). 4 KiB mapped per
// call, in a function slowed to make about 3000 calls in the budget.
func TestLeakBesideABufferWrittenDuringTheRunIsALeak(t *testing.T) {
	if why := rssJudged(); why != "" {
		t.Skip(why)
	}
	if !inFreshProcess(t) {
		return
	}
	for i := 0; i < 64; i++ {
		spare = append(spare, make([]byte, 4096, 256<<10))
	}
	defer func() { spare = nil }()
	leakFn, teardown := mmapLeak(syscall.MAP_PRIVATE)(t)
	defer teardown()
	rep, err := Measure(func() {
		leakFn()
		for t0 := time.Now(); time.Since(t0) < 50*time.Microsecond; {
		}
	}, Budget(200*time.Millisecond))
	require.NoError(t, err)
	var found []Resource // the heap too: syscall.Mmap keeps a map of its mappings
	for _, f := range rep.Findings {
		found = append(found, f.Resource)
	}
	assert.Contains(t, found, RSS, "%s", rep)
	assert.Contains(t, strings.Join(rep.Notes, "\n"), "the run went on past its budget", "%s", rep)
}

// statusKB reads the kernel's text inside the measuring loop: whatever the
// bytes, it must not panic, and a value it finds is the digits after the
// key and its blanks, followed by " kB".
func FuzzStatusKB(f *testing.F) {
	f.Add([]byte("Name:\tx\nVmRSS:\t   17200 kB\nRssFile:\t8200 kB\n"), "VmRSS")
	f.Add([]byte("\nVmRSS:"), "VmRSS")
	f.Add([]byte("\nRssFile: \t 12x kB"), "RssFile")
	f.Add([]byte(""), "")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		key := []byte("\n" + name + ":")
		got, ok := statusKB(b, key)
		i := bytes.Index(b, key)
		if i < 0 {
			if ok {
				t.Fatalf("found %d without the key", got)
			}
			return
		}
		rest := strings.TrimLeft(string(b[i+len(key):]), " \t")
		digits := rest[:len(rest)-len(strings.TrimLeft(rest, "0123456789"))]
		whole := digits != "" && strings.HasPrefix(rest[len(digits):], " kB")
		if ok != whole {
			t.Fatalf("ok = %v for %q", ok, rest)
		}
		if !ok {
			return
		}
		if len(digits) > 15 { // past that, the product overflows: not a count the kernel writes
			return
		}
		want, _ := strconv.ParseUint("0"+digits, 10, 64)
		if got != want<<10 {
			t.Fatalf("statusKB = %d, want %d KiB", got, want)
		}
	})
}
