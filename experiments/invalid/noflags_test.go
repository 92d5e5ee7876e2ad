package invalid

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// flagName matches a command-line flag in a message: "--epochs".
var flagName = regexp.MustCompile(`(^|[^-\w])--[a-z][a-z0-9-]*`)

// TestLibraryErrorsNameNoFlags reads every library package of the module
// (all but cmd/ and tests) and fails on an error message that names a flag:
// the library names a setting by its field (Errorf, weights.OptionError)
// and the command renames it to its flag (cmd/stitch/flags.go), so that
// one setting can be a different flag in each command, or none.
func TestLibraryErrorsNameNoFlags(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "cmd" || rel == "build" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, m := range flagsInErrors(t, path) {
			t.Errorf("%s: an error message names a flag: %s", filepath.ToSlash(rel)+m.where, m.text)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type flagUse struct{ where, text string }

// flagsInErrors lists the string literals that name a flag inside the
// calls that make errors (Errorf, errors.New, Wrap, errAt and the like) and
// the composite literals of error types (…Error, Setting) of a file.
func flagsInErrors(t *testing.T, path string) []flagUse {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []flagUse
	ast.Inspect(f, func(n ast.Node) bool {
		if !makesError(n) {
			return true
		}
		ast.Inspect(n, func(m ast.Node) bool {
			lit, ok := m.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err == nil && flagName.MatchString(s) {
				out = append(out, flagUse{":" + strconv.Itoa(fset.Position(lit.Pos()).Line), s})
			}
			return true
		})
		return false
	})
	return out
}

// makesError reports whether n is a call that makes an error or a literal
// of an error type.
func makesError(n ast.Node) bool {
	name := func(e ast.Expr) string {
		switch x := e.(type) {
		case *ast.Ident:
			return x.Name
		case *ast.SelectorExpr:
			if pkg, ok := x.X.(*ast.Ident); ok && x.Sel.Name == "New" {
				return pkg.Name + ".New"
			}
			return x.Sel.Name
		case *ast.StarExpr:
			if id, ok := x.X.(*ast.Ident); ok {
				return id.Name
			}
		}
		return ""
	}
	switch x := n.(type) {
	case *ast.CallExpr:
		switch s := name(x.Fun); {
		case s == "Errorf", s == "errors.New", s == "Wrap", s == "errAt", strings.HasSuffix(s, "Errorf"):
			return true
		}
	case *ast.CompositeLit:
		s := name(x.Type)
		return strings.HasSuffix(s, "Error") || s == "Setting"
	}
	return false
}
