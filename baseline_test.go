package leaktest

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvironment(t *testing.T) {
	for _, tc := range []struct {
		vars  map[string]string
		want  string // error, or "" for none
		check func(*testing.T, *config)
	}{
		{vars: map[string]string{"LEAKTEST_BUDGET": "5s"}, check: func(t *testing.T, c *config) {
			assert.Equal(t, 5*time.Second, c.budget)
		}},
		{vars: map[string]string{"LEAKTEST_BUDGET": "soon"}, want: `leaktest: LEAKTEST_BUDGET="soon": want a positive duration such as 5s`},
		{vars: map[string]string{"LEAKTEST_BUDGET": "-1s"}, want: `LEAKTEST_BUDGET="-1s"`},
		{vars: map[string]string{"LEAKTEST_LIMIT_SCALE": "2"}, check: func(t *testing.T, c *config) {
			assert.Equal(t, 8.0, c.limits[Heap])
			assert.Equal(t, 1024.0, c.limits[RSS])
			assert.Equal(t, 0.0, c.limits[Goroutines])
		}},
		{vars: map[string]string{"LEAKTEST_LIMIT_SCALE": "0"}, want: `leaktest: LEAKTEST_LIMIT_SCALE="0": want a number > 0 such as 2`},
		{vars: map[string]string{"LEAKTEST_LIMIT_SCALE": "NaN"}, want: `LEAKTEST_LIMIT_SCALE="NaN"`},
		{vars: map[string]string{"LEAKTEST_LIMIT_SCALE": "+Inf"}, want: `LEAKTEST_LIMIT_SCALE="+Inf"`},
		{vars: map[string]string{"LEAKTEST_BASELINE_UPDATE": "yes"}, want: `leaktest: LEAKTEST_BASELINE_UPDATE="yes": want 1 or 0`},
		{vars: map[string]string{"LEAKTEST_BASELINE_STRICT": "2"}, want: `LEAKTEST_BASELINE_STRICT="2"`},
		{vars: map[string]string{"LEAKTEST_REPORT_DIR": "/tmp/x", "LEAKTEST_BASELINE": "b.json", "LEAKTEST_BASELINE_UPDATE": "1"}, check: func(t *testing.T, c *config) {
			assert.Equal(t, "/tmp/x", c.reportDir)
			assert.Equal(t, "b.json", c.baseline)
			assert.True(t, c.env.baselineUpdate)
		}},
	} {
		for k, v := range tc.vars {
			t.Setenv(k, v)
		}
		c := newConfig(false, nil)
		if tc.want != "" {
			require.Error(t, c.err, "%v", tc.vars)
			assert.Contains(t, c.err.Error(), tc.want)
		} else {
			require.NoError(t, c.err)
			tc.check(t, c)
		}
		for k := range tc.vars {
			os.Unsetenv(k)
		}
	}

	// Options in a test win over the environment's defaults; the scale
	// applies to limits set by options too.
	t.Setenv("LEAKTEST_BUDGET", "5s")
	t.Setenv("LEAKTEST_LIMIT_SCALE", "3")
	t.Setenv("LEAKTEST_REPORT_DIR", "/tmp/env")
	c := newConfig(false, []Option{Budget(time.Second), Limit(Heap, 10), ReportDir("/tmp/opt")})
	require.NoError(t, c.err)
	assert.Equal(t, time.Second, c.budget)
	assert.Equal(t, 30.0, c.limits[Heap])
	assert.Equal(t, "/tmp/opt", c.reportDir)

	// A measurement fails with the variable's name.
	t.Setenv("LEAKTEST_BUDGET", "x")
	_, err := Measure(func() {})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "LEAKTEST_BUDGET")
}

func TestBaselineGate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "leaktest-baseline.json")
	defer func() { chain = nil }()
	leak48 := func() { chain = &chain48{next: chain} }
	opts := []Option{Limit(Heap, 1024), Baseline(file)} // 48 B per call passes the limit

	// Update mode records; the file is sorted and one test a line.
	t.Setenv("LEAKTEST_BASELINE_UPDATE", "1")
	for _, name := range []string{"TestB", "TestA"} {
		tb := &fakeTB{name: name}
		Run(tb, func() {}, opts...)
		require.False(t, tb.Failed(), "%v", tb.errors)
		assert.Contains(t, strings.Join(tb.logs, "\n"), "recorded "+name)
	}
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 4)
	assert.Regexp(t, `^  "TestA": \{"fds":0,"goroutines":0,"heap":0,"rss":-?\d+\},$`, lines[1])
	assert.True(t, strings.HasPrefix(lines[2], `  "TestB": {`))
	os.Unsetenv("LEAKTEST_BASELINE_UPDATE")

	// 0 B per call recorded, 48 now: below the limit, but a regression.
	tb := &fakeTB{name: "TestA"}
	Run(tb, leak48, opts...)
	require.Len(t, tb.errors, 1, "%v", tb.errors)
	// The estimate can be a fraction of a byte off (+48.1 B once in CI's
	// -race run of the whole package; not reproduced in 20 runs of this
	// test alone): the figures are checked within the 5% that
	// TestReportedGrowthIsWithin5Percent holds them to, the text around
	// them exactly.
	got := regexp.MustCompile(`heap regressed: \+(\S+) B per call, was \+0 B\s+` +
		`per call:   \+(\S+) B ± \S+ B\s+` +
		`baseline:   \+0 B per call \(` + regexp.QuoteMeta(file) + `\)\s+` +
		`tolerance:  (\S+) B per call`).FindStringSubmatch(tb.errors[0])
	require.NotNil(t, got, tb.errors[0])
	assert.Equal(t, got[1], got[2])
	perCall, err := strconv.ParseFloat(got[1], 64)
	require.NoError(t, err)
	assert.InEpsilon(t, 48, perCall, 0.05, got[0])
	tol, err := strconv.ParseFloat(got[3], 64)
	require.NoError(t, err)
	assert.InEpsilon(t, 16, tol, 0.05, got[0]) // 16 B + 10% of 0 B + the uncertainty

	// Record the leak, then improve: passes.
	t.Setenv("LEAKTEST_BASELINE_UPDATE", "1")
	Run(&fakeTB{name: "TestA"}, leak48, opts...)
	os.Unsetenv("LEAKTEST_BASELINE_UPDATE")
	chain = nil
	tb = &fakeTB{name: "TestA"}
	Run(tb, func() {}, opts...)
	assert.False(t, tb.Failed(), "%v", tb.errors)
	tb = &fakeTB{name: "TestA"}
	Run(tb, leak48, opts...)
	assert.False(t, tb.Failed(), "same growth as recorded: %v", tb.errors)

	// A test missing from the file is logged, or failed when strict.
	tb = &fakeTB{name: "TestNew"}
	Run(tb, func() {}, opts...)
	assert.False(t, tb.Failed())
	assert.Contains(t, strings.Join(tb.logs, "\n"), "TestNew has no entry in baseline")
	t.Setenv("LEAKTEST_BASELINE_STRICT", "1")
	tb = &fakeTB{name: "TestNew"}
	Run(tb, func() {}, opts...)
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "TestNew has no entry in baseline")

	// A corrupt file is a clear failure.
	require.NoError(t, os.WriteFile(file, []byte("{"), 0o644))
	tb = &fakeTB{name: "TestA"}
	Run(tb, func() {}, opts...)
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "leaktest could not read the baseline")
}

// A slope a little below zero rounds to 0, not -0, in the recorded file.
func TestBaselineRecordsNoNegativeZero(t *testing.T) {
	for _, r := range []Resource{Heap, Goroutines} {
		assert.False(t, math.Signbit(roundGrowth(r, -0.001)), r)
	}
}

// Measure has no test name to key a baseline entry by: the option is an
// error there, not silently ignored.
func TestBaselineIsForRun(t *testing.T) {
	_, err := Measure(func() {}, Baseline(filepath.Join(t.TempDir(), "b.json")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "leaktest: invalid option: Baseline(")
	assert.Contains(t, err.Error(), "is for Run")
}
