package chartsvc

import (
	"bytes"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heapslope/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks that Shutdown ends every goroutine, the leaked ones
// included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sales = "day,value\n1,12.5\n2,14\n3,9.25\n"

// requests is one request per endpoint: what the service's leak test
// replays.
func requests() []*http.Request {
	return []*http.Request{
		httptest.NewRequest(http.MethodGet, "/health", nil),
		httptest.NewRequest(http.MethodGet, "/api/reports", nil),
		httptest.NewRequest(http.MethodPost, "/api/upload", strings.NewReader(sales)),
		httptest.NewRequest(http.MethodGet, "/chart?report=latency", nil),
		httptest.NewRequest(http.MethodPost, "/api/notify?hook=https://hooks.example/42", nil),
	}
}

// newServer starts the service for one test and ends it, and closes its
// figures, when the test ends.
func newServer(t *testing.T, fixed bool) *Server {
	srv := NewServer(fixed)
	t.Cleanup(func() {
		srv.Shutdown()
		CloseAllFigures()
	})
	return srv
}

// openFigures is the gauge for leaktest.Track.
func openFigures() float64 { return float64(OpenFigures()) }

// The regression test the service keeps: every endpoint, no leak.
func TestServiceDoesNotLeak(t *testing.T) {
	srv := newServer(t, true)
	leaktest.RunEndpoints(t, srv, requests()...)
	// RunEndpoints takes no options: the figures are tracked on their own.
	t.Run("chart closes its figures", func(t *testing.T) {
		chart := httptest.NewRequest(http.MethodGet, "/chart?report=latency", nil)
		leaktest.Run(t, leaktest.Serve(srv, chart), leaktest.Track("open figures", openFigures, 0))
	})
}

// The unfixed service, checked endpoint by endpoint with Measure (a
// failing Run would fail this suite): exactly the chart and the notify
// endpoints leak, each on its own resource.
func TestLeaksOfTheUnfixedServiceAreFound(t *testing.T) {
	srv := newServer(t, false)
	leaks := map[string][]leaktest.Resource{
		"GET /chart?report=latency":                      {leaktest.Heap, "open figures"},
		"POST /api/notify?hook=https://hooks.example/42": {leaktest.Goroutines},
	}
	for _, req := range requests() {
		name := req.Method + " " + req.URL.RequestURI()
		rep, err := leaktest.Measure(leaktest.Serve(srv, req), leaktest.Track("open figures", openFigures, 0))
		require.NoError(t, err, name)
		found := map[leaktest.Resource]*leaktest.Finding{}
		for i, f := range rep.Findings {
			found[f.Resource] = &rep.Findings[i]
		}
		want := leaks[name]
		if want == nil {
			assert.False(t, rep.Leaked(), "%s should be clean:\n%s", name, rep)
			continue
		}
		for _, res := range want {
			assert.Contains(t, found, res, "%s should leak %s:\n%s", name, res, rep)
		}
		if f := found[leaktest.Goroutines]; f != nil {
			assert.InDelta(t, 1, f.PerIteration, 0.05, "one goroutine per request")
			assert.Contains(t, f.Detail, "created by github.com/heapslope/leaktest/examples/chartsvc.(*Server).notify at chartsvc.go:",
				"the finding names where the goroutines start")
		}
		if f := found["open figures"]; f != nil {
			assert.InDelta(t, 1, f.PerIteration, 0.05, "one figure per request")
		}
		if f := found[leaktest.Heap]; f != nil && len(f.Sites) > 0 {
			assert.Contains(t, f.Sites[0].Function, "newFigure", "the figure's canvas is the largest site")
		}
	}
}

// The endpoints work, fixed or not: the leak tests measure real answers.
func TestEndpointsAnswer(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		srv := newServer(t, fixed)
		get := func(req *http.Request) *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			return w
		}
		reqs := requests()
		w := get(reqs[0])
		assert.Equal(t, "ok\n", w.Body.String())

		w = get(reqs[1])
		var list []Report
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &list))
		assert.Len(t, list, 3)

		w = get(reqs[2])
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.JSONEq(t, `{"rows": 3, "mean": 11.916666666666666}`, w.Body.String())
		w = get(httptest.NewRequest(http.MethodPost, "/api/upload", strings.NewReader("1,x\n")))
		assert.Equal(t, http.StatusBadRequest, w.Code)

		w = get(reqs[3])
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		img, err := png.Decode(bytes.NewReader(w.Body.Bytes()))
		require.NoError(t, err)
		assert.Equal(t, chartWidth, img.Bounds().Dx())
		assert.Equal(t, http.StatusNotFound, get(httptest.NewRequest(http.MethodGet, "/chart?report=nope", nil)).Code)

		w = get(reqs[4])
		assert.Equal(t, http.StatusAccepted, w.Code)
		srv.Publish("latency")
		if fixed {
			// The dispatcher took the update; Shutdown waits for it to
			// finish delivering.
			srv.Shutdown()
		}
		assert.Eventually(t, func() bool { return srv.Delivered() == 1 }, 5*time.Second, 10*time.Millisecond, "fixed=%v", fixed)
	}
}

// TestDemo is the failing demonstration, skipped unless asked for:
//
//	LEAKTEST_DEMO=1 go test ./examples/chartsvc -run TestDemo -v
//
// It runs the service's leak test on the unfixed service: the chart and
// the notify subtests fail, each with what grew, by how much per request
// and where; then the chart once more with its open figures tracked.
func TestDemo(t *testing.T) {
	if os.Getenv("LEAKTEST_DEMO") == "" {
		t.Skip("a failing demonstration: set LEAKTEST_DEMO=1 to see leaktest find the unfixed service's leaks")
	}
	srv := newServer(t, false)
	leaktest.RunEndpoints(t, srv, requests()...)
	t.Run("chart with its figures tracked", func(t *testing.T) {
		chart := httptest.NewRequest(http.MethodGet, "/chart?report=latency", nil)
		leaktest.Run(t, leaktest.Serve(srv, chart), leaktest.Track("open figures", openFigures, 0))
	})
}
