// Command limen is the Limen API gateway.
//
//	limen run      -c limen.yaml      serve traffic (SIGHUP reloads, SIGINT/SIGTERM drain)
//	limen validate -c limen.yaml      check a config: exit 0, or 1 with every error as FILE:LINE: path: reason
//	limen explain  -c limen.yaml [METHOD URL]   routes, their effective chains, and which route a request takes
//	limen version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	_ "time/tzdata" // plans read calendars in any IANA zone, also on hosts without zoneinfo

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/gateway"
	"github.com/limen-gateway/limen/internal/runtime"
	_ "github.com/limen-gateway/limen/policies/all"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(runWith(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runWith dispatches the commands that read stdin, then the rest.
func runWith(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "hash-key":
			return hashKey(args[1:], stdin, stdout, stderr)
		case "hash-password":
			return hashPassword(args[1:], stdin, stdout, stderr)
		}
	}
	return run(args, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: limen <command> [flags]

commands:
  run      -c FILE                 serve traffic with the config in FILE (default limen.yaml)
  validate -c FILE                 check a config; prints every error as FILE:LINE: path: reason
  explain  -c FILE [METHOD URL]    show routes, their policy chains, and which route a request takes
  hash-key [-generate]             print the SHA-256 digest of an API key read from stdin (or of a new one)
  hash-password                    print a bcrypt hash of a password read from stdin
  version                          print the version
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "limen.yaml", "config file or directory")
	switch cmd {
	case "version", "-v", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "run", "validate", "explain":
	default:
		fmt.Fprintf(stderr, "limen: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	switch cmd {
	case "validate":
		return validate(*path, stdout, stderr)
	case "explain":
		return explain(*path, fs.Args(), stdout, stderr)
	default:
		return serve(*path, stderr)
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "limen " + v
}

func load(path string) (*config.Document, error) {
	doc, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := runtime.Check(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

func printErrors(w io.Writer, err error) {
	var ce config.Errors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func validate(path string, stdout, stderr io.Writer) int {
	doc, err := load(path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d upstreams, %d listeners)\n", path,
		len(doc.Config.Routes), len(doc.Config.Upstreams), len(doc.Config.Listeners))
	return 0
}

func explain(path string, args []string, stdout, stderr io.Writer) int {
	doc, err := load(path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	var method, url string
	switch len(args) {
	case 0:
	case 2:
		method, url = args[0], args[1]
	default:
		fmt.Fprintln(stderr, "usage: limen explain -c FILE [METHOD URL]")
		return 2
	}
	if err := runtime.Explain(doc, stdout, method, url); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func serve(path string, stderr io.Writer) int {
	level := new(slog.LevelVar)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.Start(gateway.Options{Path: path, Logger: log, Level: level})
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	log.Info("limen started", "version", versionString(), "config", path)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	signal.Stop(sig)
	log.Info("shutting down", "signal", got.String())
	if err := g.Shutdown(context.Background()); err != nil {
		log.Warn("shutdown grace period ended with requests in flight", "err", err)
	}
	log.Info("limen stopped")
	return 0
}
