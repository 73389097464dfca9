package leaktest

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for every parser and round trip a user's input reaches.
// Their seed corpora live in testdata/fuzz; `go test` runs the seeds,
// `go test -fuzz FuzzX` explores.

func FuzzEnvironment(f *testing.F) {
	f.Add("5s", "2", "1", "0")
	f.Add("", "", "", "")
	f.Add("-1ms", "NaN", "yes", "2")
	f.Add("1e3h", "1e309", "true", "false")
	f.Fuzz(func(t *testing.T, budget, scale, update, strict string) {
		vars := map[string]string{envBudget: budget, envLimitScale: scale, envBaselineUpdate: update, envBaselineStrict: strict}
		e, err := readEnv(func(k string) string { return vars[k] })
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "leaktest: LEAKTEST_") {
				t.Fatalf("error does not name the variable: %q", msg)
			}
			return
		}
		if budget != "" && e.budget <= 0 {
			t.Fatalf("budget %q accepted as %v", budget, e.budget)
		}
		if !(e.limitScale > 0) || math.IsInf(e.limitScale, 0) {
			t.Fatalf("scale %q accepted as %v", scale, e.limitScale)
		}
	})
}

func FuzzOptions(f *testing.F) {
	f.Add(int64(200), int64(10), int64(time.Second), int64(time.Minute), "heap", 4.0, "figures", 1.0)
	f.Add(int64(-1), int64(-1), int64(0), int64(-5), "memory", -1.0, "", math.NaN())
	f.Add(int64(1), int64(0), int64(1), int64(1), "figures", math.Inf(1), "heap", 0.0)
	f.Fuzz(func(t *testing.T, iters, warm, budget, timeout int64, res string, limit float64, gauge string, glimit float64) {
		c := newConfig(false, []Option{
			Iterations(int(iters)), Warmup(int(warm)), Budget(time.Duration(budget)), Timeout(time.Duration(timeout)),
			Track(gauge, func() float64 { return 0 }, glimit), Limit(Resource(res), limit),
		})
		if c.err != nil {
			if !strings.HasPrefix(c.err.Error(), "leaktest: invalid option: ") {
				t.Fatalf("unlabelled error %q", c.err)
			}
			return
		}
		// Accepted: every setting is in range.
		if c.iterations < 1 || c.warmup < 0 || c.budget <= 0 || c.timeout <= 0 {
			t.Fatalf("out-of-range config accepted: %+v", c)
		}
		for r, l := range c.limits {
			if !(l >= 0) || math.IsInf(l, 0) {
				t.Fatalf("limit %s = %v accepted", r, l)
			}
		}
	})
}

func FuzzReportJSON(f *testing.F) {
	f.Add("heap", 24.5, 0.5, 4.0, "1 × created by x", 1024, 3072, "note", 3.0, 7.0)
	f.Add("", 0.0, 0.0, 0.0, "", 0, 0, "", 0.0, 0.0)
	f.Add("figures\x00\"<>", -1e300, 1e-300, 1e300, "\xff", -1, 1<<30, "ü", math.Copysign(0, -1), 1e10)
	f.Fuzz(func(t *testing.T, res string, per, unc, limit float64, detail string, warm, iters int, note string, v0, v1 float64) {
		for _, v := range []float64{per, unc, limit, v0, v1} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return // JSON has no such numbers; reports never hold them
			}
		}
		if !utf8.ValidString(res) || !utf8.ValidString(detail) || !utf8.ValidString(note) {
			return // encoding/json replaces invalid UTF-8: no exact round trip by design
		}
		rep := &Report{
			Findings: []Finding{{Resource: Resource(res), PerIteration: per, Uncertainty: unc, Limit: limit, Detail: detail,
				Sites: []Site{{Function: "f", File: "f.go", Line: warm, Stack: []string{detail}, BytesPerCall: per, Share: unc}}}},
			Notes:      []string{note},
			Warmup:     warm,
			Iterations: iters,
			Series:     []Series{{Resource: Resource(res), Calls: []int{0, iters}, Values: []float64{v0, v1}, PerIteration: per}},
			Elapsed:    time.Duration(iters),
			Files:      []string{detail},
		}
		data, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(&back)
		if string(again) != string(data) {
			t.Fatalf("round trip changed the report:\n%s\n%s", data, again)
		}
		_ = back.String() // renders whatever it holds
	})
}

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"TestX/sub case", "..", "", "a/../../b", "\x00\xff", strings.Repeat("ü", 300), "CON", "x:y*z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s := safeName(name)
		if s == "" || s == "." || s == ".." {
			t.Fatalf("safeName(%q) = %q", name, s)
		}
		if strings.ContainsAny(s, "/\\:*?\"<>| \x00") {
			t.Fatalf("safeName(%q) = %q keeps a separator or reserved character", name, s)
		}
		if len(s) > 200 {
			t.Fatalf("safeName(%q) is %d bytes", name, len(s))
		}
		if safeName(s) != s {
			t.Fatalf("safeName is not idempotent on %q", s)
		}
	})
}

// Whatever a go.mod's module line says, the package's folder stays below
// the report directory.
func FuzzImportPath(f *testing.F) {
	for _, s := range []string{"module example.com/x", "module \"../../etc\"", "module /abs // c", "module a\\..\\..\\b", "module C:/x", "module (\n\tx\n)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, gomod string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
		// Below the report directory: relative, and no element climbs.
		// (Not filepath.IsLocal, which on Windows also refuses names
		// such as NUL that module paths cannot hold.)
		p := importPath(dir)
		if filepath.IsAbs(p) || filepath.VolumeName(p) != "" || p != "" && os.IsPathSeparator(p[0]) {
			t.Fatalf("importPath for %q = %q, not relative", gomod, p)
		}
		for _, e := range strings.Split(filepath.ToSlash(p), "/") {
			if e == ".." {
				t.Fatalf("importPath for %q = %q climbs", gomod, p)
			}
		}
	})
}
