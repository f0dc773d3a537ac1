// Package arch enforces DESIGN.md's dependency rules with `go list`, so the layering is a test,
// not a convention in prose.
package arch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/limen-gateway/limen"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
	GoFiles    []string
	Dir        string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func internal(path string) bool { return strings.HasPrefix(path, module+"/") || path == module }

func rel(path string) string { return strings.TrimPrefix(path, module+"/") }

// allowedModules are the third-party modules DESIGN.md picked; anything else needs a reason
// written into DESIGN.md first.
var allowedModules = []string{
	"go.yaml.in/yaml/v3", "github.com/fsnotify/fsnotify", "github.com/prometheus/",
	"go.uber.org/goleak", "github.com/google/go-cmp", "golang.org/x/time", "golang.org/x/sync",
	"golang.org/x/net", "golang.org/x/sys", "github.com/coder/websocket",
	"github.com/beorn7/perks", "github.com/cespare/xxhash", "github.com/munnerz/goautoneg",
	"google.golang.org/protobuf", "go.opentelemetry.io/", "github.com/redis/go-redis",
	"github.com/golang-jwt/jwt", "github.com/MicahParks/keyfunc", "github.com/MicahParks/jwkset", "github.com/coreos/go-oidc",
	"golang.org/x/oauth2", "github.com/go-jose/go-jose", // go-oidc's own dependencies: the code exchange and JOSE
	"github.com/pb33f/", "github.com/corazawaf/", "google.golang.org/grpc", "github.com/bufbuild/protocompile",
	"github.com/tetratelabs/wazero", "github.com/http-wasm/", "github.com/sony/gobreaker",
	"golang.org/x/crypto", "github.com/maypok86/otter", "github.com/kylelemons/godebug",
	"github.com/dgryski/go-rendezvous", "go.yaml.in/yaml/v2", "github.com/prometheus/procfs",
}

func TestDependencyRules(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		for _, imp := range p.Imports {
			if !internal(imp) {
				if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					continue // standard library
				}
				if name == "policy" {
					t.Errorf("policy imports %s: the public API may import only the standard library", imp)
				}
				ok := false
				for _, m := range allowedModules {
					if strings.HasPrefix(imp, m) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s, which is not a dependency DESIGN.md allows", name, imp)
				}
				continue
			}
			dep := rel(imp)
			switch {
			case name == "policy":
				t.Errorf("policy imports %s: the public API may import only the standard library", dep)
			case strings.HasPrefix(name, "policies/") && name != "policies/all":
				if strings.HasPrefix(dep, "policies/") {
					t.Errorf("%s imports %s: a policy never imports another policy", name, dep)
				}
				for _, banned := range []string{"internal/runtime", "internal/server", "internal/admin", "internal/source", "internal/config"} {
					if dep == banned {
						t.Errorf("%s imports %s: policies see only the policy API and small helpers", name, dep)
					}
				}
			case name == "internal/config":
				if dep != "policy" {
					t.Errorf("internal/config imports %s: config only decodes, defaults and validates", dep)
				}
			case name == "internal/router" || strings.HasPrefix(name, "internal/upstream"):
				if dep == "internal/config" {
					t.Errorf("%s imports internal/config: it takes its own option structs", name)
				}
			}
			if dep == "internal/source" && name != "internal/gateway" {
				t.Errorf("%s imports internal/source: only the gateway wiring starts sources", name)
			}
			if strings.HasPrefix(dep, "policies/") && name != "cmd/limen" && name != "policies/all" && !strings.HasPrefix(name, "test/") {
				t.Errorf("%s imports %s: only the binary picks the policy distribution", name, dep)
			}
		}
	}
}

// TestOnlyServerListens keeps sockets in the server: other packages serve handlers, they never bind.
func TestOnlyServerListens(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		if name == "internal/server" || name == "internal/proxyproto" || name == "internal/redistest" { // redistest finds a free port for a test redis-server
			continue
		}
		for _, f := range p.GoFiles {
			fh, err := os.Open(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			for n := 1; sc.Scan(); n++ {
				line := sc.Text()
				if strings.Contains(line, "net.Listen(") || strings.Contains(line, ".ListenAndServe(") {
					t.Errorf("%s/%s:%d binds a socket; only internal/server does", name, f, n)
				}
			}
			fh.Close()
		}
	}
}
