package main

import (
	"crypto/sha256"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// corpusTables maps the corpus variables to the test that runs them.
var corpusTables = map[string]string{
	"leakyCorpus": "TestCorpusLeaky",
	"cleanCorpus": "TestCorpusClean",
}

// corpusCases reads the case names from the package's _test.go files that
// build here (corpus_test.go, corpus_linux_test.go, ...): the name: field
// of every element of a []workload literal that is the value of
// leakyCorpus or cleanCorpus, or is appended to one. Reading the source
// instead of running the corpus once costs nothing; a name it gets wrong
// shows up as a crash ("the case did not run").
func corpusCases(root string) ([]testCase, error) {
	files, err := filepath.Glob(filepath.Join(root, "*_test.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	names := map[string][]string{}
	fset := token.NewFileSet()
	for _, file := range files {
		if ok, err := build.Default.MatchFile(root, filepath.Base(file)); err != nil || !ok {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			return nil, err
		}
		var perr error
		ast.Inspect(f, func(n ast.Node) bool {
			var lhs []ast.Expr
			var rhs []ast.Expr
			switch n := n.(type) {
			case *ast.ValueSpec:
				for _, id := range n.Names {
					lhs = append(lhs, id)
				}
				rhs = n.Values
			case *ast.AssignStmt:
				lhs, rhs = n.Lhs, n.Rhs
			default:
				return true
			}
			for i, l := range lhs {
				id, ok := l.(*ast.Ident)
				if !ok || corpusTables[id.Name] == "" || i >= len(rhs) {
					continue
				}
				ast.Inspect(rhs[i], func(n ast.Node) bool {
					lit, ok := n.(*ast.CompositeLit)
					if !ok || !isWorkloadSlice(lit.Type) {
						return true
					}
					for _, elt := range lit.Elts {
						name := fieldString(elt, "name")
						if name == "" {
							perr = fmt.Errorf("%s: an element of %s has no literal name", fset.Position(elt.Pos()), id.Name)
						}
						names[id.Name] = append(names[id.Name], name)
					}
					return false
				})
			}
			return true
		})
		if perr != nil {
			return nil, perr
		}
	}
	var cases []testCase
	for _, table := range []string{"leakyCorpus", "cleanCorpus"} {
		if len(names[table]) == 0 {
			return nil, fmt.Errorf("%s: no case found in %s", root, table)
		}
		for _, name := range names[table] {
			// t.Run writes spaces as underscores.
			name = strings.ReplaceAll(name, " ", "_")
			cases = append(cases, testCase{test: corpusTables[table], name: name})
		}
	}
	return cases, nil
}

// isWorkloadSlice reports whether t is []workload.
func isWorkloadSlice(t ast.Expr) bool {
	a, ok := t.(*ast.ArrayType)
	if !ok || a.Len != nil {
		return false
	}
	id, ok := a.Elt.(*ast.Ident)
	return ok && id.Name == "workload"
}

// fieldString is the string literal of a composite literal's field.
func fieldString(e ast.Expr, field string) string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return ""
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == field {
			if b, ok := kv.Value.(*ast.BasicLit); ok && b.Kind == token.STRING {
				if s, err := strconv.Unquote(b.Value); err == nil {
					return s
				}
			}
		}
	}
	return ""
}

// startBurner starts this program again as a CPU burner (-burn): a
// separate process that keeps every CPU busy until stop closes its stdin.
func startBurner() (stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-burn")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		in.Close()
		cmd.Wait()
	}, nil
}

// burn spins one goroutine per CPU until stdin closes, which it does when
// the harness stops it or dies.
func burn() {
	for i := 0; i < runtime.NumCPU(); i++ {
		go func() {
			x := uint64(1)
			for {
				x = x*6364136223846793005 + 1442695040888963407
				if x == 0 {
					fmt.Print("")
				}
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
}

// fingerprint hashes the module's go.mod, go.sum and .go files (outside
// scripts/ and hidden or testdata directories): a short name for the
// sources a test binary was built from.
func fingerprint(root string) string {
	h := sha256.New()
	n := 0
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || rel == "scripts") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") && rel != "go.mod" && rel != "go.sum" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(b))
		h.Write(b)
		n++
		return nil
	})
	return fmt.Sprintf("sha256:%x (%d files)", h.Sum(nil)[:6], n)
}
