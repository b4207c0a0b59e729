package ca

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SerialSize is the length of a Serial in bytes (128 bits).
const SerialSize = 16

// Serial identifies one certificate; Issue draws it at random.
type Serial [SerialSize]byte

// NewSerial returns a random serial.
func NewSerial() (Serial, error) {
	var s Serial
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("random serial: %w", err)
	}
	return s, nil
}

// String returns 32 lower-case hex digits.
func (s Serial) String() string { return hex.EncodeToString(s[:]) }

// IsZero reports whether s is unset.
func (s Serial) IsZero() bool { return s == Serial{} }

// ParseSerial parses 32 hex digits (either case; ':' separators allowed).
func ParseSerial(str string) (Serial, error) {
	var s Serial
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(str), ":", ""))
	if err != nil || len(b) != SerialSize {
		return s, fmt.Errorf("%w: serial %q: want %d hex digits", ErrMalformed, str, 2*SerialSize)
	}
	copy(s[:], b)
	return s, nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Serial) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Serial) UnmarshalText(b []byte) error {
	v, err := ParseSerial(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseValidity parses a validity period: a Go duration ("720h", "90m") or a
// whole number of days with a "d" suffix ("365d"). It must be positive.
func ParseValidity(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil || days > 100*366 {
			return 0, fmt.Errorf("validity %q: want a number of days like 365d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("validity %q: want a duration like 365d or 720h", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("validity %q: must be positive", s)
	}
	return d, nil
}
