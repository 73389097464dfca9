package leaktest

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

// Environment variables a CI job sets without touching tests. Each one
// that is set but invalid makes every measurement fail with an error
// naming it.
const (
	// envBudget sets the default time budget (a Go duration, e.g. "5s");
	// a Budget option in a test wins over it.
	envBudget = "LEAKTEST_BUDGET"
	// envLimitScale multiplies every limit, default or set by Limit or
	// Track (a number > 0, e.g. "2").
	envLimitScale = "LEAKTEST_LIMIT_SCALE"
	// envReportDir turns artifacts on (see ReportDir).
	envReportDir = "LEAKTEST_REPORT_DIR"
	// envBaseline names the baseline file (see Baseline).
	envBaseline = "LEAKTEST_BASELINE"
	// envBaselineUpdate, when "1", writes measured growth to the baseline
	// file instead of comparing with it.
	envBaselineUpdate = "LEAKTEST_BASELINE_UPDATE"
	// envBaselineStrict, when "1", fails a test missing from the baseline.
	envBaselineStrict = "LEAKTEST_BASELINE_STRICT"
)

// env is the environment's settings, parsed.
type env struct {
	budget         time.Duration // 0: unset
	limitScale     float64
	reportDir      string
	baseline       string
	baselineUpdate bool
	baselineStrict bool
}

// readEnv parses the environment through getenv (os.Getenv outside tests).
func readEnv(getenv func(string) string) (env, error) {
	e := env{limitScale: 1, reportDir: getenv(envReportDir), baseline: getenv(envBaseline)}
	if v := getenv(envBudget); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return e, fmt.Errorf("leaktest: %s=%q: want a positive duration such as 5s", envBudget, v)
		}
		e.budget = d
	}
	if v := getenv(envLimitScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return e, fmt.Errorf("leaktest: %s=%q: want a number > 0 such as 2", envLimitScale, v)
		}
		e.limitScale = f
	}
	var err error
	if e.baselineUpdate, err = flagVar(getenv, envBaselineUpdate); err != nil {
		return e, err
	}
	if e.baselineStrict, err = flagVar(getenv, envBaselineStrict); err != nil {
		return e, err
	}
	return e, nil
}

func flagVar(getenv func(string) string, name string) (bool, error) {
	switch v := getenv(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, fmt.Errorf("leaktest: %s=%q: want 1 or 0", name, v)
	}
}

var getenv = os.Getenv
