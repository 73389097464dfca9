package leaktest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// Chart geometry in pixels: a header, then per series a panel of title,
// plot and x labels; the left margin holds the y labels and unit.
const (
	chartW, chartHeadH, chartPanelH = 760, 60, 224
	chartLeft, chartRight           = 84, 24
	chartPlotY, chartPlotH          = 30, 150 // plot top in the panel, height
)

// chartColors is the palette of a panel: leaks red, clean series blue
// with a green fit, so a reader finds the leak before reading text.
type chartColors struct{ title, line, fit, bg string }

var (
	chartLeak  = chartColors{"#b71c1c", "#d32f2f", "#7f0000", "#fff6f6"}
	chartClean = chartColors{"#1b5e20", "#1565c0", "#2e7d32", "#ffffff"}
)

// writeChart renders rep as a standalone SVG 1.1 image: a header with the
// verdict, then one panel per series with its samples, the warm-up region
// and the fitted growth over the judged calls. The output depends only on
// rep, so it can be compared byte for byte.
func writeChart(w io.Writer, rep *Report) error {
	if rep == nil {
		rep = &Report{}
	}
	h := chartHeadH + max(len(rep.Series), 1)*chartPanelH
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="11" fill="#333">
<rect width="%d" height="%d" fill="#fff"/>
`, chartW, h, chartW, h, chartW, h)
	verdict, color := "leaktest: no leak", chartClean.title
	if n := len(rep.Findings); n > 0 {
		verdict, color = fmt.Sprintf("leaktest: %d leak(s)", n), chartLeak.title
	}
	fmt.Fprintf(&b, `<text x="16" y="26" font-size="17" font-weight="bold" fill="%s">%s</text>
<text x="16" y="46" font-size="12">%d calls judged after %d warm-up calls</text>
`, color, verdict, rep.Iterations, rep.Warmup)
	// Legend, right-aligned in the header, so the two line styles need no
	// explanation in each panel.
	lx := chartW - chartRight - 250
	fmt.Fprintf(&b, `<g font-size="11"><polyline points="%d,42 %d,42" stroke="#555" stroke-width="1.5" fill="none"/><circle cx="%d" cy="42" r="2.5" fill="#555"/><text x="%d" y="46">samples</text>
<line x1="%d" y1="42" x2="%d" y2="42" stroke="#555" stroke-width="4" stroke-opacity="0.55" stroke-dasharray="8,4"/><text x="%d" y="46">fitted growth (judged calls)</text></g>
`, lx, lx+20, lx+10, lx+26, lx+84, lx+104, lx+110)
	if len(rep.Series) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">no series recorded</text>
`, chartW/2, chartHeadH+chartPanelH/2)
	}
	for i := range rep.Series {
		writePanel(&b, rep, i, chartHeadH+i*chartPanelH)
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// writePanel draws series i with its top edge at y = top.
func writePanel(b *bytes.Buffer, rep *Report, i, top int) {
	s := rep.Series[i]
	n := min(len(s.Calls), len(s.Values))
	cols, slope := chartClean, s.PerIteration
	verdict := fmt.Sprintf("no leak: %s/call ± %s", signed(s.Resource, slope), formatValue(s.Resource, s.Uncertainty))
	if f := rep.finding(s.Resource); f != nil {
		cols, slope = chartLeak, f.PerIteration
		verdict = fmt.Sprintf("LEAK %s/call ± %s (limit %s)", signed(f.Resource, f.PerIteration),
			formatValue(f.Resource, f.Uncertainty), formatValue(f.Resource, f.Limit))
	}
	note := ""
	if s.Resource == RSS {
		// RSS is judged outside mapped files and the Go runtime's
		// memory: a line with that slope through total RSS would
		// contradict the samples.
		note = ` <tspan font-size="11" fill="#777">(judged outside mapped files and Go's memory; fit not drawn)</tspan>`
	}
	px, py, pw, ph := float64(chartLeft), float64(top+chartPlotY), float64(chartW-chartLeft-chartRight), float64(chartPlotH)
	fmt.Fprintf(b, `<g><text x="%.0f" y="%d" font-size="13" fill="%s"><tspan font-weight="bold">%s</tspan> — %s%s</text>
<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="%s" stroke="#999"/>
<clipPath id="clip%d"><rect x="%.0f" y="%.0f" width="%.0f" height="%.0f"/></clipPath>
`, px, top+20, cols.title, chartEsc(string(s.Resource)), chartEsc(verdict), note, px, py, pw, ph, cols.bg, i, px-4, py-4, pw+8, ph+8) // room for dots on the edge

	// The x axis starts at zero calls so panels line up.
	xlo, xhi := 0.0, math.Max(float64(rep.Warmup), 1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for k := 0; k < n; k++ {
		xlo, xhi = math.Min(xlo, float64(s.Calls[k])), math.Max(xhi, float64(s.Calls[k]))
		if v := s.Values[k]; chartFinite(v) {
			ylo, yhi = math.Min(ylo, v), math.Max(yhi, v)
		}
	}
	X := func(c float64) float64 { return px + chartFrac(c, xlo, xhi)*pw }
	ya := chartYAxis(s.Resource, ylo, yhi)
	Y := func(v float64) float64 { return py + (1-chartFrac(v, ya.lo, ya.hi))*ph }

	if w := float64(rep.Warmup); w > xlo {
		x1 := X(math.Min(w, xhi))
		fmt.Fprintf(b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="#e4e4e4"/>
`, px, py, x1-px, ph)
		// Centre the label in the region when it fits, else start it there.
		anchor, lx := "middle", (px+x1)/2
		if x1-px < 60 {
			anchor, lx = "start", px+4
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="%s" fill="#777">warm-up</text>
`, lx, py+14, anchor)
	}
	for _, t := range ya.ticks() {
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#000" stroke-opacity="0.1"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>
`, px, Y(t), px+pw, Y(t), px-6, Y(t)+4, chartEsc(ya.label(t)))
	}
	xa := chartXAxis(xlo, xhi)
	for _, t := range xa.ticks() {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#999"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>
`, X(t), py+ph, X(t), py+ph+4, X(t), py+ph+16, chartEsc(xa.label(t)))
	}
	unit := "count"
	if s.Resource == Heap || s.Resource == RSS {
		unit = "bytes"
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="12" fill="#555">calls</text>
<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle" font-size="12" fill="#555">%s</text>
<g clip-path="url(#clip%d)">
`, px+pw/2, py+ph+34, py+ph/2, unit, i)

	// Fitted growth: slope from the judge, intercept the median of the
	// judged residuals, so the line runs through the data it describes.
	var res []float64
	for k := 0; k < n; k++ {
		if c, v := float64(s.Calls[k]), s.Values[k]; c >= float64(rep.Warmup) && chartFinite(v) {
			res = append(res, v-slope*c)
		}
	}
	if len(res) > 0 && s.Resource != RSS && chartFinite(slope) {
		sort.Float64s(res)
		c0 := math.Max(float64(rep.Warmup), xlo)
		b0 := median(res)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="4" stroke-opacity="0.55" stroke-dasharray="8,4"/>
`, X(c0), Y(b0+slope*c0), X(xhi), Y(b0+slope*xhi), cols.fit)
	}
	var pts, dots strings.Builder
	for k := 0; k < n; k++ {
		if !chartFinite(s.Values[k]) {
			continue
		}
		x, y := X(float64(s.Calls[k])), Y(s.Values[k])
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="2.2"/>`, x, y)
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-linejoin="round"/>
<g fill="%s">%s</g>
`, strings.TrimSpace(pts.String()), cols.line, cols.line, dots.String())
	if pts.Len() == 0 {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#777">no samples</text>
`, px+pw/2, py+ph/2)
	}
	b.WriteString("</g></g>\n")
}

// chartFrac is v's position in [lo, hi] as 0–1. Halving first keeps the
// difference finite for values near ±MaxFloat64; the clamp keeps a steep
// fit line's far end a short number, with no visible change after clipping.
func chartFrac(v, lo, hi float64) float64 {
	f := (v/2 - lo/2) / (hi/2 - lo/2)
	if math.IsNaN(f) {
		return 0.5
	}
	return math.Max(-1e3, math.Min(1e3, f))
}

// chartAxis is a linear axis with ticks every step from lo, labelled as
// value/unit with a fixed number of decimals.
type chartAxis struct {
	lo, hi, step, unit float64
	decimals           int
	suffix             string
}

func (a chartAxis) ticks() []float64 {
	var ts []float64
	// Bounded so that a step lost in float rounding cannot loop forever.
	for k := 0; a.step > 0 && k <= 20; k++ {
		t := a.lo + float64(k)*a.step
		if t > a.hi+a.step*1e-6 {
			break
		}
		ts = append(ts, t)
	}
	return ts
}

func (a chartAxis) label(v float64) string {
	v /= a.unit
	if math.Abs(v) >= 1e7 {
		return fmt.Sprintf("%.3g%s", v, a.suffix)
	}
	if v == 0 {
		return "0" // not "0k" or "-0"
	}
	return fmt.Sprintf("%.*f%s", a.decimals, v, a.suffix)
}

// chartNice rounds raw up to 1, 2 or 5 times a power of ten.
func chartNice(raw float64) float64 {
	if !(raw > 0) || !chartFinite(raw) {
		return 0
	}
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*e >= raw*(1-1e-9) {
			return m * e
		}
	}
	return 10 * e
}

func chartDecimals(step float64) int {
	return max(0, int(-math.Floor(math.Log10(step)+1e-9)))
}

// chartXAxis labels calls as 500, 1500 or 10k, 20k: short enough to never touch.
func chartXAxis(lo, hi float64) chartAxis {
	a := chartAxis{lo: lo, hi: hi, step: math.Max(1, chartNice((hi-lo)/7)), unit: 1}
	switch {
	case a.step >= 1e6:
		a.unit, a.suffix = 1e6, "M"
	case a.step >= 1e3:
		a.unit, a.suffix = 1e3, "k"
	}
	a.decimals = chartDecimals(a.step / a.unit)
	a.lo = math.Ceil(lo/a.step) * a.step
	return a
}

// chartYAxis pads [lo, hi] and snaps it to whole steps. Bytes use the binary
// unit of the largest value unless the step is too fine for it, so a flat
// 3 MiB heap reads 3071.5 KiB, 3072.0 KiB rather than 3 MiB, 3 MiB.
func chartYAxis(r Resource, lo, hi float64) chartAxis {
	if lo > hi { // no finite value
		lo, hi = 0, 1
	}
	pad := (hi/2 - lo/2) * 0.1
	if pad == 0 {
		pad = math.Max(math.Abs(lo)*0.05, 1)
	}
	plo := lo - pad
	if lo >= 0 && plo < 0 {
		plo = 0 // resources are not negative; keep zero as the floor
	}
	// Clamped so that values near ±MaxFloat64 keep a finite axis.
	lo, hi = math.Max(plo, -math.MaxFloat64), math.Min(hi+pad, math.MaxFloat64)
	a := chartAxis{lo: lo, hi: hi, unit: 1}
	raw := (hi/2 - lo/2) / 2 // a quarter of the range: about five ticks
	if r == Heap || r == RSS {
		units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
		k, m := 0, math.Max(math.Abs(lo), math.Abs(hi))
		for k < len(units)-1 && m >= math.Pow(1024, float64(k+1)) {
			k++
		}
		for k > 0 && raw < math.Pow(1024, float64(k))/100 {
			k--
		}
		a.unit, a.suffix = math.Pow(1024, float64(k)), " "+units[k]
	}
	if a.step = chartNice(raw/a.unit) * a.unit; a.step == 0 || !chartFinite(a.step) {
		return a // range too wide for ticks: draw the data only
	}
	if r == Heap || r == RSS || r == Goroutines || r == FDs {
		a.step = math.Max(a.step, 1) // no half goroutines or bytes
	}
	a.decimals = chartDecimals(a.step / a.unit)
	if slo, shi := math.Floor(lo/a.step)*a.step, math.Ceil(hi/a.step)*a.step; chartFinite(slo) && chartFinite(shi) {
		a.lo, a.hi = slo, shi
	}
	return a
}

func chartFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// chartEsc escapes text for XML content and attributes; resource names
// come from the user.
func chartEsc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
