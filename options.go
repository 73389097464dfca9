package leaktest

import (
	"fmt"
	"math"
	"time"

	"go.uber.org/goleak"
)

// An Option changes how Run and Measure measure. Options that are out of
// range make Measure return an error instead of measuring.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Default limits: growth per call above these, sustained after warm-up, is
// a leak. Heap is 4 B so that the smallest real leak (one 8-byte object per
// call) fails; RSS is measured outside the Go heap, where pages make the
// signal coarser; goroutines and descriptors are exact counts.
var defaultLimits = map[Resource]float64{
	Heap:       4,
	RSS:        512,
	Goroutines: 0,
	FDs:        0,
}

const (
	minIterations  = 32
	defaultBudget  = 3 * time.Second
	shortBudget    = time.Second
	defaultTimeout = time.Minute
)

type config struct {
	iterations int // calls after warm-up; 0: adaptive
	warmup     int // warm-up calls; -1: the first quarter of the samples
	budget     time.Duration
	timeout    time.Duration
	timeoutSet bool
	limits     map[Resource]float64
	gauges     []trackedGauge
	ignore     []goleak.Option
	reportDir  string // where artifacts go; "" for none
	name       string // of the test, for artifact files
	baseline   string // baseline file; "" for none
	// baselineSet: by the Baseline option, not the environment.
	baselineSet bool
	env         env
	err         error
}

// trackedGauge is a user's count, sampled with the built-in resources.
type trackedGauge struct {
	name Resource
	read func() float64
}

func newConfig(short bool, opts []Option) *config {
	return newConfigFrom(short, opts, getenv)
}

// newConfigFrom is newConfig with the environment read through getenv.
func newConfigFrom(short bool, opts []Option, getenv func(string) string) *config {
	c := &config{
		warmup:  -1,
		budget:  defaultBudget,
		timeout: defaultTimeout,
		limits:  make(map[Resource]float64, len(defaultLimits)),
	}
	if short {
		c.budget = shortBudget
	}
	e, err := readEnv(getenv)
	if err != nil {
		c.err = err
	}
	c.env = e
	if e.budget > 0 {
		c.budget = e.budget
	}
	c.reportDir, c.baseline = e.reportDir, e.baseline
	for r, l := range defaultLimits {
		c.limits[r] = l
	}
	for _, o := range opts {
		if o == nil {
			c.fail("nil Option")
			continue
		}
		o.apply(c)
	}
	switch {
	case !c.timeoutSet:
		c.timeout = max(defaultTimeout, 10*c.budget)
	case c.timeout <= c.budget && c.iterations == 0:
		c.fail("Timeout(%v) is not longer than the budget (%v): the measurement would time out", c.timeout, c.budget)
	}
	// Limits are checked last, so that Limit may name a Track gauge given
	// after it.
	for r, l := range c.limits {
		if !isBuiltin(r) && !c.tracked(r) {
			c.fail("Limit(%q, %v): unknown Resource (want heap, rss, goroutines, fds or a Track name)", string(r), l)
		}
		c.limits[r] = l * e.limitScale
	}
	return c
}

func isBuiltin(r Resource) bool {
	_, ok := defaultLimits[r]
	return ok
}

func (c *config) tracked(r Resource) bool {
	for _, g := range c.gauges {
		if g.name == r {
			return true
		}
	}
	return false
}

func (c *config) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("leaktest: invalid option: "+format, args...)
	}
}

// Iterations fixes the number of measured calls to n (at least 32: fewer
// could never show a trend) instead of adapting it to the time budget. A
// heap leak's attribution window calls fn more times afterwards. Without
// Warmup, the warm-up is the first quarter of the n calls; with Warmup(w),
// Run makes w+n calls. The budget does not limit the n calls (it still
// bounds the first part of the attribution window, down to four groups of
// calls); Timeout does, and a window whose four groups would not end
// before it is skipped: the leak is reported without its sites, and a
// note says why.
//
// The n calls are sampled 48 times, a full collection each: the heap
// limit a run applies is at least the runtime's allowance of 64 B ×
// GOMAXPROCS per collection, 48/n of that per call, so a small n raises
// it (Iterations(200) at GOMAXPROCS=8: about 123 B per call; a clean
// report says so in a note).
func Iterations(n int) Option {
	return optionFunc(func(c *config) {
		if n < minIterations {
			c.fail("Iterations(%d): need at least %d calls for a verdict", n, minIterations)
			return
		}
		c.iterations = n
	})
}

// Warmup fixes the warm-up to the first n calls: they run but are not
// judged. By default the warm-up is the calls before the first quarter of
// the samples ended.
func Warmup(n int) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.fail("Warmup(%d): negative count", n)
			return
		}
		c.warmup = n
	})
}

// Limit sets the largest growth per call of r that is not a leak, in the
// resource's unit (bytes for Heap and RSS, a count for Goroutines and FDs).
// To fail, growth must be a significant trend (see the README's decision
// rule) whose estimated rate is above the limit.
//
// Two floors apply whatever the limit: the heap is judged against at least
// 64 B × GOMAXPROCS per full collection (what the runtime may keep per P
// while its caches fill; about 2 B per call at GOMAXPROCS=2 for a cheap
// function, more for slow ones), and RSS outside the Go runtime must also
// have grown by 256 KiB over the judged calls. So Limit(Heap, 0) lowers
// the heap's limit only to that floor: for a cheap function about 1 B per
// call at GOMAXPROCS=1, 2 B at 2, up to 4 B with more.
func Limit(r Resource, perIteration float64) Option {
	return optionFunc(func(c *config) {
		if perIteration < 0 || math.IsNaN(perIteration) || math.IsInf(perIteration, 0) {
			c.fail("Limit(%s, %v): limit must be a finite number >= 0", r, perIteration)
			return
		}
		c.limits[r] = perIteration
	})
}

// Budget sets the time the measurement aims to take (default 3s, 1s with
// go test -short). Cheap functions reach a verdict well within it; a slow
// function or a large live heap uses it all. The budget is soft: Measure
// takes a minimum number of samples even when they take longer, a heap
// leak's confirmation window runs after it, growth of RSS that may be Go
// heap written for the first time keeps the run going, within the
// Timeout, until it can be told from a leak, and a run undecided at its
// end (growth above a limit without a clear trend, or late only) goes on
// for up to two budgets more, within half the time left before the
// Timeout; a note says so.
func Budget(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.fail("Budget(%v): budget must be positive", d)
			return
		}
		c.budget = d
	})
}

// Timeout sets the longest a measurement may take once it has its turn
// (default one minute, or ten budgets if longer); it must be longer than
// the budget. A function still running then makes Measure return an error
// holding a goroutine dump. Time spent waiting for other measurements of
// the process to end (parallel tests queue) does not count, unless the one
// holding the turn has fn blocked past its own Timeout: then waiting is an
// error after this Timeout.
func Timeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.fail("Timeout(%v): timeout must be positive", d)
			return
		}
		c.timeout, c.timeoutSet = d, true
	})
}

// IgnoreGoroutines passes goleak options (goleak.IgnoreTopFunction,
// goleak.IgnoreAnyFunction, ...) to the check for goroutines left running
// after the measurement whose number did not grow per call (the note about
// a pool). Goroutines alive before Measure are always ignored. A number
// that grows per call is a leak whatever the options say, and its finding
// lists every goroutine fn left.
func IgnoreGoroutines(opts ...goleak.Option) Option {
	return optionFunc(func(c *config) {
		c.ignore = append(c.ignore, opts...)
	})
}

// Track samples a count of the user's along with the built-in resources —
// open figures, cache entries, sql.DB.Stats().OpenConnections, a queue's
// length — judges it by the same rule, and reports it as a Resource named
// name when it grows by more than limit per call. gauge is read right after
// each full collection, outside the calls of fn; it should be cheap.
func Track(name string, gauge func() float64, limit float64) Option {
	return optionFunc(func(c *config) {
		r := Resource(name)
		switch {
		case name == "":
			c.fail("Track: empty name")
		case gauge == nil:
			c.fail("Track(%q): nil gauge", name)
		case limit < 0 || math.IsNaN(limit) || math.IsInf(limit, 0):
			c.fail("Track(%q, %v): limit must be a finite number >= 0", name, limit)
		case isBuiltin(r) || c.tracked(r):
			c.fail("Track(%q): name already in use", name)
		default:
			c.gauges = append(c.gauges, trackedGauge{name: r, read: gauge})
			if _, set := c.limits[r]; !set { // a Limit given before wins
				c.limits[r] = limit
			}
		}
	})
}

// ReportDir makes each measurement write its artifacts to dir (created if
// needed), named after the test (Run) or leaktest-<pid>-<k>, the k-th
// measurement of process pid (Measure): <name>.json (the report), <name>.svg (a
// chart of each series), and for a heap leak <name>.heap.base.pb.gz and
// <name>.heap.pb.gz, heap profiles at the start and end of the attribution
// window, for go tool pprof -diff_base. A further measurement under the
// same name in the process is <name>~2, the next <name>~3. A dir
// from the file system's root, which the packages of go test ./... share,
// gets a folder per package, named by its import path:
// dir/example.com/svc/cache/<name>.json. The environment variable
// LEAKTEST_REPORT_DIR does the same for every test; the option wins.
func ReportDir(dir string) Option {
	return optionFunc(func(c *config) {
		if dir == "" {
			c.fail("ReportDir(\"\"): empty directory")
			return
		}
		c.reportDir = dir
	})
}

// named sets the name artifacts are written under; Run passes t.Name().
func named(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}
