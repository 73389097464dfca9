// Package chartsvc is a small reporting service with the two leaks of
// leaktest's issue 4 "leaktest for services", and their fixes.
//
// In the original story a gunicorn/Flask service grew until its workers
// timed out. One endpoint drew a chart with matplotlib and never closed the
// figure, and pyplot keeps every figure open until it is closed. Finding it
// took a memory middleware, logs grepped by pid and a repro loop made by
// hand. Here the same mistake, and a goroutine left waiting per request,
// are found by one test: leaktest.RunEndpoints over the service's
// requests. The tests run it on the fixed service; to watch it fail on the
// service as first written:
//
//	LEAKTEST_DEMO=1 go test ./examples/chartsvc -run TestDemo -v
//
// Endpoints:
//
//	GET  /health                 "ok"
//	GET  /api/reports            the reports, as JSON
//	POST /api/upload             a CSV of "day,value" rows; answers their count and mean
//	GET  /chart?report=ID        the report drawn as a PNG; leaks its figure unless fixed
//	POST /api/notify?hook=URL    calls URL when a report changes; leaks a goroutine unless fixed
package chartsvc

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Chart size: small, to keep the example's tests fast; a real one is some
// ten times larger and leaks that much faster.
const chartWidth, chartHeight = 160, 90

// Report is one time series the service serves.
type Report struct {
	ID     string    `json:"id"`
	Title  string    `json:"title"`
	Points []float64 `json:"-"`
}

// Server is the service, an http.Handler.
type Server struct {
	mux     *http.ServeMux
	fixed   bool
	reports map[string]*Report
	order   []string

	updates chan string   // ids of changed reports, from Publish
	quit    chan struct{} // closed by Shutdown
	stop    sync.Once
	wg      sync.WaitGroup

	mu        sync.Mutex
	hooks     map[string]bool // the fixed version's subscriptions
	delivered atomic.Int64
}

// NewServer returns the service: as first written (fixed false), with its
// two leaks, or with both fixed. Shutdown ends its goroutines.
func NewServer(fixed bool) *Server {
	s := &Server{
		mux:     http.NewServeMux(),
		fixed:   fixed,
		reports: map[string]*Report{},
		updates: make(chan string),
		quit:    make(chan struct{}),
		hooks:   map[string]bool{},
	}
	for i, title := range []string{"Latency", "Errors", "Signups"} {
		r := &Report{ID: []string{"latency", "errors", "signups"}[i], Title: title, Points: make([]float64, 30)}
		for d := range r.Points {
			r.Points[d] = 100 + 40*math.Sin(float64(d+7*i)/4) + float64(d*i)
		}
		s.reports[r.ID] = r
		s.order = append(s.order, r.ID)
	}
	s.mux.HandleFunc("/health", s.health)
	s.mux.HandleFunc("/api/reports", s.list)
	s.mux.HandleFunc("/api/upload", s.upload)
	s.mux.HandleFunc("/chart", s.chart)
	s.mux.HandleFunc("/api/notify", s.notify)
	if fixed {
		s.wg.Add(1)
		go s.dispatch()
	}
	return s
}

// ServeHTTP serves the endpoints listed in the package comment.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Shutdown ends the goroutines the service started, leaked ones included,
// and waits for them: tests call it so that nothing outlives them.
func (s *Server) Shutdown() {
	s.stop.Do(func() { close(s.quit) })
	s.wg.Wait()
}

// Publish tells the subscribers that report id changed. It waits until an
// update is taken, or the service shuts down.
func (s *Server) Publish(id string) {
	select {
	case s.updates <- id:
	case <-s.quit:
	}
}

// Delivered is the number of notifications sent to hooks.
func (s *Server) Delivered() int { return int(s.delivered.Load()) }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	list := make([]*Report, len(s.order))
	for i, id := range s.order {
		list[i] = s.reports[id]
	}
	writeJSON(w, http.StatusOK, list)
}

// upload reads a CSV of "day,value" rows, after an optional header, and
// answers how many there were and their mean.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	rd := csv.NewReader(http.MaxBytesReader(w, r.Body, 1<<20))
	rd.FieldsPerRecord = 2
	line, rows, sum := 0, 0, 0.0
	for {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			http.Error(w, "bad CSV: "+err.Error(), http.StatusBadRequest)
			return
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil && line == 0 {
			line++
			continue // the header
		}
		line++
		if err != nil {
			http.Error(w, "bad value: "+err.Error(), http.StatusBadRequest)
			return
		}
		rows++
		sum += v
	}
	if rows == 0 {
		http.Error(w, "no rows", http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rows": rows, "mean": sum / float64(rows)})
}

// chart draws a report as a PNG.
func (s *Server) chart(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	rep, ok := s.reports[r.URL.Query().Get("report")]
	if !ok {
		http.Error(w, "no such report", http.StatusNotFound)
		return
	}
	fig := newFigure(chartWidth, chartHeight)
	if s.fixed {
		// The fix. Without it every figure stays in the registry, the
		// bug of the original service: plt.figure() with no plt.close().
		defer fig.Close()
	}
	fig.Plot(rep.Points)
	w.Header().Set("Content-Type", "image/png")
	if err := fig.WritePNG(w); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// notify subscribes a webhook to report updates.
func (s *Server) notify(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	hook := r.URL.Query().Get("hook")
	if hook == "" {
		http.Error(w, "missing hook", http.StatusBadRequest)
		return
	}
	if s.fixed {
		// The fix: one subscription per hook, served by the one
		// dispatcher goroutine.
		s.mu.Lock()
		s.hooks[hook] = true
		s.mu.Unlock()
	} else {
		// The bug: a goroutine per request, parked until the next
		// update. Updates are rare and a repeated subscription starts
		// another, so they pile up.
		s.wg.Add(1)
		go s.waitForUpdate(hook)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) waitForUpdate(hook string) {
	defer s.wg.Done()
	select {
	case id := <-s.updates:
		s.deliver(hook, id)
	case <-s.quit:
	}
}

// dispatch sends each update to every hook subscribed.
func (s *Server) dispatch() {
	defer s.wg.Done()
	for {
		select {
		case id := <-s.updates:
			s.mu.Lock()
			for hook := range s.hooks {
				s.deliver(hook, id)
			}
			s.mu.Unlock()
		case <-s.quit:
			return
		}
	}
}

// deliver would POST the update to hook; the example only counts it, as
// it has no network.
func (s *Server) deliver(hook, id string) {
	s.delivered.Add(1)
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
