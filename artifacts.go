package leaktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeArtifacts writes the report as JSON and SVG, and the heap profile
// pair when attribution ran, and lists the files in rep.Files.
func (m *meter) writeArtifacts(rep *Report) error {
	dir := m.cfg.reportDir
	if rooted(dir) {
		// go test ./... runs each package's tests in a process of its
		// own, in the package's directory: a relative directory is the
		// package's, a rooted one is shared, and tests of the same
		// name in two packages (of one module or of several, in a
		// go.work) would overwrite each other's files.
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

// rooted: dir starts at a file system's root, on its drive or not
// (Windows' \reports is not absolute, but no more the package's own).
func rooted(dir string) bool {
	return filepath.IsAbs(dir) || filepath.VolumeName(dir) == "" && dir != "" && os.IsPathSeparator(dir[0])
}

// writeFile writes data to path through a temporary file renamed into
// place, so that a reader (or another process writing the same report)
// never sees half of it.
func writeFile(path string, data []byte) error {
	f, err := createTemp(filepath.Dir(path))
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// createTemp is os.CreateTemp with the mode of a file os.WriteFile
// creates (0644 less the umask), not CreateTemp's 0600, which is for
// secrets. The name is the process's and a count's: no random source of
// the user's is drawn from.
func createTemp(dir string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, fmt.Sprintf(".leaktest-%d-%d-%d.tmp", os.Getpid(), time.Now().UnixNano(), tempCount.Add(1)))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		return f, err
	}
}

var tempCount atomic.Int64

// written holds the bases this process has handed out, and per directory
// the files of further measurements that were there before it started: a
// second measurement under the same name (two Run calls in a test,
// -count=2) gets "~2", the next "~3", a suffix go test does not give
// subtests (its own second subtest "A" is "A#01").
var written = struct {
	sync.Mutex
	used  map[string]bool
	stale map[string]map[string][]string // dir, name: files
}{used: map[string]bool{}, stale: map[string]map[string][]string{}}

// processStart: files older than this process are an earlier run's.
var processStart = time.Now()

func uniqueBase(base string) string {
	written.Lock()
	defer written.Unlock()
	name := base
	for k := 2; written.used[name]; k++ {
		name = fmt.Sprintf("%s~%d", base, k)
	}
	written.used[name] = true
	if name == base {
		// An earlier run's further measurements under this name, which
		// this one has not written, would read as this run's.
		dir := filepath.Dir(base)
		for _, f := range staleFiles(dir)[filepath.Base(base)] {
			os.Remove(filepath.Join(dir, f))
		}
	}
	return name
}

// artifactExts are the endings of the files a report writes.
var artifactExts = [...]string{".json", ".svg", ".heap.base.pb.gz", ".heap.pb.gz"}

// staleFiles lists, once per directory and process, the files of further
// measurements (<name>~<k><ext>) written before the process started, by
// name. Written since, they are another process's, running beside it.
func staleFiles(dir string) map[string][]string {
	if idx, ok := written.stale[dir]; ok {
		return idx
	}
	idx := map[string][]string{}
	written.stale[dir] = idx
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name, ok := furtherOf(e.Name())
		if !ok {
			continue
		}
		if fi, err := e.Info(); err != nil || !fi.ModTime().Before(processStart) {
			continue
		}
		idx[name] = append(idx[name], e.Name())
	}
	return idx
}

// furtherOf returns the name whose further measurement file is, for
// "<name>~<k><ext>" with k a number from 2 and ext an artifact's ending.
func furtherOf(file string) (string, bool) {
	for _, ext := range artifactExts {
		rest, ok := strings.CutSuffix(file, ext)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, '~')
		if i <= 0 {
			return "", false
		}
		// The number as uniqueBase writes it: no sign, no leading zero.
		if k, err := strconv.Atoi(rest[i+1:]); err != nil || k < 2 || strconv.Itoa(k) != rest[i+1:] {
			return "", false
		}
		return rest[:i], true
	}
	return "", false
}

// packageDir is the import path of the tests' package, as a relative
// path: "" outside go test, which runs a package's tests in its
// directory, or outside a module.
var packageDir = sync.OnceValue(func() string {
	if !testing.Testing() {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	return importPath(wd)
})

// importPath is dir's import path, from the nearest go.mod, dir or above:
// its module path, then dir's path below it, each element a safe file
// name; "" when there is none.
func importPath(dir string) string {
	for root := dir; ; {
		if data, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
			mod := modulePath(data)
			rel, err := filepath.Rel(root, dir)
			if mod == "" || err != nil {
				return ""
			}
			elems := strings.Split(mod, "/")
			if rel != "." {
				elems = append(elems, strings.Split(filepath.ToSlash(rel), "/")...)
			}
			for i, e := range elems {
				elems[i] = safeName(e)
			}
			return filepath.Join(elems...)
		}
		up := filepath.Dir(root)
		if up == root {
			return ""
		}
		root = up
	}
}

// modulePath is the path in a go.mod's module directive; "" without one.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			if p, err := strconv.Unquote(f[1]); err == nil {
				return p
			}
			return f[1]
		}
	}
	return ""
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
