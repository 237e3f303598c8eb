package daemon

import (
	"io"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	slogjournal "github.com/systemd/slog-journal"

	"github.com/connetd/connetd/internal/msgid"
)

// parseLevel maps log-level to slog; config validation has checked it.
func parseLevel(level string) slog.Level {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger builds the logger for log-level and log-format on w. level is
// kept by the caller so a reload can change it.
func NewLogger(format string, level *slog.LevelVar, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// journalLogger logs natively to the journal when stderr is connected to it
// (as under systemd), so that fields can be matched:
// journalctl -u connetd@client CONNET_ENDPOINT=serviceA. Every attribute
// becomes a CONNET_ field; it returns nil when stderr is not the journal.
func journalLogger(level *slog.LevelVar) *slog.Logger {
	if ok, err := journal.StderrIsJournalStream(); err != nil || !ok {
		return nil
	}
	h, err := slogjournal.NewHandler(&slogjournal.Options{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			a.Key = journalField(a.Key)
			return a
		},
		ReplaceGroup: journalField,
	})
	if err != nil {
		return nil
	}
	return slog.New(h)
}

// journalField turns an attribute key into a journal field name: the
// journal accepts only [A-Z0-9_], and a common prefix keeps ours together.
// "path" (direct or relay) is reported as the route a connection took.
// The event id is the journal's own MESSAGE_ID, unprefixed, so that
// journalctl -x finds its catalog entry.
func journalField(key string) string {
	if key == msgid.Key {
		return "MESSAGE_ID"
	}
	if key == "path" {
		key = "route"
	}
	var b strings.Builder
	b.WriteString("CONNET_")
	for _, r := range strings.ToUpper(key) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
