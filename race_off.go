//go:build !race

package leaktest

const raceEnabled = false

// rssGuardFactor sizes rssGuard.
const rssGuardFactor = 1
