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
// and Kubernetes ConfigMaps replace files by rename, which drops a watch on the file itself.
type Watcher struct {
	w        *fsnotify.Watcher
	r        Reloader
	log      *slog.Logger
	debounce time.Duration

	mu    sync.Mutex
	files map[string]bool // absolute paths that matter
	dirs  map[string]bool
}

// NewWatcher starts watching; call SetFiles after each successful load with the document's files.
func NewWatcher(r Reloader, log *slog.Logger, debounce time.Duration) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	return &Watcher{w: fw, r: r, log: log, debounce: debounce, files: map[string]bool{}, dirs: map[string]bool{}}, nil
}

// SetFiles replaces the watched set. A path that is a directory (a config directory) matters as a
// whole: any YAML file in it counts.
func (w *Watcher) SetFiles(paths []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	files := map[string]bool{}
	dirs := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			dirs[abs] = true
			files[abs] = true
			continue
		}
		files[abs] = true
		dirs[filepath.Dir(abs)] = true
	}
	for d := range w.dirs {
		if !dirs[d] {
			_ = w.w.Remove(d)
		}
	}
	for d := range dirs {
		if !w.dirs[d] {
			if err := w.w.Add(d); err != nil {
				w.log.Warn("cannot watch directory; changes in it need SIGHUP", "dir", d, "err", err)
			}
		}
	}
	w.files, w.dirs = files, dirs
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
		return ext == ".yaml" || ext == ".yml"
	}
	return false
}

// Run reloads on changes until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	defer w.w.Close()
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
