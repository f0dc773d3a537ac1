// Package gateway wires the layers into a running gateway: runtime (snapshots and reloads),
// server (sockets and hygiene), admin, telemetry and the config sources. cmd/limen runs one; the
// end-to-end tests start the very same thing in-process.
package gateway

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/limen-gateway/limen/internal/admin"
	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/runtime"
	"github.com/limen-gateway/limen/internal/server"
	"github.com/limen-gateway/limen/internal/source"
	"github.com/limen-gateway/limen/internal/telemetry"
)

// Gateway is a running Limen.
type Gateway struct {
	Runtime *runtime.Runtime
	Server  *server.Server
	Metrics *telemetry.Metrics
	log     *slog.Logger
	stop    context.CancelFunc
	done    chan struct{}
}

// Options configure Start.
type Options struct {
	// Path is the config file or directory.
	Path   string
	Logger *slog.Logger
	Level  *slog.LevelVar
	// WatchDebounce is how long file changes settle before a reload (default 200ms).
	WatchDebounce time.Duration
	// NoSignals disables SIGHUP handling (tests run several gateways in one process).
	NoSignals bool
}

// Start loads the config, binds every listener and starts the file watcher. On error nothing is
// left running.
func Start(o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger
	metrics := telemetry.NewMetrics()
	rt := runtime.New(runtime.Options{Path: o.Path, Logger: log, Level: o.Level, Metrics: metrics})
	srv := server.New(rt, log)
	rt.SetBinder(srv)
	rt.SetAdmin(func(cfg *config.Config) (runtime.HandlerSpec, runtime.HandlerSpec, error) {
		return adminSpecs(cfg, rt, metrics, log)
	})

	ctx, stop := context.WithCancel(context.Background())
	g := &Gateway{Runtime: rt, Server: srv, Metrics: metrics, log: log, stop: stop, done: make(chan struct{})}
	watcher, err := source.NewWatcher(rt, log, o.WatchDebounce)
	if err != nil {
		log.Warn("file watching unavailable; reload with SIGHUP or the admin API", "err", err)
	} else {
		rt.OnApply(func(doc *config.Document) { watcher.SetFiles(append([]string{o.Path}, doc.Files...)) })
	}
	if err := rt.Load("start"); err != nil {
		if watcher != nil {
			_ = watcher.Close()
		}
		stop()
		_ = srv.Shutdown(context.Background())
		rt.Close()
		return nil, err
	}
	waiting := 0
	finished := make(chan struct{}, 2)
	if watcher != nil {
		waiting++
		go func() { watcher.Run(ctx); finished <- struct{}{} }()
	}
	if !o.NoSignals {
		waiting++
		go func() { source.Signals(ctx, rt); finished <- struct{}{} }()
	}
	go func() {
		for range waiting {
			<-finished
		}
		close(g.done)
	}()
	return g, nil
}

// Addr returns the bound address of a listener ("admin" and "ops" name those listeners).
func (g *Gateway) Addr(name string) net.Addr { return g.Server.Addr(name) }

// Shutdown drains: readiness fails first, then after the configured shutdown delay the
// listeners close and in-flight requests get the grace period; hijacked connections (WebSockets)
// are closed at its end. ctx bounds the whole drain in addition to the configured grace.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.Runtime.SetNotReady()
	if s := g.Runtime.Current(); s != nil {
		cfg := s.Doc.Config.Server
		select {
		case <-time.After(cfg.ShutdownDelay.D()):
		case <-ctx.Done():
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Grace.D())
		defer cancel()
	}
	err := g.Server.Shutdown(ctx)
	g.stop()
	<-g.done
	g.Runtime.Close()
	return err
}

func adminSpecs(cfg *config.Config, rt *runtime.Runtime, metrics *telemetry.Metrics, log *slog.Logger) (runtime.HandlerSpec, runtime.HandlerSpec, error) {
	var adm, ops runtime.HandlerSpec
	limits := func(s *server.ListenerSpec) {
		s.HTTP1 = true
		s.ReadHeaderTimeout, s.IdleTimeout, s.MaxHeaderBytes = 10*time.Second, 60*time.Second, 64<<10
	}
	if a := cfg.Admin; a != nil {
		opts := admin.Options{Addrs: []string{a.Addr}, Audit: rt.Audit}
		for _, t := range a.Tokens {
			opts.Tokens = append(opts.Tokens, admin.Token{Name: t.Name, Secret: t.Token, Scope: t.Scope})
		}
		adm = server.ListenerSpec{Name: "admin", Addr: a.Addr,
			Handler: admin.New(opts, rt, metrics.Handler(), log.With("component", "admin"))}
		limits(&adm)
	}
	if o := cfg.Ops; o != nil {
		ops = server.ListenerSpec{Name: "ops", Addr: o.Addr, Handler: admin.NewOps(rt, metrics.Handler())}
		limits(&ops)
	}
	return adm, ops, nil
}
