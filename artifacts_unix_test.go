//go:build unix

package leaktest

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Artifacts get the mode os.WriteFile would give them: 0644 less the
// umask, as the user's other files do.
func TestArtifactsKeepTheUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	tb := &fakeTB{}
	tb.name = "TestArtifactsKeepTheUmask"
	rep := Run(tb, func() {}, ReportDir(t.TempDir()), Iterations(50))
	require.NotEmpty(t, rep.Files)
	for _, f := range rep.Files {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), f)
	}
}
