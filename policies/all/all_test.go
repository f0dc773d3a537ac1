package all

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

// TestEveryKindIsDocumented enforces that each registered kind has a reference page with at
// least one YAML example; each kind's own TestDocExamples builds them.
func TestEveryKindIsDocumented(t *testing.T) {
	kinds := policy.Kinds()
	if len(kinds) == 0 {
		t.Fatal("no kinds registered")
	}
	for _, k := range kinds {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			policytest.CheckDocHasExamples(t, filepath.Join("..", "..", "docs", "policies", k+".md"), k)
		})
	}
}

// TestPackageAnatomy enforces the house anatomy of every policy package: a config.go that
// declares Config with a Validate method and a doc comment on every field, an interface guard,
// registration in init(), and a blank import here.
func TestPackageAnatomy(t *testing.T) {
	src, err := os.ReadFile("all.go")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == "all" || name == "internal" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(string(src), `"github.com/limen-gateway/limen/policies/`+name+`"`) {
				t.Errorf("policies/%s is not imported by policies/all", name)
			}
			fset := token.NewFileSet()
			files, err := filepath.Glob(filepath.Join("..", name, "*.go"))
			if err != nil {
				t.Fatal(err)
			}
			var hasConfig, hasValidate, hasGuard, hasRegister bool
			for _, fname := range files {
				if strings.HasSuffix(fname, "_test.go") {
					continue
				}
				src, err := os.ReadFile(fname)
				if err != nil {
					t.Fatal(err)
				}
				f, err := parser.ParseFile(fset, fname, src, parser.ParseComments)
				if err != nil {
					t.Fatal(err)
				}
				ast.Inspect(f, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.TypeSpec:
						if n.Name.Name == "Config" && filepath.Base(fname) == "config.go" {
							hasConfig = true
							if st, ok := n.Type.(*ast.StructType); ok {
								for _, fld := range st.Fields.List {
									if fld.Doc == nil {
										t.Errorf("%s: Config field %v has no doc comment", fname, fld.Names)
									}
								}
							}
						}
					case *ast.FuncDecl:
						if n.Name.Name == "Validate" && n.Recv != nil && filepath.Base(fname) == "config.go" {
							hasValidate = true
						}
						if n.Name.Name == "init" && strings.Contains(nodeText(fset, src, n), "policy.Register(") {
							hasRegister = true
						}
					case *ast.ValueSpec:
						if len(n.Names) > 0 && n.Names[0].Name == "_" {
							if sel, ok := n.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Policy" {
								hasGuard = true
							}
						}
					}
					return true
				})
			}
			for what, ok := range map[string]bool{"Config in config.go": hasConfig, "Config.Validate in config.go": hasValidate, "var _ policy.Policy guard": hasGuard, "policy.Register in init()": hasRegister} {
				if !ok {
					t.Errorf("policies/%s lacks %s", name, what)
				}
			}
		})
	}
}

func nodeText(fset *token.FileSet, src []byte, n ast.Node) string {
	return string(src[fset.Position(n.Pos()).Offset:fset.Position(n.End()).Offset])
}
