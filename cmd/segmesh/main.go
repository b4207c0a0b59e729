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

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "segmesh:", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case config.IsConfigError(err):
		os.Exit(2)
	default:
		os.Exit(1)
	}
}
