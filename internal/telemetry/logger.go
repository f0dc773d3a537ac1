package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the process logger: JSON lines on w (stderr when nil) at level, and the
// LevelVar behind it so a reload can change the level without rebuilding loggers that were
// already handed out. An unknown level means info; config validation reports it.
func NewLogger(level string, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	if w == nil {
		w = os.Stderr
	}
	lv := new(slog.LevelVar)
	if l, err := ParseLevel(level); err == nil {
		lv.Set(l)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), lv
}

// ParseLevel reads a config log level: debug, info (also ""), warn or error, case-insensitive.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}
