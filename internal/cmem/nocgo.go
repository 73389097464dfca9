//go:build !cgo

package cmem

// Available reports whether this build can call C.
const Available = false

// Leak is a no-op without cgo.
func Leak(n int) {}

// Churn is a no-op without cgo.
func Churn(n int) {}

// RingStep is a no-op without cgo.
func RingStep(max int) {}

// Free is a no-op without cgo.
func Free() {}
