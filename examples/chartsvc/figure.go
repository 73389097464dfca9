package chartsvc

import (
	"image"
	"image/color"
	"image/png"
	"io"
	"sync"
)

// Figure is a chart being drawn: a canvas and its number in the figure
// registry. Like a matplotlib figure made with pyplot, it stays registered,
// and so alive, until Close.
type Figure struct {
	num    int
	canvas *image.Paletted
}

// pyplot is the figure registry: every figure drawn and not yet closed.
// It makes "the current figure" and "close all" possible, and it is why a
// figure nobody closes is never collected.
var pyplot = struct {
	sync.Mutex
	open map[int]*Figure
	next int
}{open: map[int]*Figure{}}

var palette = color.Palette{
	color.White,
	color.Gray{Y: 0x80}, // axes
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // the line, matplotlib's C0
}

// newFigure makes a blank w×h figure and registers it.
func newFigure(w, h int) *Figure {
	f := &Figure{canvas: &image.Paletted{
		Pix:     make([]uint8, w*h),
		Stride:  w,
		Rect:    image.Rect(0, 0, w, h),
		Palette: palette,
	}}
	pyplot.Lock()
	pyplot.next++
	f.num = pyplot.next
	pyplot.open[f.num] = f
	pyplot.Unlock()
	return f
}

// Close removes f from the registry, so that it can be collected.
func (f *Figure) Close() {
	pyplot.Lock()
	delete(pyplot.open, f.num)
	pyplot.Unlock()
}

// OpenFigures is the number of figures drawn and not closed: a gauge for
// leaktest.Track, as len(plt.get_fignums()) would be in Python.
func OpenFigures() int {
	pyplot.Lock()
	defer pyplot.Unlock()
	return len(pyplot.open)
}

// CloseAllFigures closes every open figure, like plt.close("all").
func CloseAllFigures() {
	pyplot.Lock()
	pyplot.open = map[int]*Figure{}
	pyplot.Unlock()
}

// Plot draws the axes and ys as a line scaled to fill the canvas.
func (f *Figure) Plot(ys []float64) {
	b := f.canvas.Rect
	const margin = 4
	x0, y0 := b.Min.X+margin, b.Max.Y-1-margin
	x1, y1 := b.Max.X-1-margin, b.Min.Y+margin
	f.line(x0, y0, x1, y0, 1)
	f.line(x0, y0, x0, y1, 1)
	if len(ys) < 2 {
		return
	}
	lo, hi := ys[0], ys[0]
	for _, y := range ys {
		lo, hi = min(lo, y), max(hi, y)
	}
	if hi == lo {
		hi = lo + 1
	}
	px := func(i int) int { return x0 + 1 + i*(x1-x0-1)/(len(ys)-1) }
	py := func(y float64) int { return y0 - 1 - int((y-lo)/(hi-lo)*float64(y0-1-y1)) }
	for i := 1; i < len(ys); i++ {
		f.line(px(i-1), py(ys[i-1]), px(i), py(ys[i]), 2)
	}
}

// line draws from (xa, ya) to (xb, yb) in colour c (Bresenham).
func (f *Figure) line(xa, ya, xb, yb int, c uint8) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := sign(xb-xa), sign(yb-ya)
	e := dx + dy
	for {
		f.canvas.SetColorIndex(xa, ya, c)
		if xa == xb && ya == yb {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			xa += sx
		}
		if e2 <= dx {
			e += dx
			ya += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// encoder reuses its compressor between charts: a fresh one allocates
// hundreds of KiB per image.
var encoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &bufferPool{}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() *png.EncoderBuffer {
	buf, _ := b.p.Get().(*png.EncoderBuffer)
	return buf
}

func (b *bufferPool) Put(buf *png.EncoderBuffer) { b.p.Put(buf) }

// WritePNG encodes the figure as a PNG.
func (f *Figure) WritePNG(w io.Writer) error {
	return encoder.Encode(w, f.canvas)
}
