package leaktest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Baseline makes Run compare each resource's growth per call with the one
// recorded for the test in path, and fail when it grew beyond a tolerance
// — even below the limit: "this test kept 0 B per call last week and 200 B
// now". The file is small, sorted JSON, meant to be committed:
//
//	{
//	  "TestRender": {"fds": 0, "goroutines": 0, "heap": 0, "rss": 0}
//	}
//
// Baselines are Run's: Measure, which has no test name to key an entry
// by, returns an error for this option and ignores LEAKTEST_BASELINE.
//
// LEAKTEST_BASELINE=path sets it for every test. With
// LEAKTEST_BASELINE_UPDATE=1, Run records what it measures instead of
// comparing. A test missing from the file is logged, not failed, unless
// LEAKTEST_BASELINE_STRICT=1. The tolerance is the measurement's own
// uncertainty plus 10% of the recorded value plus 16 B (heap), 1 KiB (rss)
// or 0.01 (counts) per call.
func Baseline(path string) Option {
	return optionFunc(func(c *config) {
		if path == "" {
			c.fail("Baseline(\"\"): empty path")
			return
		}
		c.baseline, c.baselineSet = path, true
	})
}

// baselines holds, per test name, each resource's recorded growth per call.
type baselines map[string]map[Resource]float64

// baselineMu serialises updates of baseline files within the process.
var baselineMu sync.Mutex

func tolerance(r Resource, recorded float64) float64 {
	abs := 0.01
	switch r {
	case Heap:
		abs = 16
	case RSS:
		abs = 1024
	}
	return abs + 0.1*math.Abs(recorded)
}

// checkBaseline compares rep with the baseline file, or records it.
func checkBaseline(t testing.TB, rep *Report, cfg *config) {
	t.Helper()
	if cfg.baseline == "" || rep == nil {
		return
	}
	baselineMu.Lock()
	defer baselineMu.Unlock()
	all, err := readBaselines(cfg.baseline)
	if err != nil {
		assert.Fail(t, "leaktest could not read the baseline", err.Error())
		return
	}
	name := t.Name()
	if cfg.env.baselineUpdate {
		entry := map[Resource]float64{}
		for _, s := range rep.Series {
			if !math.IsNaN(s.PerIteration) && !math.IsInf(s.PerIteration, 0) {
				entry[s.Resource] = roundGrowth(s.Resource, s.PerIteration)
			}
		}
		all[name] = entry
		if err := writeBaselines(cfg.baseline, all); err != nil {
			assert.Fail(t, "leaktest could not write the baseline", err.Error())
			return
		}
		t.Logf("leaktest: recorded %s in %s", name, cfg.baseline)
		return
	}
	entry, ok := all[name]
	if !ok {
		msg := fmt.Sprintf("leaktest: %s has no entry in baseline %s (LEAKTEST_BASELINE_UPDATE=1 records it)", name, cfg.baseline)
		if cfg.env.baselineStrict {
			assert.Fail(t, msg)
		} else {
			t.Logf("%s", msg)
		}
		return
	}
	for _, s := range rep.Series {
		was, ok := entry[s.Resource]
		if !ok {
			continue
		}
		tol := tolerance(s.Resource, was) + s.Uncertainty
		if s.PerIteration-was > tol {
			assert.Fail(t, regression(s, was, tol, cfg.baseline))
		}
	}
}

// regression is the labelled block for a resource that grew past its
// baseline.
func regression(s Series, was, tol float64, file string) string {
	r := s.Resource
	return strings.Join([]string{
		fmt.Sprintf("%s regressed: %s per call, was %s", r, signed(r, s.PerIteration), signed(r, was)),
		fmt.Sprintf("%-12s%s ± %s", "per call:", signed(r, s.PerIteration), formatValue(r, s.Uncertainty)),
		fmt.Sprintf("%-12s%s per call (%s)", "baseline:", signed(r, was), file),
		fmt.Sprintf("%-12s%s per call", "tolerance:", formatValue(r, tol)),
	}, "\n")
}

// roundGrowth keeps a recorded value short, so the file diffs cleanly:
// whole bytes, hundredths of a count.
func roundGrowth(r Resource, v float64) float64 {
	if r == Heap || r == RSS {
		v = math.Round(v)
	} else {
		v = math.Round(v*100) / 100
	}
	return v + 0 // -0 (a slightly negative slope, rounded) is recorded as 0
}

func readBaselines(path string) (baselines, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return baselines{}, nil
	}
	if err != nil {
		return nil, err
	}
	all := baselines{}
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return all, nil
}

// writeBaselines writes one test a line, sorted, through a temporary file
// so that a reader never sees half a file.
func writeBaselines(path string, all baselines) error {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("{\n")
	for i, n := range names {
		key, _ := json.Marshal(n)
		val, err := json.Marshal(all[n]) // map keys come out sorted
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  %s: %s", key, val)
		if i < len(names)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	tmp, err := os.CreateTemp(filepath.Dir(path), ".leaktest-baseline-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
