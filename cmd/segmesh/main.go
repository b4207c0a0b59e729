// Command segmesh is the segmesh daemon and its command-line client. This
// package only wires flags and configuration to the packages that do the work.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/segmesh/segmesh/config"
)

// Set by the linker (see Makefile).
var (
	version = "dev"
	commit  = "unknown"
)

// exitError carries a specific exit code. With a nil err the command has
// said all it has to say on stdout and main prints nothing (e.g. policy
// explain's deny, exit 3).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	if ee := (*exitError)(nil); !errors.As(err, &ee) || ee.err != nil {
		fmt.Fprintln(os.Stderr, "segmesh:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is the exit status for a command's error: an exitError's code,
// 2 for a configuration error, else 1.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case config.IsConfigError(err):
		return 2
	}
	return 1
}
