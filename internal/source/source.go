// Package source tells the runtime when to reload: file changes under the config's directory and
// in every file the config references (certificates, CAs), and SIGHUP. The admin API is the third
// source; it calls the runtime directly.
package source

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reloader is what a source triggers.
type Reloader interface {
	Load(source string) error
}

// Watcher watches the directories holding the config and the files it references, and reloads
// (debounced) when any of those files change. It watches directories, not files, because editors
// replace files by rename, which drops a watch on the file itself. A watched path that is a
// symlink is also followed: Kubernetes mounts a ConfigMap or Secret as symlinks through a
// "..data" link that it swaps atomically, so the path itself never changes; the watcher notices
// that the path now resolves elsewhere. The target's own directory is watched too, for a link to
// a file that is edited where it lives.
type Watcher struct {
	w        *fsnotify.Watcher
	r        Reloader
	log      *slog.Logger
	debounce time.Duration
	close    sync.Once

	mu    sync.Mutex
	files map[string]bool   // absolute paths that matter, and what they resolve to
	links map[string]string // watched path -> the path it resolved to at SetFiles
	dirs  map[string]bool   // directories with a watch in place
}

// NewWatcher starts watching; call SetFiles after each successful load with the document's files.
// Close (or Run's end) releases it.
func NewWatcher(r Reloader, log *slog.Logger, debounce time.Duration) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	return &Watcher{w: fw, r: r, log: log, debounce: debounce, files: map[string]bool{}, links: map[string]string{}, dirs: map[string]bool{}}, nil
}

// Close stops the watch; it is safe to call more than once and while Run runs.
func (w *Watcher) Close() error {
	var err error
	w.close.Do(func() { err = w.w.Close() })
	return err
}

// SetFiles replaces the watched set. A path that is a directory (a config directory) matters as a
// whole: any YAML file in it counts.
func (w *Watcher) SetFiles(paths []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	files := map[string]bool{}
	links := map[string]string{}
	want := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			want[abs] = true
			files[abs] = true
			continue
		}
		files[abs] = true
		want[filepath.Dir(abs)] = true
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			links[abs] = real
			files[real] = true
			want[filepath.Dir(real)] = true
		}
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.w.Remove(d)
			delete(w.dirs, d)
		}
	}
	for d := range want {
		if w.dirs[d] {
			continue
		}
		// A directory that cannot be watched now (it may not exist yet) is retried on the
		// next SetFiles rather than recorded as watched.
		if err := w.w.Add(d); err != nil {
			w.log.Warn("cannot watch directory; changes in it need SIGHUP", "dir", d, "err", err)
			continue
		}
		w.dirs[d] = true
	}
	w.files, w.links = files, links
}

func (w *Watcher) matters(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	if w.files[abs] {
		return true
	}
	// A file inside a watched config directory.
	if w.files[filepath.Dir(abs)] {
		ext := filepath.Ext(abs)
		if ext == ".yaml" || ext == ".yml" {
			return true
		}
	}
	// Anything else in a watched directory may have re-pointed a link (Kubernetes swaps
	// "..data"): a watched path that now resolves elsewhere has changed.
	changed := false
	for path, was := range w.links {
		if real, err := filepath.EvalSymlinks(path); err == nil && real != was {
			w.links[path] = real
			w.files[real] = true
			changed = true
		}
	}
	return changed
}

// Run reloads on changes until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	defer w.Close()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || !w.matters(ev.Name) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(w.debounce)
			} else {
				timer.Reset(w.debounce)
			}
			fire = timer.C
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.log.Warn("file watch error", "err", err)
		case <-fire:
			fire = nil
			// Errors are recorded and logged by the runtime; the old config keeps serving.
			_ = w.r.Load("file")
		}
	}
}

// Signals reloads on SIGHUP until ctx ends.
func Signals(ctx context.Context, r Reloader) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			_ = r.Load("sighup")
		}
	}
}
