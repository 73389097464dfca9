package leaktest

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
)

// Attribution: when the heap leaks, a confirmation window of calls runs
// with every allocation profiled (runtime.MemProfileRate = 1, restored
// after), and the in-use heap profile before and after the window is
// diffed per allocation stack. The clean path never pays for it.
const (
	attrBytes    = 4 << 20  // growth the window aims for
	attrMaxBytes = 64 << 20 // and never passes
	attrMinCalls = 16
	attrMaxCalls = 4096
	maxSites     = 5
)

// attributions counts the windows run, for tests.
var attributions atomic.Int64

// attribution is what the window found.
type attribution struct {
	calls     int
	sites     []Site
	base, end []byte // heap profiles (pprof format), when artifacts are on
}

// attribute runs the window. slope is the heap growth per call.
func (m *meter) attribute(slope float64, call float64) {
	w := attrMaxCalls
	if slope > 0 {
		w = int(math.Min(attrBytes/slope, attrMaxBytes/slope))
	}
	if call > 0 {
		w = min(w, int(float64(m.cfg.budget)/4/call)) // call in ns
	}
	w = max(1, min(max(w, attrMinCalls), attrMaxCalls))
	if slope*float64(w) > attrMaxBytes {
		w = max(1, int(attrMaxBytes/slope))
	}

	attributions.Add(1)
	prev := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = prev }()

	a := &attribution{calls: w}
	settleProfile()
	base := memRecords()
	if m.cfg.reportDir != "" {
		a.base = heapProfile()
	}
	if !m.callTo(m.calls + w) {
		return
	}
	settleProfile()
	end := memRecords()
	if m.cfg.reportDir != "" {
		a.end = heapProfile()
	}
	a.sites = diffSites(base, end, w)
	m.attr = a
}

// settleProfile makes the heap profile current: it publishes a cycle's
// allocations and frees only after later cycles complete.
func settleProfile() {
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
}

func memRecords() []runtime.MemProfileRecord {
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs := make([]runtime.MemProfileRecord, n+64)
		k, ok := runtime.MemProfile(recs, true)
		if ok {
			return recs[:k]
		}
		n = k
	}
}

func heapProfile() []byte {
	var b bytes.Buffer
	if p := pprof.Lookup("heap"); p != nil {
		p.WriteTo(&b, 0)
	}
	return b.Bytes()
}

// diffSites groups the in-use growth between two profiles by allocation
// site, largest first.
func diffSites(base, end []runtime.MemProfileRecord, calls int) []Site {
	type inuse struct{ bytes, objects int64 }
	before := make(map[[32]uintptr]inuse, len(base))
	for _, r := range base {
		before[r.Stack0] = inuse{r.InUseBytes(), r.InUseObjects()}
	}
	type grown struct {
		site           Site
		bytes, objects int64
	}
	bySite := map[string]*grown{}
	var total int64
	for _, r := range end {
		b := before[r.Stack0]
		db, do := r.InUseBytes()-b.bytes, r.InUseObjects()-b.objects
		if db <= 0 {
			continue
		}
		site, ok := siteOf(r.Stack())
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s\x00%s:%d", site.Function, site.File, site.Line)
		g := bySite[key]
		if g == nil {
			g = &grown{site: site}
			bySite[key] = g
		}
		g.bytes += db
		g.objects += do
		total += db
	}
	list := make([]*grown, 0, len(bySite))
	for _, g := range bySite {
		list = append(list, g)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].bytes != list[j].bytes {
			return list[i].bytes > list[j].bytes
		}
		return list[i].site.Function < list[j].site.Function
	})
	var sites []Site
	for _, g := range list {
		if len(sites) == maxSites {
			break
		}
		share := float64(g.bytes) / float64(total)
		if share < 0.01 {
			break
		}
		s := g.site
		s.BytesPerCall = float64(g.bytes) / float64(calls)
		s.ObjectsPerCall = float64(g.objects) / float64(calls)
		s.Share = share
		sites = append(sites, s)
	}
	return sites
}

// pkgPrefix is this package's prefix in function names.
var pkgPrefix = func() string {
	name := runtime.FuncForPC(reflect.ValueOf((*meter).callTo).Pointer()).Name()
	return name[:strings.Index(name, "(*meter)")]
}()

// harness reports whether a frame is leaktest's own (the measuring loop,
// Serve, the attribution itself): on every stack, never the site. The
// package's tests are not harness.
func harness(f runtime.Frame) bool {
	return strings.HasPrefix(f.Function, pkgPrefix) && !strings.HasSuffix(f.File, "_test.go")
}

// goroot is the directory of the standard library's sources as they
// appear in stacks ("" under -trimpath).
var goroot = func() string {
	pc := reflect.ValueOf(runtime.GC).Pointer()
	file, _ := runtime.FuncForPC(pc).FileLine(pc)
	if i := strings.LastIndex(file, "runtime/"); i >= 0 {
		return file[:i]
	}
	return ""
}()

// siteOf picks the site of an allocating stack: its innermost frame in
// the user's code; failing that (a leak inside the standard library, such
// as a timer), its innermost frame outside the runtime. The stack kept is
// the frames outside the runtime and the harness.
func siteOf(pcs []uintptr) (Site, bool) {
	frames := runtime.CallersFrames(pcs)
	var s Site
	var user, other *runtime.Frame
	for {
		f, more := frames.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, "runtime.") &&
			!harness(f) && !strings.HasPrefix(f.Function, "testing.") {
			s.Stack = append(s.Stack, fmt.Sprintf("%s %s:%d", f.Function, f.File, f.Line))
			f := f
			if other == nil {
				other = &f
			}
			if user == nil && !stdlib(f.File) {
				user = &f
			}
		}
		if !more {
			break
		}
	}
	pick := user
	if pick == nil {
		pick = other
	}
	if pick == nil {
		return s, false
	}
	s.Function, s.File, s.Line = pick.Function, pick.File, pick.Line
	if len(s.Stack) > 8 {
		s.Stack = s.Stack[:8]
	}
	return s, true
}

// stdlib reports whether file is in the standard library: under GOROOT,
// or, under -trimpath, a path whose first element has no dot.
func stdlib(file string) bool {
	if goroot != "" {
		return strings.HasPrefix(file, goroot)
	}
	first, _, _ := strings.Cut(file, "/")
	return !strings.Contains(first, ".")
}

// shortFunc drops the import path's directories: "chartsvc.newFigure".
func shortFunc(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}

// String is the site as the failure shows it.
func (s Site) String() string {
	return fmt.Sprintf("%s %s:%d", shortFunc(s.Function), filepath.Base(s.File), s.Line)
}

// caller is the frame that called the site, short, or "".
func (s Site) caller() string {
	for i, fr := range s.Stack {
		if !strings.HasPrefix(fr, s.Function+" ") || i+1 >= len(s.Stack) {
			continue
		}
		fn, loc, _ := strings.Cut(s.Stack[i+1], " ")
		return shortFunc(fn) + " " + filepath.Base(loc)
	}
	return ""
}
