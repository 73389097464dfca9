//go:build cgo

// Package cmem holds memory outside the Go heap, through C's malloc, for
// leaktest's own tests: a leak the Go heap never sees. The blocks are
// chained in C, so the Go heap holds nothing for them.
package cmem

/*
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static void *head;

static void leak(size_t n) {
	if (n < sizeof(void *)) n = sizeof(void *);
	void *p = malloc(n);
	if (!p) return;
	memset(p, 0xab, n); // touched, so resident
	*(void **)p = head;
	head = p;
}

static void churn(size_t n) {
	void *p = malloc(n);
	if (p) memset(p, 0xcd, n);
	free(p);
}

// A ring of up to RING blocks: each step frees the oldest of the first
// slots blocks and mallocs one in its place, of lo to hi bytes, so that
// what is live stays bounded.
#define RING 1024
static void *ring[RING];
static unsigned long ringAt;
static unsigned long long ringSeed = 88172645463325252ULL;

static void ringStep(unsigned long slots, size_t lo, size_t hi) {
	ringSeed ^= ringSeed << 13;
	ringSeed ^= ringSeed >> 7;
	ringSeed ^= ringSeed << 17;
	size_t n = lo + ringSeed % (hi - lo + 1);
	unsigned long i = ringAt++ % (slots < RING ? slots : RING);
	free(ring[i]);
	ring[i] = malloc(n);
	if (ring[i]) memset(ring[i], 0xef, n);
}

static void release(void) {
	for (int i = 0; i < RING; i++) {
		free(ring[i]);
		ring[i] = NULL;
	}
	while (head) {
		void *next = *(void **)head;
		free(head);
		head = next;
	}
#ifdef __GLIBC__
	// Freed blocks stay resident in glibc's arenas, and the next run's
	// leak would reuse them without growing RSS: give them back.
	malloc_trim(0);
#endif
}
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Available reports whether this build can call C.
const Available = true

// Leak mallocs n bytes, touches them and keeps them until Free.
func Leak(n int) { C.leak(C.size_t(n)) }

// Churn mallocs n bytes, touches them and frees them.
func Churn(n int) { C.churn(C.size_t(n)) }

// RingStep frees the oldest of slots blocks (at most 1024) and mallocs,
// in its place, one of lo to hi bytes (pseudo-random), touched: C memory
// that is reused, never leaked.
func RingStep(slots, lo, hi int) { C.ringStep(C.ulong(slots), C.size_t(lo), C.size_t(hi)) }

// Block is C memory that the garbage collector frees, as many cgo
// bindings' wrappers do: by a finalizer, once the Block is unreachable.
type Block struct{ p unsafe.Pointer }

// NewBlock mallocs n bytes, touched, freed by the Block's finalizer.
func NewBlock(n int) *Block {
	b := &Block{C.malloc(C.size_t(n))}
	if b.p != nil {
		C.memset(b.p, 0x5a, C.size_t(n))
	}
	runtime.SetFinalizer(b, func(b *Block) { C.free(b.p) })
	return b
}

// Free releases everything Leak and RingStep kept.
func Free() { C.release() }
