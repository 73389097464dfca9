package leaktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeArtifacts writes the report as JSON and SVG, and the heap profile
// pair when attribution ran, and lists the files in rep.Files.
func (m *meter) writeArtifacts(rep *Report) error {
	dir := m.cfg.reportDir
	if filepath.IsAbs(dir) {
		// go test ./... runs each package's tests in a process of its
		// own, in the package's directory: a relative directory is the
		// package's, an absolute one is shared, and tests of the same
		// name in two packages would overwrite each other's files.
		dir = filepath.Join(dir, packageDir())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := m.cfg.name
	if name == "" {
		// Measure has no test name: number the measurements of the
		// process, and name the process, so that one does not
		// overwrite another.
		name = fmt.Sprintf("leaktest-%d-%s", os.Getpid(), m.label)
	}
	base := uniqueBase(filepath.Join(dir, safeName(name)))
	var errs []error
	write := func(path string, data []byte) {
		if err := writeFile(path, data); err != nil {
			errs = append(errs, err)
			return
		}
		rep.Files = append(rep.Files, path)
	}
	profiles := [...]string{base + ".heap.base.pb.gz", base + ".heap.pb.gz"}
	if m.attr != nil && len(m.attr.base) > 0 && len(m.attr.end) > 0 {
		write(profiles[0], m.attr.base)
		write(profiles[1], m.attr.end)
	} else {
		// An earlier run's, which this report does not list.
		for _, p := range profiles {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	var chart bytes.Buffer
	if err := writeChart(&chart, rep); err != nil {
		errs = append(errs, err)
	} else {
		write(base+".svg", chart.Bytes())
	}
	// The JSON goes last, so that it lists every file, itself included.
	rep.Files = append(rep.Files, base+".json")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		rep.Files = rep.Files[:len(rep.Files)-1]
		return errors.Join(append(errs, err)...)
	}
	if err := writeFile(base+".json", append(data, '\n')); err != nil {
		rep.Files = rep.Files[:len(rep.Files)-1]
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeFile writes data to path through a temporary file renamed into
// place, so that a reader (or another process writing the same report)
// never sees half of it.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".leaktest-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644) // CreateTemp's 0600 is for secrets
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// written counts the reports written per path by this process: a second
// measurement under the same name (two Run calls in a test, -count=2)
// gets "#01", as go test names a second subtest of the same name.
var written = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func uniqueBase(base string) string {
	written.Lock()
	defer written.Unlock()
	k := written.n[base]
	written.n[base] = k + 1
	if k == 0 {
		return base
	}
	return fmt.Sprintf("%s#%02d", base, k)
}

// packageDir is the directory of the tests' package below its module's
// root: "" for the root, and outside go test, which runs a package's tests
// in its directory.
var packageDir = sync.OnceValue(func() string {
	if !testing.Testing() {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	return belowModule(wd)
})

// belowModule is dir's path below the nearest directory, dir or above,
// that holds a go.mod; "" for that directory or when there is none.
func belowModule(dir string) string {
	for root := dir; ; {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			rel, err := filepath.Rel(root, dir)
			if err != nil || rel == "." {
				return ""
			}
			return rel
		}
		up := filepath.Dir(root)
		if up == root {
			return ""
		}
		root = up
	}
}

// safeName makes a test name a file name: "/" and anything a file system
// may refuse become "_"; an empty name is "leaktest".
func safeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\' || r == ':' || r == '*' || r == '?' || r == '"' ||
			r == '<' || r == '>' || r == '|' || r < 0x20 || r == 0x7f || r == ' ':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) > 200 { // file systems cap names near 255 bytes; leave room for suffixes
		s = strings.ToValidUTF8(s[:200], "")
	}
	s = strings.Trim(s, ".") // no "..", no hidden files
	if s == "" {
		return "leaktest"
	}
	return s
}
