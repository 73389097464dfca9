package leaktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"unicode/utf8"
)

// Serve returns a fn for Run and Measure that serves req to h once per
// call, as a server answers the same request over and over:
//
//	leaktest.Run(t, leaktest.Serve(srv, httptest.NewRequest("GET", "/chart", nil)))
//
// Each call hands h a fresh clone of req and a fresh
// httptest.ResponseRecorder, so whatever h keeps of them is kept once per
// call, as it would be in production. The clone's context is cancelled
// when h returns, as net/http's server does.
//
// The body of req is read once, when Serve is called, and replayed to
// every clone, with ContentLength and GetBody set to match; req is left
// with a fresh reader over the same bytes.
//
// A response with a 5xx status, or a panic in h, is not a leak but a
// measurement that could not be made: fn panics with an error naming the
// endpoint and the status or the panic's value, which Measure returns as
// its error and Run reports as a failure.
func Serve(h http.Handler, req *http.Request) func() {
	return serve(h, req, nil)
}

// serve is Serve, recording the status of the last response in status
// when it is not nil.
func serve(h http.Handler, req *http.Request, status *atomic.Int64) func() {
	if req == nil {
		return failing(errors.New("leaktest: Serve: nil request"))
	}
	name := endpointName(req)
	if h == nil {
		return failing(fmt.Errorf("leaktest: %s: nil handler", name))
	}
	body, err := replayBody(req)
	if err != nil {
		return failing(fmt.Errorf("leaktest: %s: reading the request body: %w", name, err))
	}
	parent := req.Context()
	return func() {
		// A server cancels the request's context when the handler
		// returns: what waits on it ends then, not never.
		ctx, cancel := context.WithCancel(parent)
		defer cancel()
		r := req.Clone(ctx)
		// Clone shares the body; a server's request always has one.
		r.Body = http.NoBody
		if body != nil {
			r.Body, _ = body()
		}
		w := httptest.NewRecorder()
		serveHTTP(h, w, r, name)
		if status != nil {
			status.Store(int64(w.Code))
		}
		if w.Code >= 500 {
			panic(statusError(name, w))
		}
	}
}

// serveHTTP calls h and turns a panic into an error that names the
// endpoint: the measuring loop reports only the value, and a bare "nil map
// write" from one of several endpoints would not say which.
func serveHTTP(h http.Handler, w http.ResponseWriter, r *http.Request, name string) {
	done := false
	defer func() {
		if done {
			return
		}
		// nil: runtime.Goexit, which the measuring loop reports itself.
		if v := recover(); v != nil {
			if err, ok := v.(error); ok {
				panic(fmt.Errorf("leaktest: %s: handler panicked: %w", name, err))
			}
			panic(fmt.Errorf("leaktest: %s: handler panicked: %v", name, v))
		}
	}()
	h.ServeHTTP(w, r)
	done = true
}

// replayBody reads req's body and returns a function that makes a fresh
// reader over it, or nil when req has no body. It leaves req with such a
// reader and with ContentLength and GetBody to match, which every clone
// inherits.
func replayBody(req *http.Request) (func() (io.ReadCloser, error), error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	get := func() (io.ReadCloser, error) {
		if len(data) == 0 {
			return http.NoBody, nil
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	req.Body, _ = get()
	req.ContentLength = int64(len(data))
	req.GetBody = get
	return get, nil
}

// failing returns a fn that fails on its first call with err, so that a
// request Serve cannot replay fails the measurement with a message instead
// of panicking in the caller's test.
func failing(err error) func() {
	return func() { panic(err) }
}

// statusError names the endpoint, the status and the first line of the
// body, where handlers put the reason (http.Error).
func statusError(name string, w *httptest.ResponseRecorder) error {
	msg := fmt.Sprintf("leaktest: %s answered %d %s", name, w.Code, http.StatusText(w.Code))
	if w.Body != nil {
		line, _, _ := strings.Cut(w.Body.String(), "\n")
		line = strings.TrimSpace(line)
		if len(line) > 200 {
			line = strings.ToValidUTF8(line[:200], "") + "…"
		}
		if line != "" && utf8.ValidString(line) {
			msg += ": " + line
		}
	}
	return errors.New(msg)
}

// endpointName is "METHOD /path?query": the subtest's name and the
// endpoint in errors.
func endpointName(req *http.Request) string {
	if req == nil {
		return "nil request"
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	target := req.RequestURI
	if req.URL != nil {
		target = req.URL.RequestURI()
	}
	return method + " " + target
}

// RunEndpoints measures each request as a subtest of t named after its
// method, path and query (with spaces made underscores by t.Run), each
// Run(t, Serve(h, req)): a leaky endpoint fails its subtest, a clean one
// passes. Then it logs a table to t that ranks the endpoints by heap
// retained per request, with goroutines and descriptors per request and the
// resources each leaked: which endpoint to look at first. The table's
// status is that of the last response; a 404 there means the request
// measured the not-found handler, not the endpoint.
func RunEndpoints(t *testing.T, h http.Handler, reqs ...*http.Request) {
	t.Helper()
	rows := make([]endpointRow, 0, len(reqs))
	for _, req := range reqs {
		req := req
		row := endpointRow{name: endpointName(req)}
		ran := false // false when -run filters the subtest out
		var status atomic.Int64
		t.Run(row.name, func(t *testing.T) {
			t.Helper()
			ran = true
			row.report = Run(t, serve(h, req, &status))
			row.failed = t.Failed()
		})
		row.status = int(status.Load())
		if ran {
			rows = append(rows, row)
		}
	}
	if len(rows) > 0 {
		t.Logf("%s", endpointTable(rows))
	}
}

// endpointRow is one line of RunEndpoints' table.
type endpointRow struct {
	name   string
	status int // of the last response; 0 if none came back
	report *Report
	failed bool
}

// endpointTable ranks the rows by heap, then goroutines, then descriptors
// retained per request; endpoints that could not be measured come last.
func endpointTable(rows []endpointRow) string {
	rows = append([]endpointRow(nil), rows...)
	key := func(r endpointRow) [3]float64 {
		var k [3]float64
		for i, res := range [...]Resource{Heap, Goroutines, FDs} {
			if v, ok := r.perRequest(res); ok {
				k[i] = v
			}
		}
		return k
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if (rows[i].report == nil) != (rows[j].report == nil) {
			return rows[j].report == nil
		}
		ki, kj := key(rows[i]), key(rows[j])
		for n := range ki {
			if ki[n] != kj[n] {
				return ki[n] > kj[n]
			}
		}
		return false
	})
	leaky := 0
	for _, r := range rows {
		if r.report.Leaked() {
			leaky++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "leaktest: %d endpoint(s), %d leaking, most heap retained per request first:\n", len(rows), leaky)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "endpoint\tstatus\theap/req\tgoroutines/req\tfds/req\tverdict")
	for _, r := range rows {
		status := "-"
		if r.status != 0 {
			status = fmt.Sprint(r.status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, status,
			r.cell(Heap), r.cell(Goroutines), r.cell(FDs), r.verdict())
	}
	tw.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// perRequest is the judged growth per call of res, if it was measured.
func (r endpointRow) perRequest(res Resource) (float64, bool) {
	if r.report == nil {
		return 0, false
	}
	for _, s := range r.report.Series {
		if s.Resource == res {
			return s.PerIteration, true
		}
	}
	return 0, false
}

func (r endpointRow) cell(res Resource) string {
	v, ok := r.perRequest(res)
	switch {
	case !ok:
		return "n/a"
	case v == 0:
		return formatValue(res, 0)
	}
	return signed(res, v)
}

func (r endpointRow) verdict() string {
	switch {
	case r.report == nil:
		return "ERROR: not measured (see the subtest)"
	case r.report.Leaked():
		names := make([]string, len(r.report.Findings))
		for i, f := range r.report.Findings {
			names[i] = string(f.Resource)
		}
		return "LEAK: " + strings.Join(names, ", ")
	case r.failed:
		return "FAIL (see the subtest)"
	}
	return "ok"
}
