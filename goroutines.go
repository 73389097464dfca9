package leaktest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/goleak"
)

// checkGoroutines lists the goroutines fn left running, grouped by where
// they were created. When their count grew per call they are leaking
// already, and the list is the finding's detail: the goroutines alive now
// that were not before Measure. When it did not grow (a worker pool
// started once), goleak decides which ones are left (after its grace
// period, ignoring those alive before Measure and those the user ignores)
// and the list is a note. The grouping reads the runtime's own dump.
func (m *meter) checkGoroutines(rep *Report, n int, before map[int]bool, opts []goleak.Option) {
	f := rep.finding(Goroutines)
	if f == nil && runtime.NumGoroutine() <= n {
		return
	}
	var ids map[int]bool
	var dump []byte
	if f != nil {
		// goleak would retry 20 times, reading every stack each time,
		// while goroutines known to leak stay: seconds, with thousands.
		dump = goroutineDump()
		ids = newGoroutines(dump, before, m.loopID)
	} else {
		err := goleak.Find(opts...)
		if err == nil {
			return
		}
		ids = leakedIDs(err.Error())
		dump = goroutineDump()
	}
	if len(ids) == 0 {
		return
	}
	// Where the dump shows pprof labels (Go 1.26+), only goroutines that
	// carry the measurement's label were started by fn or its children:
	// the others belong to tests running in parallel.
	labelled := bytes.Contains(dump, []byte("labels:{"))
	ours := ids
	if labelled {
		ours = map[int]bool{}
		markLabelled(dump, m.label, ids, ours)
	}
	if f != nil {
		if len(ours) == 0 {
			f.Detail = "none of the goroutines left carries this measurement's label: they were started on fn's behalf by goroutines that existed before, or by tests running in parallel:\n" +
				groupGoroutines(dump, ids)
			return
		}
		f.Detail = groupGoroutines(dump, ours)
		return
	}
	if len(ours) == 0 {
		return
	}
	why := "their number did not keep growing through the judged calls (a pool started once?), so they are not judged a leak"
	if m.judged[sGoroutines].verdict == unsure {
		why = "their growth is undecided (the note on goroutines above), so they are not judged a leak"
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf(
		"%d goroutine(s) started by fn are still running, but %s:\n%s",
		len(ours), why, groupGoroutines(dump, ours)))
}

// markLabelled adds to ours the goroutines of ids whose header in dump
// carries label.
func markLabelled(dump []byte, label string, ids, ours map[int]bool) {
	want := fmt.Sprintf("%q: %q", labelKey, label)
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		head, _, _ := bytes.Cut(block, []byte("\n"))
		if !bytes.Contains(head, []byte(want)) {
			continue
		}
		_, id, ok := parseGoroutine(string(block))
		if ok && ids[id] {
			ours[id] = true
		}
	}
}

// labelKey is the pprof label the measuring goroutine runs under; the
// goroutines fn starts inherit it.
const labelKey = "leaktest"

// goroutineDump is runtime.Stack of every goroutine, with pprof labels
// where the runtime can show them (GODEBUG=tracebacklabels=1, Go 1.26+;
// set only while dumping), and goroutines blocked forever marked
// "(leaked)" where the goroutineleak profile exists
// (GOEXPERIMENT=goroutineleakprofile).
func goroutineDump() []byte {
	old, had := os.LookupEnv("GODEBUG")
	v := "tracebacklabels=1"
	if old != "" {
		v = old + "," + v
	}
	os.Setenv("GODEBUG", v)
	defer func() {
		if had {
			os.Setenv("GODEBUG", old)
		} else {
			os.Unsetenv("GODEBUG")
		}
	}()
	if p := pprof.Lookup("goroutineleak"); p != nil {
		var b bytes.Buffer
		if p.WriteTo(&b, 2) == nil {
			return b.Bytes()
		}
	}
	return allStacks()
}

// goroutineIDs returns the ids of the goroutines in dump.
func goroutineIDs(dump []byte) map[int]bool {
	ids := make(map[int]bool)
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		if id, ok := headerID(block); ok {
			ids[id] = true
		}
	}
	return ids
}

// newGoroutines returns the ids of the goroutines in dump that are not in
// before, other than the measuring goroutine (on its way out) and tests'
// own goroutines (tests running in parallel, started meanwhile).
func newGoroutines(dump []byte, before map[int]bool, measuring int64) map[int]bool {
	ids := make(map[int]bool)
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		id, ok := headerID(block)
		if !ok || before[id] || int64(id) == measuring || bytes.Contains(block, []byte("\ntesting.tRunner(")) {
			continue
		}
		ids[id] = true
	}
	return ids
}

// headerID reads the id from a block's first line, "goroutine 7 [...]:".
func headerID(block []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(bytes.TrimLeft(block, "\n"), []byte("goroutine "))
	if !ok {
		return 0, false
	}
	num, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(string(num))
	return id, err == nil
}

var goleakID = regexp.MustCompile(`Goroutine (\d+) in state`)

// leakedIDs reads the goroutine ids out of goleak.Find's error.
func leakedIDs(msg string) map[int]bool {
	ids := make(map[int]bool)
	for _, sub := range goleakID.FindAllStringSubmatch(msg, -1) {
		if id, err := strconv.Atoi(sub[1]); err == nil {
			ids[id] = true
		}
	}
	return ids
}

type goroutineGroup struct {
	count     int
	createdBy string // function and file:line
	top       string // function on top of the stack
	state     string
	forever   bool // the goroutineleak profile found it blocked forever
}

// groupGoroutines groups the goroutines of dump whose ids are in ids by
// creation site, top function and state, most first, one line a group.
func groupGoroutines(dump []byte, ids map[int]bool) string {
	groups := map[goroutineGroup]int{}
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		g, id, ok := parseGoroutine(string(block))
		if !ok || !ids[id] {
			continue
		}
		groups[g]++
	}
	list := make([]goroutineGroup, 0, len(groups))
	for g, n := range groups {
		g.count = n
		list = append(list, g)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].count != list[j].count {
			return list[i].count > list[j].count
		}
		return list[i].createdBy+list[i].top < list[j].createdBy+list[j].top
	})
	var b strings.Builder
	for i, g := range list {
		if i == 10 {
			fmt.Fprintf(&b, "… and %d more groups\n", len(list)-i)
			break
		}
		fmt.Fprintf(&b, "%d × created by %s, %s in %s\n", g.count, g.createdBy, describeState(g.state, g.forever), g.top)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parseGoroutine reads one block of runtime.Stack(all):
//
//	goroutine 7 [chan send, 2 minutes]:
//	main.producer(...)
//		/src/main.go:12 +0x1d
//	created by main.start in goroutine 1
//		/src/main.go:20 +0x3f
func parseGoroutine(block string) (g goroutineGroup, id int, ok bool) {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
		return g, 0, false
	}
	head := strings.TrimPrefix(lines[0], "goroutine ")
	sp := strings.IndexByte(head, ' ')
	if sp < 0 {
		return g, 0, false
	}
	id, err := strconv.Atoi(head[:sp])
	if err != nil {
		return g, 0, false
	}
	if l, r := strings.IndexByte(head, '['), strings.LastIndexByte(head, ']'); l >= 0 && r > l {
		inner := head[l+1 : r]
		inner, _, _ = strings.Cut(inner, " labels:{")
		g.state, _, _ = strings.Cut(inner, ",")
		if s, ok := strings.CutSuffix(g.state, " (leaked)"); ok {
			g.state, g.forever = s, true
		}
		g.state = strings.TrimSuffix(g.state, " (durable)")
	}
	g.top = funcName(lines[1])
	g.createdBy = "an unknown site"
	for i := 1; i < len(lines); i++ {
		if fn, found := strings.CutPrefix(lines[i], "created by "); found {
			fn, _, _ = strings.Cut(fn, " in goroutine ")
			g.createdBy = fn
			if i+1 < len(lines) {
				g.createdBy += " at " + fileLine(lines[i+1])
			}
		}
	}
	return g, id, true
}

// funcName strips the arguments from a frame line: "pkg.f(0x1, 0x2)".
func funcName(line string) string {
	if i := strings.LastIndexByte(line, '('); i > 0 {
		return line[:i]
	}
	return line
}

// fileLine shortens "\t/long/path/file.go:12 +0x1d" to "file.go:12".
func fileLine(line string) string {
	line = strings.TrimSpace(line)
	line, _, _ = strings.Cut(line, " +0x")
	return filepath.Base(line)
}

func describeState(state string, forever bool) string {
	switch {
	case state == "":
		return "in an unknown state"
	case state == "running" || state == "runnable" || state == "syscall":
		return state
	case forever:
		return "blocked forever in " + state
	default:
		return "blocked in " + state
	}
}

// allStacks returns the dump of every goroutine.
func allStacks() []byte {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 64<<20 {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineID returns the id of the calling goroutine, or 0.
func goroutineID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		id, _ := strconv.ParseInt(string(b[:i]), 10, 64)
		return id
	}
	return 0
}
