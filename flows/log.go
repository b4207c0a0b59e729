package flows

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/segmesh/segmesh/api"
)

// LogMode is the permission of a flow log file Log creates.
const LogMode fs.FileMode = 0o640

// Log appends flows to a file as JSON lines (one api.Flow object per line),
// the flow_log of the config. It is safe for concurrent use.
type Log struct {
	path string
	mu   sync.Mutex
	f    *os.File // nil after Close
}

// OpenLog opens path for appending, creating it with mode LogMode (whatever
// the umask) when it does not exist; an existing file keeps its mode.
func OpenLog(path string) (*Log, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &Log{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, LogMode)
	if err == nil {
		if err := f.Chmod(LogMode); err != nil { // the umask may have cut it
			_ = f.Close()
			return nil, fmt.Errorf("flow log %s: chmod: %w", path, err)
		}
		return f, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	return f, nil
}

// Write appends f as one JSON line with a single write. Errors (a full disk,
// a closed Log) are returned.
func (l *Log) Write(f api.Flow) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("flow log: encode: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("flow log %s: %w", l.path, os.ErrClosed)
	}
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	return nil
}

// Reopen opens the path anew and switches to it (for SIGHUP after
// logrotate moved the file away). On error the old file stays in use. A
// closed Log stays closed.
func (l *Log) Reopen() error {
	nf, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	if old != nil {
		l.f = nf
	}
	l.mu.Unlock()
	if old == nil {
		_ = nf.Close()
		return fmt.Errorf("flow log %s: %w", l.path, os.ErrClosed)
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("flow log: close previous file: %w", err)
	}
	return nil
}

// Path returns the path the Log writes to.
func (l *Log) Path() string { return l.path }

// Close closes the file; later writes fail. Closing twice is harmless.
func (l *Log) Close() error {
	l.mu.Lock()
	f := l.f
	l.f = nil
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("flow log: close: %w", err)
	}
	return nil
}
