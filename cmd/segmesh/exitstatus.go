package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// exitStatusKey is the cobra annotation holding a command's exit statuses,
// one "CODE<TAB>meaning" per line; the man pages' EXIT STATUS section is
// written from it (defaultExitStatus when a command sets none).
const exitStatusKey = "segmesh/exit-status"

// The exit statuses every command shares (see exitCode in main.go).
const (
	exitOK     = "0\tsuccess"
	exitFailed = "1\tthe command failed: the daemon is not reachable, a request was refused, a file could not be written, ..."
	exitUsage  = "2\ta usage error (unknown flag, bad argument) or an invalid configuration, the same as `segmesh config check` reports"
)

var defaultExitStatus = []string{exitOK, exitFailed, exitUsage}

// withExitStatus records cmd's exit statuses for its man page and returns cmd.
func withExitStatus(cmd *cobra.Command, lines ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[exitStatusKey] = strings.Join(lines, "\n")
	return cmd
}

// exitStatusOf is cmd's list of "CODE<TAB>meaning" lines.
func exitStatusOf(cmd *cobra.Command) []string {
	if s, ok := cmd.Annotations[exitStatusKey]; ok {
		return strings.Split(s, "\n")
	}
	return defaultExitStatus
}

// rootLong is `segmesh --help`'s text and the segmesh(1) description.
const rootLong = `Micro-segmentation over an encrypted WireGuard mesh formed by gossip. One
daemon per server (segmesh up) joins the mesh; the other commands talk to it
through its control socket or work on files offline.

Exit status, for every command: 0 success, 1 failure, 2 usage or
configuration error; policy explain exits 3 when the policy denies. Each
command's man page lists its own.

Environment:
  SEGMESH_CONFIG          the config file when --config is not given
  SEGMESH_CONTROL_SOCKET  the control socket when --socket is not given
  SEGMESH_<KEY>           overrides a config key (nested keys joined by "_",
                          e.g. SEGMESH_GOSSIP_ADVERTISE), except workloads`

// exitFleetOK is exit status 0 of the commands with --fleet (see fleetExit).
const exitFleetOK = "0\tsuccess, with --fleet also when some nodes did not answer: they are named on stderr and in JSON under \"missing\""
