//go:build !linux

package leaktest

// Without cgo, darwin and windows give no allocation-free reading of the
// current resident set (getrusage reports only the peak), so RSS is
// reported as unavailable there.
func openRSS() *rssSource { return nil }

func (r *rssSource) read() (rssReading, bool) { return rssReading{}, false }

func (r *rssSource) close() {}

// arenasPerThread matters where RSS is judged: Linux only.
func arenasPerThread() bool { return false }
