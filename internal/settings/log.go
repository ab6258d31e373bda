package settings

import (
	"io"
	"log/slog"
)

// Logging is a server's log settings: --log-level and --log-format.
type Logging struct {
	Level  string // debug, info, warn or error
	Format string // text or json
}

// DefaultLogging logs info and above as text.
func DefaultLogging() Logging { return Logging{Level: "info", Format: "text"} }

// Settings are the two table entries that fill l.
func (l *Logging) Settings() []Setting {
	return []Setting{
		Choice(&l.Level, "log_level", "least severe level logged", "debug", "info", "warn", "error"),
		Choice(&l.Format, "log_format", "log line format: text (key=value) or json", "text", "json"),
	}
}

// Logger writes to w at l's level in l's format. A level Load did not
// check counts as info.
func (l Logging) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
