package leaktest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The descriptor guard stops a fast descriptor leak before the process
// runs out, and its finding says both: stopped early, and what was left
// open.
func TestDescriptorGuardStopsEarly(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 8192 {
		t.Skipf("needs 8192 descriptors (RLIMIT_NOFILE %d)", lim.Cur)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	rep, err := Measure(func() {
		for i := 0; i < 32; i++ { // 64 descriptors per call
			r, w, err := os.Pipe()
			if err != nil {
				panic(err)
			}
			files = append(files, r, w)
		}
	})
	require.NoError(t, err)
	f := rep.finding(FDs)
	require.NotNil(t, f, "%s", rep)
	assert.Contains(t, f.Detail, "stopped early")
	assert.Contains(t, f.Detail, "more than 2048")
	assert.Contains(t, f.Detail, "descriptors left open:")
	assert.Less(t, len(files), 4096, "stopped soon after the guard's 2048")
}

// The descriptors the samples read (/proc/self/status, /proc/self/fd) are
// closed when Measure returns: after a verdict, and after a timeout while
// fn is still blocked, so that the caller never counts them as its own.
func TestOwnDescriptorsClosedOnReturn(t *testing.T) {
	own := func() []string {
		var list []string
		for fd, target := range openFDs() {
			if strings.HasSuffix(target, "/status") || strings.HasSuffix(target, "/fd") {
				list = append(list, strconv.Itoa(fd)+" "+target)
			}
		}
		return list
	}
	require.Empty(t, own(), "before")
	_, err := Measure(func() {}, Iterations(32))
	require.NoError(t, err)
	assert.Empty(t, own(), "after a verdict")

	release := make(chan struct{})
	calls := 0
	_, err = Measure(func() {
		if calls++; calls == 10 {
			<-release
		}
	}, Budget(100*time.Millisecond), Timeout(300*time.Millisecond))
	require.Error(t, err)
	assert.Empty(t, own(), "after a timeout, fn still blocked")
	close(release)
	_, err = Measure(func() {}, Iterations(32)) // waits for the abandoned loop's turn
	require.NoError(t, err)
	assert.Empty(t, own(), "after the abandoned loop ended")
}
