package leaktest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// assertNoLeak fails t once per finding of rep, and once for err, each as
// a testify failure whose message is the labelled block of Report.failure.
// Notes are logged: they are not failures.
func assertNoLeak(t testing.TB, rep *Report, err error) bool {
	t.Helper()
	if err != nil {
		return assert.Fail(t, "leaktest could not measure fn", err.Error())
	}
	ok := true
	for _, f := range rep.Findings {
		if !assert.Fail(t, rep.failure(f)) {
			ok = false
		}
	}
	for _, n := range rep.Notes {
		t.Logf("leaktest: note: %s", n)
	}
	return ok
}
