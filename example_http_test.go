package leaktest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heapslope/leaktest"
)

// Serve turns one request into a fn to measure. A handler that keeps
// something per request leaks; one that answers 5xx cannot be measured.
func ExampleServe() {
	var history []string // grows with every request: the leak
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s\n", r.URL.Query().Get("name"))
	})
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		history = append(history, r.URL.Query().Get("page"))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "disk full", http.StatusInsufficientStorage)
	})

	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "/hello?name=gopher", nil),
		httptest.NewRequest("GET", "/visit?page=home", nil),
		httptest.NewRequest("POST", "/upload", strings.NewReader("day,value\n1,12.5\n")),
	} {
		rep, err := leaktest.Measure(leaktest.Serve(mux, req))
		if err != nil {
			first, _, _ := strings.Cut(err.Error(), "\n") // the rest is a stack
			fmt.Println(first)
			continue
		}
		for _, f := range rep.Findings {
			fmt.Printf("%s %s leaks %s\n", req.Method, req.URL.Path, f.Resource)
		}
		if !rep.Leaked() {
			fmt.Printf("%s %s is clean\n", req.Method, req.URL.Path)
		}
	}
	// Output:
	// GET /hello is clean
	// GET /visit leaks heap
	// leaktest: fn panicked on call 1: leaktest: POST /upload answered 507 Insufficient Storage: disk full
}

// RunEndpoints is a service's leak test: one subtest per endpoint, then a
// table of what each retains per request. Here it is inside a test
// function, as it would be in the service's _test.go file.
func ExampleRunEndpoints() {
	testService := func(t *testing.T) {
		srv := http.NewServeMux()
		srv.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		srv.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })

		leaktest.RunEndpoints(t, srv,
			httptest.NewRequest("GET", "/health", nil),
			httptest.NewRequest("POST", "/upload", strings.NewReader("day,value\n1,12.5\n")),
		)
	}
	_ = testService
}
