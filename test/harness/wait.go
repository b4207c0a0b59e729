package harness

import (
	"errors"
	"fmt"
	"time"
)

// PollInterval is how often WaitFor evaluates its condition.
const PollInterval = 100 * time.Millisecond

type abortError struct{ err error }

func (a abortError) Error() string { return a.err.Error() }
func (a abortError) Unwrap() error { return a.err }

// Abort marks err as final: WaitFor stops polling and returns it at once.
func Abort(err error) error {
	if err == nil {
		return nil
	}
	return abortError{err}
}

// WaitFor calls cond every PollInterval until it returns nil, it returns an
// error wrapped by Abort, or timeout passes. A non-nil error from cond means
// "not yet" and says why; the last one is part of the timeout error.
func WaitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var ab abortError
		if errors.As(err, &ab) {
			return ab.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v: %w", timeout, err)
		}
		time.Sleep(PollInterval)
	}
}
