package flows

import (
	"log/slog"
	"sync"
	"time"
)

// limitedLog writes at most one warning per key and interval; the next one
// written tells how many were suppressed meanwhile.
type limitedLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed uint64
}

func newLimitedLog(log *slog.Logger, every time.Duration) *limitedLog {
	return &limitedLog{log: log, every: every, now: time.Now, keys: make(map[string]*limitState)}
}

// Warn logs msg at warning level unless a message of key was logged less
// than the interval ago. It reports whether it logged.
func (l *limitedLog) Warn(key, msg string, args ...any) bool {
	l.mu.Lock()
	now := l.now()
	st, ok := l.keys[key]
	if !ok {
		st = &limitState{}
		l.keys[key] = st
	}
	if ok && now.Sub(st.last) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return false
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.log.Warn(msg, args...)
	return true
}
