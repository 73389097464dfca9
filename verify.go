package leaktest

import (
	"fmt"
	"io"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests of a package and, when they pass, fails
// the run if they left goroutines running: a leak that no single test
// catches, because the goroutine outlives the test that started it. Use
// it as the package's TestMain:
//
//	func TestMain(m *testing.M) {
//		leaktest.VerifyTestMain(m)
//	}
//
// The goroutines left are printed to standard error grouped by where they
// were created, with a count for each site, and the process exits with
// code 1. When the tests fail, their exit code is kept and goroutines are
// not checked: a failed test often leaves some behind. Like
// goleak.VerifyTestMain it calls os.Exit and never returns.
//
// Goroutines that are expected to outlive the tests are excused with
// IgnoreGoroutines (goleak.IgnoreTopFunction, goleak.IgnoreAnyFunction,
// goleak.IgnoreCurrent, ...); the other options do not apply here, nor
// do the LEAKTEST_ environment variables (a wrong one fails each
// measurement, not the tests that make none). An invalid option is
// printed and exits with code 1 before any test runs.
func VerifyTestMain(m *testing.M, opts ...Option) {
	verifyTestMain(m, os.Exit, os.Stderr, opts...)
}

// testingM is the part of *testing.M that verifyTestMain uses, so that a
// fake can stand in for it.
type testingM interface {
	Run() int
}

// verifyTestMain is VerifyTestMain with the exit and the standard error
// given, for tests. It returns after calling exit.
func verifyTestMain(m testingM, exit func(int), stderr io.Writer, opts ...Option) {
	// Without the environment: none of it applies here, and a variable
	// set wrong for the measurements must not stop tests that make none.
	cfg := newConfigFrom(false, opts, func(string) string { return "" })
	if cfg.err != nil {
		fmt.Fprintln(stderr, cfg.err)
		exit(1)
		return
	}
	code := m.Run()
	if code != 0 {
		exit(code)
		return
	}
	err := goleak.Find(cfg.ignore...)
	if err == nil {
		exit(0)
		return
	}
	ids := leakedIDs(err.Error())
	groups := ""
	if len(ids) > 0 {
		groups = groupGoroutines(allStacks(), ids)
	}
	if groups == "" {
		// Not a list of goroutines (an option goleak.Find refuses), or
		// they ended between goleak's look and the dump: print goleak's
		// own words.
		fmt.Fprintf(stderr, "leaktest: the tests passed, but the goroutine check failed: %v\n", err)
		exit(1)
		return
	}
	fmt.Fprintf(stderr, "leaktest: the tests passed, but left %d goroutine(s) running, by creation site:\n%s\n"+
		"(excuse the expected ones with leaktest.IgnoreGoroutines)\n", len(ids), groups)
	exit(1)
}
