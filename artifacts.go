package leaktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeArtifacts writes the report as JSON and SVG, and the heap profile
// pair when attribution ran, and lists the files in rep.Files.
func (m *meter) writeArtifacts(rep *Report) error {
	dir := m.cfg.reportDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := m.cfg.name
	if name == "" {
		// Measure has no test name: number the measurements of the
		// process, and name the process (go test ./... runs a process
		// per package), so that one does not overwrite another.
		name = fmt.Sprintf("leaktest-%d-%s", os.Getpid(), m.label)
	}
	base := filepath.Join(dir, safeName(name))
	var errs []error
	write := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			errs = append(errs, err)
			return
		}
		rep.Files = append(rep.Files, path)
	}
	if m.attr != nil && len(m.attr.base) > 0 && len(m.attr.end) > 0 {
		write(base+".heap.base.pb.gz", m.attr.base)
		write(base+".heap.pb.gz", m.attr.end)
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
	if err := os.WriteFile(base+".json", append(data, '\n'), 0o644); err != nil {
		rep.Files = rep.Files[:len(rep.Files)-1]
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
