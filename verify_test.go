package leaktest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// fakeM stands in for *testing.M: Run returns code, after starting a
// goroutine that waits for release when leak is set.
type fakeM struct {
	code    int
	leak    bool
	release chan struct{}
	ran     bool
}

func newFakeM(code int, leak bool) *fakeM {
	return &fakeM{code: code, leak: leak, release: make(chan struct{})}
}

func (m *fakeM) Run() int {
	m.ran = true
	if m.leak {
		go m.wait()
	}
	return m.code
}

func (m *fakeM) wait() { <-m.release }

// verifyFake runs verifyTestMain on m and returns the exit codes it gave
// and what it wrote to standard error.
func verifyFake(t *testing.T, m *fakeM, opts ...Option) ([]int, string) {
	t.Helper()
	var codes []int
	var stderr strings.Builder
	// Goroutines of the test binary (other tests' leftovers) are not the
	// fake's.
	opts = append([]Option{IgnoreGoroutines(goleak.IgnoreCurrent())}, opts...)
	verifyTestMain(m, func(code int) { codes = append(codes, code) }, &stderr, opts...)
	return codes, stderr.String()
}

func TestVerifyTestMainReportsLeftGoroutines(t *testing.T) {
	m := newFakeM(0, true)
	defer close(m.release)
	codes, stderr := verifyFake(t, m)
	t.Logf("stderr:\n%s", stderr)
	require.Len(t, codes, 1)
	assert.NotZero(t, codes[0])
	assert.Contains(t, stderr, "left 1 goroutine(s) running")
	assert.Regexp(t, `1 × created by github.com/heapslope/leaktest.\(\*fakeM\).Run at verify_test.go:\d+, blocked in chan receive in github.com/heapslope/leaktest.\(\*fakeM\).wait`, stderr)
}

func TestVerifyTestMainPassesClean(t *testing.T) {
	m := newFakeM(0, false)
	codes, stderr := verifyFake(t, m)
	assert.Equal(t, []int{0}, codes)
	assert.Empty(t, stderr)
}

func TestVerifyTestMainKeepsFailureWithoutCheck(t *testing.T) {
	m := newFakeM(1, true) // leaks too: not reported, the tests failed
	defer close(m.release)
	codes, stderr := verifyFake(t, m)
	assert.Equal(t, []int{1}, codes)
	assert.Empty(t, stderr)
}

func TestVerifyTestMainIgnoresGoroutines(t *testing.T) {
	m := newFakeM(0, true)
	defer close(m.release)
	codes, stderr := verifyFake(t, m, IgnoreGoroutines(goleak.IgnoreTopFunction("github.com/heapslope/leaktest.(*fakeM).wait")))
	assert.Equal(t, []int{0}, codes)
	assert.Empty(t, stderr)
}

func TestVerifyTestMainInvalidOption(t *testing.T) {
	m := newFakeM(0, false)
	codes, stderr := verifyFake(t, m, nil)
	assert.Equal(t, []int{1}, codes)
	assert.Contains(t, stderr, "leaktest: invalid option: nil Option")
	assert.False(t, m.ran, "tests ran despite an invalid option")

	// The environment is the measurements' (each fails on a wrong
	// value): it does not stop the tests.
	t.Setenv("LEAKTEST_BUDGET", "5")
	m = newFakeM(0, false)
	codes, stderr = verifyFake(t, m)
	assert.Equal(t, []int{0}, codes)
	assert.Empty(t, stderr)
	assert.True(t, m.ran)

	// An option goleak.Find refuses is reported in goleak's words.
	m = newFakeM(0, false)
	codes, stderr = verifyFake(t, m, IgnoreGoroutines(goleak.Cleanup(func(int) {})))
	assert.Equal(t, []int{1}, codes)
	assert.Contains(t, stderr, "Cleanup can only be passed")
}
