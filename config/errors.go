package config

import (
	"errors"
	"fmt"
)

// Error is a configuration error about one key (or the file as a whole when
// Key is empty). The CLI exits with code 2 on it.
type Error struct {
	File string
	Key  string
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.Key == "":
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	default:
		return fmt.Sprintf("%s: %s: %v", e.File, e.Key, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// IsConfigError reports whether err contains a configuration error.
func IsConfigError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}
