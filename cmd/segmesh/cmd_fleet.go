package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// fleetHelp is the --fleet flag's help, shared by every command with it.
const fleetHelp = "ask every up peer's peer API over the mesh too (2 s each); nodes that do not answer are named"

// fleetExit is said in the help of every command with --fleet.
const fleetExit = `With --fleet the exit code is 0 even when some nodes did not answer: they
are named on stderr ("warning: ...") and in JSON output under "missing".`

// warnMissing names, on w, the nodes a fleet request did not reach.
func warnMissing(w io.Writer, missing []api.Missing) {
	if len(missing) == 0 {
		return
	}
	parts := make([]string, len(missing))
	for i, m := range missing {
		parts[i] = fmt.Sprintf("%s (%s)", m.Node, m.Reason)
	}
	fmt.Fprintf(w, "warning: %d node(s) did not answer, their observations are not included: %s\n", len(missing), strings.Join(parts, "; "))
}
