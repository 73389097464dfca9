package leaktest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each call gets its own clone: what a handler does to one request is not
// seen by the next, as with a server.
func TestServeClonesTheRequest(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req := httptest.NewRequest(method, "/items?page=2", nil)
		req.Header.Set("X-Trace", "t1")
		calls := 0
		var bad []string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			got := fmt.Sprintf("%s %s page=%s trace=%s body=%v", r.Method, r.URL.Path, r.URL.Query().Get("page"), r.Header.Get("X-Trace"), r.Body == http.NoBody)
			if want := method + " /items page=2 trace=t1 body=true"; got != want && len(bad) < 5 {
				bad = append(bad, got)
			}
			r.Header.Set("X-Trace", "changed")
			r.URL.RawQuery = "page=9"
			w.Header().Set("Content-Length", "4")
			if r.Method != http.MethodHead {
				io.WriteString(w, "item")
			}
		})
		rep, err := Measure(Serve(h, req), Iterations(200))
		require.NoError(t, err)
		assert.Equal(t, 200, calls, method)
		assert.Empty(t, bad, method)
		assert.False(t, rep.Leaked(), "%s", rep)
		assert.Equal(t, "t1", req.Header.Get("X-Trace"), "req itself is never served")
	}
}

// A body is replayed in full on every call, however much of it the
// previous call read.
func TestServeReplaysTheBody(t *testing.T) {
	var data []byte
	for i := 0; len(data) < 64<<10; i++ {
		data = fmt.Appendf(data, "%d,row %d\n", i, i*i)
	}
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"known length", bytes.NewReader(data)},
		{"unknown length", io.MultiReader(bytes.NewReader(data[:100]), bytes.NewReader(data[100:]))},
	} {
		req := httptest.NewRequest(http.MethodPost, "/upload", tc.body)
		calls := 0
		var bad []string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			if calls%2 == 0 {
				io.ReadFull(r.Body, make([]byte, 10)) // the next call must not care
				return
			}
			got, err := io.ReadAll(r.Body)
			switch {
			case err != nil || !bytes.Equal(got, data):
				bad = append(bad, fmt.Sprintf("call %d: read %d bytes, err %v", calls, len(got), err))
			case r.ContentLength != int64(len(data)):
				bad = append(bad, fmt.Sprintf("call %d: ContentLength %d", calls, r.ContentLength))
			case r.GetBody == nil:
				bad = append(bad, fmt.Sprintf("call %d: no GetBody", calls))
			default:
				rc, _ := r.GetBody()
				if again, _ := io.ReadAll(rc); !bytes.Equal(again, data) {
					bad = append(bad, fmt.Sprintf("call %d: GetBody gave %d bytes", calls, len(again)))
				}
			}
		})
		_, err := Measure(Serve(h, req), Iterations(400))
		require.NoError(t, err, tc.name)
		assert.Equal(t, 400, calls, tc.name)
		assert.Empty(t, bad, tc.name)
		left, err := io.ReadAll(req.Body)
		require.NoError(t, err)
		assert.Equal(t, data, left, "%s: req keeps its body", tc.name)
	}
}

// A form is parsed from each call's own body.
func TestServeReplaysAForm(t *testing.T) {
	form := url.Values{"name": {"chart"}, "days": {"30"}}
	req := httptest.NewRequest(http.MethodPost, "/save", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	calls, bad := 0, 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.FormValue("name") != "chart" || r.PostFormValue("days") != "30" {
			bad++
		}
	})
	_, err := Measure(Serve(h, req), Iterations(300))
	require.NoError(t, err)
	assert.Equal(t, 300, calls)
	assert.Zero(t, bad)
}

// What Serve makes per call is garbage: serving a request to a handler
// that keeps nothing is clean.
func TestServeRetainsNothing(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	rep, err := Measure(Serve(mux, httptest.NewRequest(http.MethodPost, "/echo", strings.NewReader("hello"))), Budget(time.Second))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
}

// A goroutine that waits for the request's context ends when the handler
// returns, as under net/http's server: not a leak.
func TestServeCancelsTheRequestContext(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { <-r.Context().Done() }()
	})
	rep, err := Measure(Serve(h, httptest.NewRequest("GET", "/watch", nil)))
	require.NoError(t, err)
	assert.False(t, rep.Leaked(), "%s", rep)
}

func TestServeHandlerPanicIsAnError(t *testing.T) {
	errDB := errors.New("db closed")
	for _, tc := range []struct {
		panicWith any
		want      string
	}{
		{"kaboom", "leaktest: fn panicked on call 3: leaktest: GET /boom?x=1: handler panicked: kaboom"},
		{errDB, "leaktest: fn panicked on call 3: leaktest: GET /boom?x=1: handler panicked: db closed"},
	} {
		calls := 0
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls++; calls == 3 {
				panic(tc.panicWith)
			}
		})
		_, err := Measure(Serve(h, httptest.NewRequest(http.MethodGet, "/boom?x=1", nil)))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "TestServeHandlerPanicIsAnError.func", "the stack shows the handler")
	}

	// The panic value stays an error for whoever recovers it.
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(errDB) })
	func() {
		defer func() {
			err, _ := recover().(error)
			assert.ErrorIs(t, err, errDB)
		}()
		Serve(h, httptest.NewRequest(http.MethodGet, "/", nil))()
	}()
}

func TestServe5xxIsAnError(t *testing.T) {
	calls := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls++
		switch {
		case r.URL.Path == "/bare":
			w.WriteHeader(http.StatusInternalServerError)
		case calls == 5:
			http.Error(w, "disk full\nat /var/spool", http.StatusInsufficientStorage)
		}
	})
	_, err := Measure(Serve(h, httptest.NewRequest(http.MethodPost, "/upload", strings.NewReader("a,b"))))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "leaktest: fn panicked on call 5: leaktest: POST /upload answered 507 Insufficient Storage: disk full\n")

	_, err = Measure(Serve(h, httptest.NewRequest(http.MethodGet, "/bare", nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn panicked on call 1: leaktest: GET /bare answered 500 Internal Server Error\n")

	// A 4xx is an answer like any other.
	_, err = Measure(Serve(http.NotFoundHandler(), httptest.NewRequest(http.MethodGet, "/nowhere", nil)), Iterations(50))
	assert.NoError(t, err)
}

func TestServeInvalidArguments(t *testing.T) {
	_, err := Measure(Serve(http.NotFoundHandler(), nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn panicked on call 1: leaktest: Serve: nil request")

	_, err = Measure(Serve(nil, httptest.NewRequest(http.MethodGet, "/x", nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn panicked on call 1: leaktest: GET /x: nil handler")

	req := httptest.NewRequest(http.MethodPost, "/x", io.MultiReader(strings.NewReader("abc"), errReader{}))
	_, err = Measure(Serve(http.NotFoundHandler(), req))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fn panicked on call 1: leaktest: POST /x: reading the request body: broken pipe")
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

// The summary table, on reports made by hand: ranked by heap, then
// goroutines, then descriptors; a series not measured is n/a.
func TestEndpointTable(t *testing.T) {
	rep := func(heap, goroutines float64, leaks ...Resource) *Report {
		r := &Report{Series: []Series{{Resource: Heap, PerIteration: heap}, {Resource: Goroutines, PerIteration: goroutines}}}
		for _, l := range leaks {
			r.Findings = append(r.Findings, Finding{Resource: l})
		}
		return r
	}
	table := endpointTable([]endpointRow{
		{name: "GET /health", status: 200, report: rep(0, 0)},
		{name: "GET /broken", status: 500},
		{name: "POST /notify", status: 202, report: rep(712, 1, Heap, Goroutines)},
		{name: "GET /tiny", status: 200, report: rep(0.04, 0)},
		{name: "GET /chart", status: 200, report: rep(16.5*1024, 0, Heap)},
		{name: "GET /spawn", status: 200, report: rep(0, 1, Goroutines)},
	})
	want := strings.Join([]string{
		"leaktest: 6 endpoint(s), 3 leaking, most heap retained per request first:",
		"endpoint      status  heap/req   goroutines/req  fds/req  verdict",
		"GET /chart    200     +16.5 KiB  0               n/a      LEAK: heap",
		"POST /notify  202     +712 B     +1              n/a      LEAK: heap, goroutines",
		"GET /tiny     200     +0.04 B    0               n/a      ok",
		"GET /spawn    200     0 B        +1              n/a      LEAK: goroutines",
		"GET /health   200     0 B        0               n/a      ok",
		"GET /broken   500     n/a        n/a             n/a      ERROR: not measured (see the subtest)",
	}, "\n")
	assert.Equal(t, want, table)
}

// RunEndpoints fails the leaky endpoints' subtests and passes the clean
// ones. A failing test cannot run inside this suite, so the test runs its
// own binary on a helper test and reads its output.
func TestRunEndpointsFailsTheLeakyOnes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child test process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunEndpointsHelperProcess$", "-test.v", "-test.short", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "LEAKTEST_RUN_ENDPOINTS_HELPER=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the helper must fail:\n%s", out)
	text := string(out)

	results := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL): TestRunEndpointsHelperProcess/(\S+)`).FindAllStringSubmatch(text, -1) {
		results[m[2]] = m[1]
	}
	assert.Equal(t, map[string]string{
		"GET_/leak/heap":        "FAIL",
		"POST_/leak/goroutines": "FAIL",
		"GET_/broken":           "FAIL",
		"GET_/health":           "PASS",
		"GET_/items?id=7":       "PASS",
		"POST_/echo":            "PASS",
	}, results, "%s", text)
	assert.Contains(t, text, "heap leaks: +", "the failures are Run's")
	assert.Contains(t, text, "goroutines leaks: +1 per call")
	assert.Contains(t, text, "created by github.com/heapslope/leaktest.(*httpLeaks).spawn")
	assert.Contains(t, text, "GET /broken answered 500 Internal Server Error: oops")

	_, table, found := strings.Cut(text, "leaktest: 6 endpoint(s), 2 leaking, most heap retained per request first:\n")
	require.True(t, found, "%s", text)
	lines := strings.Split(table, "\n")
	require.GreaterOrEqual(t, len(lines), 7, "%s", text)
	assert.Regexp(t, `^\s+endpoint\s+status\s+heap/req\s+goroutines/req\s+fds/req\s+verdict$`, lines[0])
	rows := lines[1:7]
	for i, want := range []string{
		`GET /leak/heap\s+200\s+\+4(\.\d+)? KiB\s+0\s+0\s+LEAK: heap\b`, // and rss under -race: its shadow memory
		`POST /leak/goroutines\s+202\s+\+\d+(\.\d+)? B\s+\+1\s+0\s+LEAK: .*goroutines`,
	} {
		assert.Regexp(t, `^\s+`+want, rows[i], "row %d, most heap first", i)
	}
	for _, name := range []string{"GET /health", "GET /items?id=7", "POST /echo"} {
		assert.Regexp(t, `(?m)^\s+`+regexp.QuoteMeta(name)+`\s+200\s+.*\sok$`, strings.Join(rows[2:5], "\n"))
	}
	assert.Regexp(t, `^\s+GET /broken\s+500\s+n/a\s+n/a\s+n/a\s+ERROR`, rows[5])
}

// httpLeaks is the helper process's service: two leaky endpoints and
// three clean ones, and one that fails.
type httpLeaks struct {
	mu      sync.Mutex
	kept    [][]byte
	items   map[string]int
	release chan struct{}
	wg      sync.WaitGroup
}

func (s *httpLeaks) spawn() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.release
	}()
}

func (s *httpLeaks) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/items", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.items[r.URL.Query().Get("id")]++ // one entry per id: bounded
		s.mu.Unlock()
		fmt.Fprintf(w, `{"id": %q}`, r.URL.Query().Get("id"))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	mux.HandleFunc("/leak/heap", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.kept = append(s.kept, make([]byte, 4096))
		s.mu.Unlock()
	})
	mux.HandleFunc("/leak/goroutines", func(w http.ResponseWriter, r *http.Request) {
		s.spawn()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	return mux
}

// TestRunEndpointsHelperProcess is the child of
// TestRunEndpointsFailsTheLeakyOnes; it fails by design.
func TestRunEndpointsHelperProcess(t *testing.T) {
	if os.Getenv("LEAKTEST_RUN_ENDPOINTS_HELPER") == "" {
		t.Skip("the child process of TestRunEndpointsFailsTheLeakyOnes")
	}
	s := &httpLeaks{items: map[string]int{}, release: make(chan struct{})}
	t.Cleanup(func() {
		close(s.release)
		s.wg.Wait()
	})
	RunEndpoints(t, s.handler(),
		httptest.NewRequest(http.MethodGet, "/health", nil),
		httptest.NewRequest(http.MethodGet, "/items?id=7", nil),
		httptest.NewRequest(http.MethodPost, "/echo", strings.NewReader(`{"a": 1}`)),
		httptest.NewRequest(http.MethodGet, "/leak/heap", nil),
		httptest.NewRequest(http.MethodPost, "/leak/goroutines", nil),
		httptest.NewRequest(http.MethodGet, "/broken", nil),
	)
}
