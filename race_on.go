//go:build race

package leaktest

// raceEnabled: the race detector's shadow memory grows with the heap,
// outside it, so RSS follows any heap growth.
const raceEnabled = true

// rssGuardFactor sizes rssGuard: the shadow memory follows the heap.
const rssGuardFactor = 8
