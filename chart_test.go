package leaktest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chartSeries makes n samples every `every` calls: base + slope·calls plus
// a deterministic wobble, as a real measurement looks.
func chartSeries(r Resource, n, every int, base, slope, wobble, per, unc float64) Series {
	s := Series{Resource: r, PerIteration: per, Uncertainty: unc}
	for i := 0; i < n; i++ {
		c := i * every
		s.Calls = append(s.Calls, c)
		s.Values = append(s.Values, base+slope*float64(c)+wobble*math.Sin(float64(i)*2.3))
	}
	return s
}

func leakyReport() *Report {
	heap := chartSeries(Heap, 48, 1000, 3<<20, 1045, 20<<10, 1045, 3)
	heap.Values[0], heap.Values[1] = 1<<20, 2<<20 // warm-up ramp
	return &Report{
		Findings: []Finding{
			{Resource: Heap, PerIteration: 1045, Uncertainty: 3, Limit: 4},
			{Resource: Goroutines, PerIteration: 0.001, Uncertainty: 0.0002, Limit: 0},
		},
		Warmup: 4000, Iterations: 43000,
		Series: []Series{
			heap,
			chartSeries(RSS, 48, 1000, 40<<20, 0, 64<<10, 0, 12),
			chartSeries(Goroutines, 48, 1000, 4, 0.001, 0, 0.001, 0.0002),
			chartSeries(FDs, 48, 1000, 7, 0, 0, 0, 0),
			chartSeries(`a<b&"c"`, 48, 1000, 0.5, 0, 0.01, 0, 0),
		},
	}
}

// wellFormed decodes every token, which fails on any unescaped text or
// unbalanced element.
func wellFormed(t *testing.T, svg []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err, "SVG is not well-formed XML:\n%s", svg)
		if el, ok := tok.(xml.StartElement); ok {
			for _, a := range el.Attr { // a NaN coordinate draws nothing
				require.False(t, strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf"),
					"<%s %s=%q>", el.Name.Local, a.Name.Local, a.Value)
			}
		}
	}
}

func chart(t *testing.T, rep *Report) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, writeChart(&b, rep))
	wellFormed(t, b.Bytes())
	if dir := os.Getenv("LEAKTEST_CHART_DIR"); dir != "" { // to look at them
		name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".svg"), b.Bytes(), 0o644))
	}
	return b.String()
}

func TestChartLeaky(t *testing.T) {
	svg := chart(t, leakyReport())
	for _, want := range []string{
		"leaktest: 2 leak(s)", "43000 calls judged after 4000 warm-up calls",
		"LEAK +1.02 KiB/call ± 3 B (limit 4 B)", "LEAK +0.001/call ± 0.0002 (limit 0)",
		"no leak: +0 B/call ± 12 B", "no leak: +0/call ± 0",
		"warm-up", ">calls<", ">bytes<", ">count<", "10k", "MiB",
		"a&lt;b&amp;&#34;c&#34;",
	} {
		assert.True(t, strings.Contains(svg, want), "missing %q", want)
	}
	assert.False(t, strings.Contains(svg, `a<b`), "unescaped name")
	assert.Equal(t, 5, strings.Count(svg, "<polyline points=")-1) // one is the legend's
}

func TestChartClean(t *testing.T) {
	rep := leakyReport()
	rep.Findings = nil
	svg := chart(t, rep)
	assert.True(t, strings.Contains(svg, "leaktest: no leak"))
	assert.True(t, strings.Contains(svg, "no leak: +1.02 KiB/call ± 3 B"))
	assert.False(t, strings.Contains(svg, "LEAK"))
}

func TestChartEdgeCases(t *testing.T) {
	nan := math.NaN()
	for name, rep := range map[string]*Report{
		"nil":         nil,
		"empty":       {},
		"no samples":  {Series: []Series{{Resource: Heap}}},
		"one sample":  {Series: []Series{{Resource: Heap, Calls: []int{0}, Values: []float64{5 << 20}}}},
		"flat":        {Warmup: 10, Series: []Series{{Resource: FDs, Calls: []int{0, 10, 20}, Values: []float64{3, 3, 3}}}},
		"flat zero":   {Series: []Series{{Resource: Heap, Calls: []int{0, 10, 20}, Values: []float64{0, 0, 0}}}},
		"all NaN":     {Series: []Series{{Resource: RSS, Calls: []int{0, 10}, Values: []float64{nan, nan}}}},
		"some NaN":    {Warmup: 10, Series: []Series{{Resource: Goroutines, Calls: []int{0, 10, 20, 30}, Values: []float64{1, nan, 2, math.Inf(1)}, PerIteration: nan}}},
		"huge":        {Series: []Series{{Resource: Heap, Calls: []int{0, 1, 2}, Values: []float64{-math.MaxFloat64, 0, math.MaxFloat64}, PerIteration: math.MaxFloat64}}},
		"huge flat":   {Series: []Series{{Resource: "gauge", Calls: []int{0, 1e9}, Values: []float64{1e300, 1e300}}}},
		"ragged":      {Series: []Series{{Resource: Heap, Calls: []int{0, 5, 10}, Values: []float64{1}}}},
		"warmup only": {Warmup: 100, Iterations: 0, Series: []Series{{Resource: Heap, Calls: []int{0, 50}, Values: []float64{1, 2}}}},
		"bad utf8":    {Series: []Series{{Resource: "\xff\x00]]>", Calls: []int{0}, Values: []float64{1}}}},
	} {
		t.Run(name, func(t *testing.T) {
			svg := chart(t, rep)
			if rep == nil || len(rep.Series) == 0 {
				assert.True(t, strings.Contains(svg, "no series recorded"))
			}
		})
	}
}

func TestChartDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	require.NoError(t, writeChart(&a, leakyReport()))
	require.NoError(t, writeChart(&b, leakyReport()))
	assert.Equal(t, a.String(), b.String())
}

func TestChartAxes(t *testing.T) {
	x := chartXAxis(0, 47000)
	assert.Equal(t, []string{"0", "10k", "20k", "30k", "40k"}, labels(x))
	assert.Equal(t, []string{"0", "500", "1000", "1500"}, labels(chartXAxis(0, 1999)))
	// A flat 3 MiB heap is labelled in KiB, not as five "3 MiB".
	y := chartYAxis(Heap, 3<<20, 3<<20+1000)
	assert.Equal(t, []string{"3071.5 KiB", "3072.0 KiB", "3072.5 KiB", "3073.0 KiB", "3073.5 KiB"}, labels(y))
	// A flat count is padded to whole goroutines around it.
	assert.Equal(t, []string{"1", "2", "3"}, labels(chartYAxis(Goroutines, 2, 2)))
}

func labels(a chartAxis) []string {
	var ls []string
	for _, t := range a.ticks() {
		ls = append(ls, a.label(t))
	}
	return ls
}

// TestChartSample writes the chart of a real measurement for a person to
// look at: LEAKTEST_CHART=/tmp/leaktest-chart.svg go test -run ChartSample
func TestChartSample(t *testing.T) {
	path := os.Getenv("LEAKTEST_CHART")
	if path == "" {
		t.Skip("set LEAKTEST_CHART to a file name")
	}
	var kept [][]byte
	entries := 0.0
	rep, err := Measure(func() {
		kept = append(kept, make([]byte, 1000))
		entries += 0.5
	}, Track(`cache<entries>`, func() float64 { return entries }, 0))
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, writeChart(&b, rep))
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
	t.Log(rep)
}
