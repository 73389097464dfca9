//go:build !cgo

package cmem

// Available reports whether this build can call C.
const Available = false

// Leak is a no-op without cgo.
func Leak(n int) {}

// Churn is a no-op without cgo.
func Churn(n int) {}

// RingStep is a no-op without cgo.
func RingStep(slots, lo, hi int) {}

// Block is nothing without cgo.
type Block struct{}

// NewBlock returns an empty Block without cgo.
func NewBlock(n int) *Block { return &Block{} }

// Free is a no-op without cgo.
func Free() {}
