package quarantine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/segmesh/segmesh/ca"
)

// MaxEntries bounds a list (one entry per node ever quarantined).
const MaxEntries = 4096

// Checker verifies an entry before a list takes it (CA mode: the
// signature); nil accepts every well-formed entry (open mode).
type Checker func(*Entry) error

// List is the newest entry per node. It is safe for concurrent use.
type List struct {
	mu      sync.Mutex
	check   Checker
	entries map[string]Entry // by target key
}

// NewList returns an empty list whose entries must pass check.
func NewList(check Checker) *List {
	return &List{check: check, entries: map[string]Entry{}}
}

// SetChecker replaces the check for entries added from now on.
func (l *List) SetChecker(check Checker) {
	l.mu.Lock()
	l.check = check
	l.mu.Unlock()
}

// Add takes e when it is valid, passes the check and is newer than the
// node's current entry. added is false for an older or equal one.
func (l *List) Add(e Entry) (added bool, err error) {
	if err := e.Validate(); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.check != nil {
		if err := l.check(&e); err != nil {
			return false, err
		}
	}
	cur, ok := l.entries[e.Target]
	if ok && !Newer(&e, &cur) {
		return false, nil
	}
	if !ok && len(l.entries) >= MaxEntries {
		return false, fmt.Errorf("%w: the list holds %d entries already", ErrMalformed, MaxEntries)
	}
	e.AllowFrom = slices.Clone(e.AllowFrom)
	l.entries[e.Target] = e
	return true, nil
}

// Merge adds every entry it can and returns how many were newer; err joins
// the reasons of the refused ones.
func (l *List) Merge(entries []Entry) (added int, err error) {
	var errs []error
	for _, e := range entries {
		ok, err := l.Add(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
		}
		if ok {
			added++
		}
	}
	return added, errors.Join(errs...)
}

// Entries returns every entry, sorted by name then target.
func (l *List) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Entry, 0, len(l.entries))
	for _, e := range l.entries {
		e.AllowFrom = slices.Clone(e.AllowFrom)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out
}

// Active returns the entries that quarantine their node now.
func (l *List) Active() []Entry {
	var out []Entry
	for _, e := range l.Entries() {
		if e.Quarantined() {
			out = append(out, e)
		}
	}
	return out
}

// Lookup returns the entry of one node.
func (l *List) Lookup(target string) (Entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[target]
	return e, ok
}

// Len is the number of entries.
func (l *List) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// wire is the encoding of a list, in gossip and on disk.
type wire struct {
	Format  int     `json:"format"`
	Entries []Entry `json:"entries"`
}

const wireFormat = 1

// Encode returns the list's wire form.
func (l *List) Encode() ([]byte, error) {
	b, err := json.Marshal(wire{Format: wireFormat, Entries: l.Entries()})
	if err != nil {
		return nil, fmt.Errorf("encode quarantine list: %w", err)
	}
	return b, nil
}

// Decode parses a wire form (entries are checked when added).
func Decode(b []byte) ([]Entry, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.Format != wireFormat {
		return nil, fmt.Errorf("%w: list format %d", ErrMalformed, w.Format)
	}
	if len(w.Entries) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries", ErrMalformed, len(w.Entries))
	}
	return w.Entries, nil
}

// Save writes the list to path atomically (mode 0600).
func (l *List) Save(path string) error {
	b, err := l.Encode()
	if err != nil {
		return err
	}
	return ca.WriteFile(path, b, 0o600, true)
}

// Load reads path into l; a missing file is an empty list. Entries that
// fail the check are dropped and counted.
func (l *List) Load(path string) (dropped int, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	entries, err := Decode(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	added, err := l.Merge(entries)
	_ = err // the dropped ones are counted; their reasons are the caller's to log
	return len(entries) - added, nil
}
