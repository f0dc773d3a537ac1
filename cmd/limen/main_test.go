package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesValidate keeps every shipped example runnable.
func TestExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"validate", "-c", f}, &out, &errb); code != 0 {
				t.Fatalf("limen validate %s: exit %d\n%s", f, code, errb.String())
			}
		})
	}
}

func TestValidateReportsEveryErrorWithPosition(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(`listeners:
  - name: public
    addr: ":8080"
routes:
  - name: a
    match: { path: /x, methodz: [GET] }
    upstream: nowhere
  - name: b
    match: { path: /y }
    respond: { status: 200 }
    timeout: soon
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"validate", "-c", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errb.String())
	}
	got := errb.String()
	for _, want := range []string{
		path + ":6: routes[0].match.methodz: unknown field \"methodz\"",
		path + ":7: routes[0].upstream",
		path + ":11: routes[1].timeout",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestExplainShowsChainAndMatch(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"explain", "-c", "../../examples/quickstart.yaml", "GET", "http://localhost:8080/api/hello/world"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"browser-cors[cors@edge]", "listener public: route api", "rest=hello/world", "upstream:demo"} {
		if !strings.Contains(s, want) {
			t.Errorf("explain output lacks %q:\n%s", want, s)
		}
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "limen ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command exit %d, want 2", code)
	}
}
