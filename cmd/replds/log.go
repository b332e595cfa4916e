package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// logFlags select the log handler; only cmd picks one.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.format, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	bindEnv(cmd.Flags(), "log-format", "log-level")
}

// logger builds the logger, writing to stderr, and makes it the default.
func (l *logFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch l.format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, usageErrorf("--log-format %q: want text or json", l.format)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	return log, nil
}
