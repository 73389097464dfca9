package leaktest

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchmarkN runs Benchmark(b, fn) as testing.Benchmark does, with
// -benchtime=nx: b.N is 1, then n, and the result is the run with n.
func benchmarkN(t *testing.T, n int, fn func()) testing.BenchmarkResult {
	t.Helper()
	f := flag.Lookup("test.benchtime")
	require.NotNil(t, f)
	old := f.Value.String()
	require.NoError(t, f.Value.Set(fmt.Sprintf("%dx", n)))
	defer func() { require.NoError(t, f.Value.Set(old)) }()
	r := testing.Benchmark(func(b *testing.B) { Benchmark(b, fn) })
	require.Equal(t, n, r.N, "the benchmark failed")
	return r
}

// kept1000 is a 1000-byte object (size class 1024) that points to the one
// kept before it, so that keeping one more costs exactly its size.
type kept1000 struct {
	next *kept1000
	_    [992]byte
}

var (
	keptList *kept1000
	dropSink *kept1000
)

func TestBenchmarkReportsRetainedBytes(t *testing.T) {
	defer func() { keptList = nil }()
	r := benchmarkN(t, 1000, func() { keptList = &kept1000{next: keptList} })
	retained, goroutines := r.Extra["retained-B/op"], r.Extra["goroutines/op"]
	t.Logf("leaking fn: retained-B/op %.1f, goroutines/op %.3f", retained, goroutines)
	assert.InEpsilon(t, 1024, retained, 0.1)
	assert.Zero(t, goroutines)
}

func TestBenchmarkCleanFnRetainsNothing(t *testing.T) {
	r := benchmarkN(t, 1000, func() {
		dropSink = &kept1000{} // allocated on the heap, then dropped
		dropSink = nil
	})
	retained, goroutines := r.Extra["retained-B/op"], r.Extra["goroutines/op"]
	t.Logf("clean fn: retained-B/op %.2f, goroutines/op %.3f", retained, goroutines)
	assert.Less(t, math.Abs(retained), 4.0)
	assert.Zero(t, goroutines)
}

func TestBenchmarkReportsLeakedGoroutines(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(release)
		wg.Wait()
	}()
	r := benchmarkN(t, 1000, func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
		}()
	})
	retained, goroutines := r.Extra["retained-B/op"], r.Extra["goroutines/op"]
	t.Logf("goroutine-leaking fn: goroutines/op %.3f, retained-B/op %.1f, timed %v", goroutines, retained, r.T)
	assert.InEpsilon(t, 1, goroutines, 0.1)
	// The count never falls, so the grace wait lasts at least settleAfter:
	// only the calls are timed.
	assert.Less(t, r.T, settleAfter, "the grace wait was timed")
}

func TestBenchmarkWaitsForEndingGoroutines(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	r := benchmarkN(t, 100, func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(5 * time.Millisecond)
		}()
	})
	goroutines := r.Extra["goroutines/op"]
	t.Logf("goroutines ending 5 ms later: goroutines/op %.3f", goroutines)
	assert.Less(t, math.Abs(goroutines), 0.05)
}

// digestCache is the kind of code a leak benchmark guards: a memo of
// digests that should hold the last few and, when it is wrong, holds them
// all.
type digestCache struct {
	recent [16][32]byte // bounded: a ring of the last 16
	next   int
	all    *digestNode // unbounded: every digest ever computed
}

type digestNode struct {
	next *digestNode
	sum  [32]byte
}

func (c *digestCache) addBounded(sum [32]byte) {
	c.recent[c.next%len(c.recent)] = sum
	c.next++
}

func (c *digestCache) addUnbounded(sum [32]byte) {
	c.all = &digestNode{next: c.all, sum: sum}
}

// BenchmarkXCache shows Benchmark on a clean and a leaking cache. Its
// "unbounded" case reports retained-B/op of about 48 (a 40-byte node in
// the 48-byte size class); compare two runs with benchstat:
//
//	go test -run '^$' -bench BenchmarkXCache -count 10 . > new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt
func BenchmarkXCache(b *testing.B) {
	data := make([]byte, 1024)
	for _, tc := range []struct {
		name string
		add  func(*digestCache, [32]byte)
	}{
		{"bounded", (*digestCache).addBounded},
		{"unbounded", (*digestCache).addUnbounded},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cache := new(digestCache)
			// Each run of this function starts from an empty cache, and
			// the leaked nodes go with it.
			b.Cleanup(func() { cache.all = nil })
			Benchmark(b, func() {
				data[0]++
				tc.add(cache, sha256.Sum256(data))
			})
		})
	}
}
