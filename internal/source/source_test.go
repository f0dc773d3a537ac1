package source

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package when a watcher or signal loop outlives its context. The os/signal
// goroutine started by signal.Notify is ignored by goleak's defaults.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is how long a test waits for an event that must happen. It bounds a hang, it is never
// an assertion about how fast something happens.
const wait = 5 * time.Second

// load is one call to Reloader.Load: the source it named and what the watched file held then.
type load struct {
	source  string
	content string
	err     error
}

// recorder is a Reloader that reads files on every Load, as the runtime reads the config and
// its certificates, and reports each call.
type recorder struct {
	paths []string // read on Load; content is theirs joined with "|"
	loads chan load

	mu    sync.Mutex
	count int
}

func newRecorder(paths ...string) *recorder {
	return &recorder{paths: paths, loads: make(chan load, 1024)}
}

func (r *recorder) Load(source string) error {
	l := load{source: source}
	var parts []string
	for _, p := range r.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			l.err = err
		}
		parts = append(parts, string(b))
	}
	l.content = strings.Join(parts, "|")
	r.mu.Lock()
	r.count++
	r.mu.Unlock()
	r.loads <- l
	return nil
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// next returns the next Load, failing the test when none comes.
func (r *recorder) next(t *testing.T, what string) load {
	t.Helper()
	select {
	case l := <-r.loads:
		return l
	case <-time.After(wait):
		t.Fatalf("no reload after %s", what)
		return load{}
	}
}

// until returns the first Load that saw want in the watched file. Loads that saw an older
// version are skipped: a reload may legitimately run before the last write lands.
func (r *recorder) until(t *testing.T, want, what string) load {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case l := <-r.loads:
			if l.source != "file" {
				t.Fatalf("Load(%q) after %s, want Load(\"file\")", l.source, what)
			}
			if l.err == nil && l.content == want {
				return l
			}
		case <-deadline:
			t.Fatalf("no reload that saw %q after %s", want, what)
			return load{}
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// run starts w.Run and stops it when the test ends, failing the test if Run does not return.
func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Watcher.Run did not return after its context ended")
		}
	})
}

// watch creates a watcher over files with a short debounce and runs it for the test.
func watch(t *testing.T, r Reloader, files ...string) *Watcher {
	t.Helper()
	w, err := NewWatcher(r, discard(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w.SetFiles(files)
	run(t, w)
	return w
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replace writes content to a temporary file in dir and renames it over path, as editors and
// the gateway's own tests do.
func replace(t *testing.T, dir, path, content string) {
	t.Helper()
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReloadsWhenTheConfigChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		update func(t *testing.T, dir, cfg string)
	}{
		{"write in place", func(t *testing.T, dir, cfg string) {
			writeFile(t, cfg, "v2")
		}},
		{"rename into place from the same directory", func(t *testing.T, dir, cfg string) {
			replace(t, dir, cfg, "v2")
		}},
		{"rename into place from another directory", func(t *testing.T, dir, cfg string) {
			replace(t, t.TempDir(), cfg, "v2")
		}},
		{"remove then create", func(t *testing.T, dir, cfg string) {
			if err := os.Remove(cfg); err != nil {
				t.Fatal(err)
			}
			writeFile(t, cfg, "v2")
		}},
		{"backup by rename then write (vim)", func(t *testing.T, dir, cfg string) {
			if err := os.Rename(cfg, cfg+"~"); err != nil {
				t.Fatal(err)
			}
			writeFile(t, cfg, "v2")
		}},
		{"create, write and close separately", func(t *testing.T, dir, cfg string) {
			f, err := os.OpenFile(cfg, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("v"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("2"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := filepath.Join(dir, "limen.yaml")
			writeFile(t, cfg, "v1")
			r := newRecorder(cfg)
			watch(t, r, cfg)
			tc.update(t, dir, cfg)
			r.until(t, "v2", tc.name)

			// The watch survives the update: a third version is delivered too.
			replace(t, dir, cfg, "v3")
			r.until(t, "v3", "a second update")
		})
	}
}

// TestWatcherKubernetesConfigMap updates a config mounted the way the kubelet mounts a
// ConfigMap: limen.yaml is a symlink to ..data/limen.yaml, ..data a symlink to a timestamped
// directory, and an update swaps ..data by renaming a new symlink over it. limen.yaml itself
// never changes. No event names limen.yaml itself (they name ..data_tmp, ..data and the timestamped
// directories): the watcher must notice that the path now resolves elsewhere.
func TestWatcherKubernetesConfigMap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "limen.yaml"), content)
	}
	version("..2025_01_01_00_00_00.1", "v1")
	if err := os.Symlink("..2025_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "limen.yaml")
	if err := os.Symlink(filepath.Join("..data", "limen.yaml"), cfg); err != nil {
		t.Fatal(err)
	}
	r := newRecorder(cfg)
	watch(t, r, cfg)

	version("..2025_01_01_00_00_01.2", "v2")
	if err := os.Symlink("..2025_01_01_00_00_01.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2025_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	r.until(t, "v2", "the ConfigMap's ..data symlink was swapped")
}

func TestWatcherReloadsWhenAReferencedFileChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		update func(t *testing.T, certs, cert string)
	}{
		{"write in place", func(t *testing.T, certs, cert string) { writeFile(t, cert, "cert v2") }},
		{"rename into place", func(t *testing.T, certs, cert string) { replace(t, certs, cert, "cert v2") }},
		{"remove then create", func(t *testing.T, certs, cert string) {
			if err := os.Remove(cert); err != nil {
				t.Fatal(err)
			}
			writeFile(t, cert, "cert v2")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := filepath.Join(dir, "limen.yaml")
			writeFile(t, cfg, "v1")
			// The certificate lives outside the config's directory, so its directory is
			// watched only because the config references it.
			certs := t.TempDir()
			cert, key := filepath.Join(certs, "api.pem"), filepath.Join(certs, "api.key")
			writeFile(t, cert, "cert v1")
			writeFile(t, key, "key v1")
			r := newRecorder(cert, key)
			watch(t, r, cfg, cert, key)

			tc.update(t, certs, cert)
			r.until(t, "cert v2|key v1", "the certificate changed")

			// The key is watched as well.
			writeFile(t, key, "key v2")
			r.until(t, "cert v2|key v2", "the key changed")
		})
	}
}

func TestWatcherConfigDirectory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		update func(t *testing.T, dir string)
	}{
		{"new .yaml file", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "20-routes.yaml"), "routes") }},
		{"new .yml file", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "20-routes.yml"), "routes") }},
		{"existing file rewritten", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "10-base.yaml"), "base v2") }},
		{"existing file replaced by rename", func(t *testing.T, dir string) {
			replace(t, t.TempDir(), filepath.Join(dir, "10-base.yaml"), "base v2")
		}},
		{"file removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "10-base.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "10-base.yaml"), "base v1")
			r := newRecorder()
			watch(t, r, dir)
			tc.update(t, dir)
			if l := r.next(t, tc.name); l.source != "file" {
				t.Fatalf("Load(%q), want Load(\"file\")", l.source)
			}
		})
	}
}

// TestWatcherMatters checks which paths count as the config after SetFiles. It is the filter
// Run applies to every event, so this is where "an unrelated file does not reload" is checked
// without waiting for something not to happen.
func TestWatcherMatters(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	conf := filepath.Join(root, "conf")
	certs := filepath.Join(root, "certs")
	confd := filepath.Join(root, "conf.d")
	for _, d := range []string{conf, certs, confd, filepath.Join(confd, "sub")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(conf, "limen.yaml")
	cert := filepath.Join(certs, "api.pem")
	writeFile(t, cfg, "v1")
	writeFile(t, cert, "cert")
	// A referenced file that does not exist yet still matters: creating it must reload.
	missing := filepath.Join(certs, "ca.pem")

	w, err := NewWatcher(newRecorder(), discard(), 0)
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	w.SetFiles([]string{cfg, cert, missing, confd})

	for _, tc := range []struct {
		path string
		want bool
	}{
		{cfg, true},
		{filepath.Join(conf, ".", "limen.yaml"), true},
		{filepath.Join(certs, "..", "conf", "limen.yaml"), true},
		{cert, true},
		{missing, true},
		{filepath.Join(conf, "other.yaml"), false}, // a file config's directory is not a config directory
		{filepath.Join(conf, "limen.yaml.tmp"), false},
		{filepath.Join(conf, ".limen.yaml.swp"), false},
		{filepath.Join(conf, "limen.yaml~"), false},
		{filepath.Join(certs, "api.key"), false}, // not referenced
		{confd, true},
		{filepath.Join(confd, "10-base.yaml"), true},
		{filepath.Join(confd, "20-routes.yml"), true},
		{filepath.Join(confd, "README.md"), false},
		{filepath.Join(confd, "10-base.yaml.tmp"), false},
		{filepath.Join(confd, "sub", "30.yaml"), false}, // only the directory itself
		{filepath.Join(root, "limen.yaml"), false},
	} {
		if got := w.matters(tc.path); got != tc.want {
			t.Errorf("matters(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if got, want := sorted(w.w.WatchList()), sorted([]string{conf, certs, confd}); !slices.Equal(got, want) {
		t.Errorf("watched directories = %q, want %q", got, want)
	}

	// A later document that drops the certificate stops watching its directory.
	w.SetFiles([]string{cfg})
	if w.matters(cert) {
		t.Errorf("matters(%q) after the certificate was dropped = true", cert)
	}
	if w.matters(filepath.Join(confd, "10-base.yaml")) {
		t.Errorf("matters(%q) after the directory was dropped = true", filepath.Join(confd, "10-base.yaml"))
	}
	if !w.matters(cfg) {
		t.Errorf("matters(%q) = false", cfg)
	}
	if got, want := w.w.WatchList(), []string{conf}; !slices.Equal(got, want) {
		t.Errorf("watched directories after SetFiles(config only) = %q, want %q", got, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestWatcherCoalescesBursts writes many versions before the watcher reads any event, so every
// event is pending when Run starts: the burst is read in one go, far inside the debounce, and
// yields one reload of the last version. A later write then yields exactly one more. The count
// is taken when that second reload arrives, so the test never waits for something not to happen.
func TestWatcherCoalescesBursts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "limen.yaml")
	writeFile(t, cfg, "v0")
	r := newRecorder(cfg)
	// The debounce only has to outlast reading events that are already queued.
	w, err := NewWatcher(r, discard(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w.SetFiles([]string{cfg})
	const burst = 50
	for i := 1; i <= burst; i++ {
		if i%2 == 0 {
			writeFile(t, cfg, "v"+strconv.Itoa(i))
		} else {
			replace(t, dir, cfg, "v"+strconv.Itoa(i))
		}
	}
	run(t, w)
	first := r.next(t, "a burst of writes")
	if first.source != "file" || first.content != "v"+strconv.Itoa(burst) {
		t.Fatalf("first reload = %+v, want Load(\"file\") seeing v%d", first, burst)
	}

	replace(t, dir, cfg, "final")
	second := r.next(t, "a write after the burst")
	if second.content != "final" {
		t.Fatalf("second reload saw %q, want %q", second.content, "final")
	}
	if n := r.calls(); n != 2 {
		t.Fatalf("%d writes and one more gave %d reloads, want 2", burst, n)
	}
}

func TestWatcherRunStops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, cfg string)
	}{
		{"idle", func(t *testing.T, cfg string) {}},
		// A change whose debounce has not fired yet: Run must stop its timer and return.
		{"reload pending", func(t *testing.T, cfg string) { writeFile(t, cfg, "v2") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := filepath.Join(dir, "limen.yaml")
			writeFile(t, cfg, "v1")
			// An hour of debounce: the pending reload can only end by cancellation.
			w, err := NewWatcher(newRecorder(cfg), discard(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			w.SetFiles([]string{cfg})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { w.Run(ctx); close(done) }()
			tc.before(t, cfg)
			cancel()
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatal("Run did not return after its context ended")
			}
			// Run closed the fsnotify watcher (its reading goroutine is gone; goleak checks
			// that), so a late SetFiles from the runtime only logs.
			w.SetFiles([]string{cfg, filepath.Join(t.TempDir(), "cert.pem")})
			if err := w.w.Add(dir); err == nil {
				t.Error("the fsnotify watcher still accepts watches after Run returned")
			}
		})
	}
}

// TestSignals sends SIGHUP to the test process. Before anything is sent the test registers its
// own channel for SIGHUP, so the process never has the default disposition (termination) while
// a signal is in flight, and it learns from that channel that each signal was dispatched:
// os/signal hands a signal to every registered channel in one step, so Signals' channel holds it
// by then if Signals has registered. Signals gives no "registered" notice, so the test sends
// again until a reload arrives. Not parallel: SIGHUP is process-wide, and nothing else in this
// package uses it.
func TestSignals(t *testing.T) {
	hup := make(chan os.Signal, 16)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Signals(ctx, r); close(done) }()
	defer func() {
		cancel()
		<-done
	}()

	send := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-hup:
		case <-time.After(wait):
			t.Fatal("SIGHUP was not delivered to the process")
		}
	}

	deadline := time.Now().Add(wait)
	var got load
	for reloaded := false; !reloaded; {
		if time.Now().After(deadline) {
			t.Fatal("no reload after SIGHUP")
		}
		send()
		select {
		case got = <-r.loads:
			reloaded = true
		case <-time.After(50 * time.Millisecond): // Signals may not be registered yet: send again
		}
	}
	if got.source != "sighup" {
		t.Fatalf("Load(%q) after SIGHUP, want Load(\"sighup\")", got.source)
	}

	// Registered now, so every further SIGHUP is a further reload (signals that arrive while a
	// reload runs may merge, so send one at a time).
	for i := range 3 {
		send()
		if l := r.next(t, "SIGHUP #"+strconv.Itoa(i+2)); l.source != "sighup" {
			t.Fatalf("Load(%q) after SIGHUP, want Load(\"sighup\")", l.source)
		}
	}

	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Signals did not return after its context ended")
	}
}

func TestSignalsReturnsWhenContextIsDone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { Signals(ctx, newRecorder()); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Signals did not return with a done context")
	}
}

func TestNewWatcherDefaultDebounce(t *testing.T) {
	t.Parallel()
	w, err := NewWatcher(newRecorder(), discard(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.w.Close() // Run never starts here; its deferred Close is what normally stops fsnotify
	if w.debounce <= 0 {
		t.Fatalf("debounce = %v with 0 given, want a positive default", w.debounce)
	}
}
