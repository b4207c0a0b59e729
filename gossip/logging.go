package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// mlLogWriter adapts memberlist's log.Logger output ("[LEVEL] memberlist:
// message") to slog, and feeds the suspicion line to onSuspect.
type mlLogWriter struct {
	log       *slog.Logger
	onSuspect func(name string)
	closing   func() bool // true once Shutdown began: memberlist's teardown errors go to debug
}

func newMemberlistLogger(l *slog.Logger, onSuspect func(string), closing func() bool) *log.Logger {
	return log.New(&mlLogWriter{log: l, onSuspect: onSuspect, closing: closing}, "", 0)
}

// Write handles one log line (log.Logger writes each entry at once).
func (w *mlLogWriter) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(p))
	if name, ok := suspectName(msg); ok && w.onSuspect != nil {
		w.onSuspect(name)
	}
	if level > slog.LevelDebug && w.closing != nil && w.closing() {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg, "src", "memberlist")
	return len(p), nil
}

// parseMemberlistLine splits "[WARN] memberlist: text" into a level and
// "text". Lines without a level tag are logged at info.
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}

// suspectName recognises memberlist's "Suspect <name> has failed, no acks
// received" (logged when this node's probe of <name> failed).
func suspectName(msg string) (string, bool) {
	const pre, post = "Suspect ", " has failed"
	if !strings.HasPrefix(msg, pre) {
		return "", false
	}
	rest := msg[len(pre):]
	i := strings.Index(rest, post)
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}
