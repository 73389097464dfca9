package leaktest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tleaktest.test\nVmRSS:\t   17200 kB\nRssAnon:\t    9000 kB\nRssFile:\t    8200 kB\nVmSwap:\t0 kB\n")
	for _, c := range []struct {
		key  string
		want uint64
		ok   bool
	}{
		{"\nVmRSS:", 17200 << 10, true},
		{"\nRssFile:", 8200 << 10, true},
		{"\nVmSwap:", 0, true},
		{"\nRssShmem:", 0, false}, // absent: older kernels
		{"\nName:", 0, false},     // not a number
	} {
		got, ok := statusKB(status, []byte(c.key))
		assert.Equal(t, c.want, got, c.key)
		assert.Equal(t, c.ok, ok, c.key)
	}
}

// The reading is the kernel's: the file part lies within the whole, and
// the process has some of both (its code is a mapped file).
func TestRSSReading(t *testing.T) {
	r := openRSS()
	if r == nil {
		t.Skip("no /proc/self/status")
	}
	defer r.close()
	got, ok := r.read()
	assert.True(t, ok)
	assert.Greater(t, got.total, got.file)
	assert.Greater(t, got.file, uint64(0))
}
