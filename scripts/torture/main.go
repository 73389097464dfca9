// Command torture runs leaktest's corpus under stress and proves two
// things: the detector raises no false alarm on any clean workload, and it
// catches every leaky workload on the right resource — not just on a quiet
// machine with default settings, but across the runtime configurations a
// user's CI may have.
//
// The corpus is TestCorpusLeaky/<name> (each case must report a leak on
// its resource) and TestCorpusClean/<name> (each must report none) in
// corpus_test.go. The harness builds the package's test binary twice
// (plain and -race), then runs every case in a fresh process, with
// -test.v -test.count=1, under each configuration of the matrix:
//
//	baseline          no runtime settings (GOGC, GOMAXPROCS, GOMEMLIMIT,
//	                  GODEBUG and GORACE are removed from every run's environment)
//	GOMAXPROCS=1|2|8  one, two and more Ps than this machine has cores
//	GOGC=25|400|off   frequent, rare and no automatic collections
//	GOMEMLIMIT=64MiB  a memory limit below some cases' 100 MiB live heap
//	race              the -race test binary
//	contention        4 processes at once plus a busy-loop CPU burner
//
// Each run is classified from its exit status and output as pass, skip,
// false alarm ("false alarm:"), miss ("leak missed:"), wrong resource
// ("leak found on the wrong resource:") or crash (anything else that
// failed: a measurement error from require.NoError, a panic, a data race,
// goleak's report at exit, a case that no longer exists, or a process
// still running after -timeout, which is sent SIGQUIT so that its
// goroutines are dumped). The harness prints a table with a row per
// configuration — runs, outcomes, median and worst "<d> to verdict", and
// how many runs took longer than -target (the default budget plus 1 s),
// listed by case below the table — then the case, configuration and
// failure text of every run that did not pass, and exits 1 if any run was a false alarm, a miss, on the wrong
// resource or a crash. The full output of those runs is kept in -logs,
// and so is that of the slowest run of each configuration.
//
// Run it from the repository root:
//
//	go run ./scripts/torture -short            # CI: 5 configs, 1 rep: ~3 min on 2 CPUs
//	go run ./scripts/torture                   # every config, 3 reps of clean cases: ~7 min
//	go run ./scripts/torture -reps 5           # more evidence against false alarms: ~11 min
//	go run ./scripts/torture -configs race,GOGC=off -run 'Clean/plateau/'
//	go run ./scripts/torture -list             # print the cases and configurations
//
// Flags:
//
//	-dir DIR        repository root (default ".")
//	-reps N         runs of each clean case per configuration (default 3; -short: 1)
//	-leaky-reps N   runs of each leaky case per configuration (default 1)
//	-configs a,b    configurations to run, by name (default all; -short: baseline,
//	                GOMAXPROCS=1,GOGC=off,race,contention)
//	-parallel P     processes at once, except in contention (default 2)
//	-timeout D      per-process limit, counted as a crash (default 90s, above
//	                leaktest's own one-minute Timeout so that its error is seen)
//	-run REGEXP     only cases whose test name (TestCorpusClean/plateau/...) matches
//	-short          quick mode for CI, as above; explicit flags still win
//	-logs DIR       where to keep the output of failed runs, and of each
//	                configuration's slowest one (default: a temp dir)
//	-target D       time to verdict a run should keep within (default 4s:
//	                leaktest's default budget plus 1 s); runs past it are
//	                counted, not failed
//
// The binaries are built from the working tree as it is, committed or not;
// the last line of the output names it by a hash of its .go files, go.mod
// and go.sum, so that two tables can be told apart. To test a commit alone,
// extract it and point -dir at it:
//
//	git archive HEAD | tar -x -C /tmp/head && go run ./scripts/torture -dir /tmp/head
//
// Case names are read from the package's _test.go files (the []workload
// literals of the leakyCorpus and cleanCorpus tables), and a run that matched no test counts as a crash,
// so a renamed case cannot silently drop out. Each case runs alone in its
// process with -test.run '^TestCorpusClean$/^plateau$/^lru-500-entries$':
// -test.run splits its pattern on '/', and so the name is split and each
// element anchored and quoted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// A config is one column of the matrix: a test binary, environment
// settings, how many processes run at once, and whether a CPU burner runs
// beside them.
type config struct {
	name     string
	race     bool
	env      []string
	parallel int // 0: the -parallel flag
	burn     bool
}

var allConfigs = []config{
	{name: "baseline"},
	{name: "GOMAXPROCS=1", env: []string{"GOMAXPROCS=1"}},
	{name: "GOMAXPROCS=2", env: []string{"GOMAXPROCS=2"}},
	{name: "GOMAXPROCS=8", env: []string{"GOMAXPROCS=8"}},
	{name: "GOGC=25", env: []string{"GOGC=25"}},
	{name: "GOGC=400", env: []string{"GOGC=400"}},
	{name: "GOGC=off", env: []string{"GOGC=off"}},
	{name: "GOMEMLIMIT=64MiB", env: []string{"GOMEMLIMIT=64MiB"}},
	{name: "race", race: true},
	{name: "contention", parallel: 4, burn: true},
}

var shortConfigs = "baseline,GOMAXPROCS=1,GOGC=off,race,contention"

// Settings that would change a configuration if inherited from the
// caller's environment.
var runtimeVars = []string{"GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GODEBUG", "GORACE"}

// A testCase is one subtest of the corpus.
type testCase struct {
	test string // TestCorpusLeaky or TestCorpusClean
	name string // heap/16B-object
}

func (c testCase) full() string { return c.test + "/" + c.name }
func (c testCase) clean() bool  { return c.test == "TestCorpusClean" }
func (c testCase) pattern() string {
	parts := append([]string{c.test}, strings.Split(c.name, "/")...)
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

type outcome int

const (
	pass outcome = iota
	skip
	falseAlarm
	miss
	wrongResource
	crash
)

var outcomeNames = [...]string{"pass", "skip", "FALSE ALARM", "MISS", "WRONG RESOURCE", "CRASH"}

func (o outcome) String() string { return outcomeNames[o] }

// A result is one process: one case, once, under one configuration.
type result struct {
	cfg     string
	c       testCase
	rep     int
	outcome outcome
	verdict time.Duration // "<d> to verdict"; -1 when not logged
	wall    time.Duration
	detail  string // why it is not a pass, trimmed
	log     string // file holding the full output, for failures
	output  string // the full output, kept for the slowest run of each configuration
}

var (
	dir       = flag.String("dir", ".", "repository root, holding corpus_test.go")
	reps      = flag.Int("reps", 3, "runs of each clean case per configuration")
	leakyReps = flag.Int("leaky-reps", 1, "runs of each leaky case per configuration")
	configs   = flag.String("configs", "", "comma-separated configurations to run (default all)")
	parallel  = flag.Int("parallel", 2, "processes at once outside the contention configuration")
	timeout   = flag.Duration("timeout", 90*time.Second, "per-process limit; a process past it is a crash")
	runFlag   = flag.String("run", "", "only cases whose test name matches this regexp")
	short     = flag.Bool("short", false, "quick mode for CI: reps 1 and configs "+shortConfigs)
	logDir    = flag.String("logs", "", "directory for the output of failed runs and of each configuration's slowest (default: a new temp dir)")
	list      = flag.Bool("list", false, "print the cases and configurations, and exit")
	burnFlag  = flag.Bool("burn", false, "internal: spin every CPU until stdin closes")
	target    = flag.Duration("target", 4*time.Second, "time to verdict that a run should keep within: leaktest's default budget (3s) plus 1s")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./scripts/torture [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *burnFlag {
		burn()
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		os.Exit(2)
	}
}

func run() error {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *short {
		if !set["reps"] {
			*reps = 1
		}
		if !set["configs"] {
			*configs = shortConfigs
		}
	}
	cfgs, err := selectConfigs(*configs)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	cases, err := corpusCases(root)
	if err != nil {
		return err
	}
	if *runFlag != "" {
		re, err := regexp.Compile(*runFlag)
		if err != nil {
			return fmt.Errorf("-run: %v", err)
		}
		var kept []testCase
		for _, c := range cases {
			if re.MatchString(c.full()) {
				kept = append(kept, c)
			}
		}
		cases = kept
	}
	if *list {
		for _, c := range cases {
			fmt.Println(c.full())
		}
		for _, c := range cfgs {
			fmt.Println("config", c.name)
		}
		return nil
	}
	if len(cases) == 0 {
		return errors.New("no case matches -run")
	}

	tmp, err := os.MkdirTemp("", "torture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *logDir == "" {
		*logDir, err = os.MkdirTemp("", "torture-logs-")
	} else {
		err = os.MkdirAll(*logDir, 0o755)
	}
	if err != nil {
		return err
	}

	// The binaries are built from the working tree as it is now; the
	// fingerprint says which tree a table belongs to.
	src := fingerprint(root)
	bins := map[bool]string{}
	for _, c := range cfgs {
		if _, ok := bins[c.race]; ok {
			continue
		}
		bin, err := buildTest(root, tmp, c.race)
		if err != nil {
			return err
		}
		bins[c.race] = bin
	}
	if after := fingerprint(root); after != src {
		fmt.Fprintf(os.Stderr, "torture: warning: the sources changed while building (%s, then %s): the binaries may differ\n", src, after)
	}

	start := time.Now()
	var all [][]result
	for _, c := range cfgs {
		jobs := plan(cases, c.name)
		fmt.Fprintf(os.Stderr, "%s: %d runs...\n", c.name, len(jobs))
		t0 := time.Now()
		rs := runConfig(c, bins[c.race], root, jobs)
		var n [6]int
		for _, r := range rs {
			n[r.outcome]++
		}
		fmt.Fprintf(os.Stderr, "%s: done in %v: %d pass, %d skip, %d false alarms, %d misses, %d wrong resource, %d crashes\n",
			c.name, time.Since(t0).Round(time.Second), n[pass], n[skip], n[falseAlarm], n[miss], n[wrongResource], n[crash])
		all = append(all, rs)
	}
	bad := report(os.Stdout, all)
	fmt.Printf("\n%d configurations in %v; clean reps %d, leaky reps %d, parallel %d, on %d CPUs, %s; sources %s\n",
		len(cfgs), time.Since(start).Round(time.Second), *reps, *leakyReps, *parallel, runtime.NumCPU(), runtime.Version(), src)
	if bad > 0 {
		fmt.Printf("full output of failed runs: %s\n", *logDir)
		os.Exit(1)
	}
	return nil
}

func selectConfigs(names string) ([]config, error) {
	if names == "" {
		return allConfigs, nil
	}
	var out []config
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, c := range allConfigs {
			if strings.EqualFold(c.name, n) {
				out = append(out, c)
				found = true
			}
		}
		if !found {
			var known []string
			for _, c := range allConfigs {
				known = append(known, c.name)
			}
			return nil, fmt.Errorf("unknown configuration %q; known: %s", n, strings.Join(known, ","))
		}
	}
	return out, nil
}

// buildTest compiles the package's test binary, once per flavour.
func buildTest(root, tmp string, race bool) (string, error) {
	bin := filepath.Join(tmp, "leaktest.test")
	args := []string{"test", "-c", "-o", bin}
	if race {
		bin = filepath.Join(tmp, "leaktest-race.test")
		args = []string{"test", "-race", "-c", "-o", bin}
	}
	args = append(args, ".")
	fmt.Fprintf(os.Stderr, "go %s\n", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %v", strings.Join(args, " "), err)
	}
	return bin, nil
}

// plan lists the runs of one configuration: every leaky case leakyReps
// times and every clean case reps times, repetitions outermost so that
// runs of one case are spread over the configuration's time.
func plan(cases []testCase, cfg string) []result {
	n := max(*reps, *leakyReps)
	var jobs []result
	for r := 0; r < n; r++ {
		for _, c := range cases {
			if (c.clean() && r < *reps) || (!c.clean() && r < *leakyReps) {
				jobs = append(jobs, result{cfg: cfg, c: c, rep: r})
			}
		}
	}
	return jobs
}

// runConfig runs the jobs of one configuration, p at a time.
func runConfig(c config, bin, root string, jobs []result) []result {
	p := c.parallel
	if p == 0 {
		p = *parallel
	}
	if c.burn {
		stop, err := startBurner()
		if err != nil {
			fmt.Fprintln(os.Stderr, "torture: CPU burner:", err)
		} else {
			defer stop()
		}
	}
	env := environ(c.env)
	idx := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < p; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				runOne(&jobs[i], bin, root, env)
				if r := jobs[i]; r.outcome != pass && r.outcome != skip {
					fmt.Fprintf(os.Stderr, "  %s %s (rep %d): %s\n", r.outcome, r.c.full(), r.rep, r.log)
				}
			}
		}()
	}
	for i := range jobs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return jobs
}

// environ is the caller's environment without runtime settings, plus extra.
func environ(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, v := range runtimeVars {
			if strings.HasPrefix(kv, v+"=") {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var verdictRE = regexp.MustCompile(`(?m)^\s+\S+\.go:\d+: (\S+) to verdict$`)

// runOne runs r's case in a fresh process and classifies it.
func runOne(r *result, bin, root string, env []string) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.v", "-test.count=1", "-test.run", r.c.pattern())
	cmd.Dir = root
	cmd.Env = env
	// Past the timeout, SIGQUIT makes the Go runtime dump every goroutine.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r.wall = time.Since(start)
	text := string(out)
	timedOut := ctx.Err() != nil

	r.verdict = -1
	if m := verdictRE.FindStringSubmatch(text); m != nil {
		if d, perr := time.ParseDuration(m[1]); perr == nil {
			r.verdict = d
		}
	}
	r.outcome, r.detail = classify(r.c, text, err, timedOut)
	header := fmt.Sprintf("# config %s, rep %d, wall %v, err %v\n# %s -test.v -test.count=1 -test.run '%s'\n",
		r.cfg, r.rep, r.wall.Round(time.Millisecond), err, bin, r.c.pattern())
	r.output = header + text
	if r.outcome != pass && r.outcome != skip {
		r.log = filepath.Join(*logDir, sanitize(r.cfg+"__"+r.c.full()+"__"+strconv.Itoa(r.rep))+".log")
		os.WriteFile(r.log, []byte(r.output), 0o644)
	}
}

func classify(c testCase, text string, err error, timedOut bool) (outcome, string) {
	switch {
	case timedOut:
		return crash, fmt.Sprintf("still running after %v (killed with SIGQUIT)\n%s", *timeout, trim(text))
	case strings.Contains(text, "false alarm:"):
		return falseAlarm, trim(text)
	case strings.Contains(text, "leak missed:"):
		return miss, trim(text)
	case strings.Contains(text, "leak found on the wrong resource:"):
		return wrongResource, trim(text)
	case err != nil:
		return crash, fmt.Sprintf("%v\n%s", err, trim(text))
	case !strings.Contains(text, "=== RUN   "+c.full()+"\n"):
		return crash, "the case did not run (renamed or removed?)\n" + trim(text)
	case strings.Contains(text, "--- SKIP: "+c.full()+" "):
		return skip, ""
	case strings.Contains(text, "--- PASS: "+c.full()+" "):
		return pass, ""
	}
	return crash, "no PASS line for the case\n" + trim(text)
}

// trim keeps the part of a test's output that says what went wrong: from
// the first failure marker on, without the RUN lines, at most maxLines.
func trim(text string) string {
	const maxLines = 60
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	from := 0
	for i, l := range lines {
		if strings.Contains(l, "Error Trace:") || strings.HasPrefix(l, "panic:") ||
			strings.HasPrefix(l, "SIGQUIT") || strings.HasPrefix(l, "WARNING: DATA RACE") ||
			strings.HasPrefix(l, "goleak:") || strings.HasPrefix(l, "fatal error:") {
			from = i
			break
		}
	}
	var kept []string
	for _, l := range lines[from:] {
		if strings.HasPrefix(l, "=== ") {
			continue
		}
		kept = append(kept, l)
	}
	if len(kept) > maxLines {
		n := len(kept) - maxLines
		kept = append(kept[:maxLines], fmt.Sprintf("[... %d more lines in the log]", n))
	}
	return strings.Join(kept, "\n")
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '=' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// report prints the table and the details, and returns the number of runs
// that were neither a pass nor a skip.
func report(w io.Writer, all [][]result) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\truns\tpass\tskip\tfalse alarms\tmisses\twrong resource\tcrashes\tmedian verdict\tworst verdict\tpast target\tworst case\t")
	var total [6]int
	var totalRuns, totalPast int
	past := map[string]int{} // runs past the target, by case
	runsOf := map[string]int{}
	var totalTimes []time.Duration
	var bad []result
	for _, rs := range all {
		if len(rs) == 0 {
			continue
		}
		var n [6]int
		var times []time.Duration
		var worst result
		nPast := 0
		for _, r := range rs {
			n[r.outcome]++
			total[r.outcome]++
			if r.verdict >= 0 {
				times = append(times, r.verdict)
				runsOf[r.c.full()]++
				if r.verdict > worst.verdict {
					worst = r
				}
				if r.verdict > *target {
					nPast++
					past[r.c.full()]++
				}
			}
			if r.outcome != pass && r.outcome != skip {
				bad = append(bad, r)
			}
		}
		totalRuns += len(rs)
		totalPast += nPast
		totalTimes = append(totalTimes, times...)
		if worst.verdict > 0 { // its output, notes included, says where the time went
			os.WriteFile(filepath.Join(*logDir, sanitize(worst.cfg+"__slowest__"+worst.c.full())+".log"), []byte(worst.output), 0o644)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t\n", rs[0].cfg, len(rs),
			n[pass], n[skip], n[falseAlarm], n[miss], n[wrongResource], n[crash],
			fmtDur(median(times)), fmtDur(maxDur(times)), nPast, worst.c.name)
	}
	fmt.Fprintf(tw, "TOTAL\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t\t\n", totalRuns,
		total[pass], total[skip], total[falseAlarm], total[miss], total[wrongResource], total[crash],
		fmtDur(median(totalTimes)), fmtDur(maxDur(totalTimes)), totalPast)
	tw.Flush()

	if totalPast > 0 {
		fmt.Fprintf(w, "\nruns past the %v target, by case (of its runs with a verdict, every configuration):\n", *target)
		names := make([]string, 0, len(past))
		for name := range past {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool {
			if past[names[i]] != past[names[j]] {
				return past[names[i]] > past[names[j]]
			}
			return names[i] < names[j]
		})
		for _, name := range names {
			fmt.Fprintf(w, "  %4d of %4d  %s\n", past[name], runsOf[name], name)
		}
	}

	fmt.Fprintf(w, "\noutput of each configuration's slowest run: %s/*__slowest__*.log\n", *logDir)
	if len(bad) == 0 {
		fmt.Fprintln(w, "\nno false alarm, no miss, no wrong resource, no crash")
		return 0
	}
	fmt.Fprintf(w, "\n%d runs did not pass:\n", len(bad))
	for _, r := range bad {
		verdict := "no verdict"
		if r.verdict >= 0 {
			verdict = r.verdict.String() + " to verdict"
		}
		fmt.Fprintf(w, "\n=== %s  %s  [%s] rep %d, %s, wall %v\n    log: %s\n", r.outcome, r.c.full(), r.cfg,
			r.rep, verdict, r.wall.Round(time.Millisecond), r.log)
		for _, l := range strings.Split(r.detail, "\n") {
			fmt.Fprintln(w, "    "+l)
		}
	}
	return len(bad)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxDur(ds []time.Duration) time.Duration {
	m := time.Duration(-1)
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}
