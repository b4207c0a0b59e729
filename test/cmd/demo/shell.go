package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// shellRC is the demo shell's rc file, written by up.
var shellRC = filepath.Join(baseDir, "shellrc")

// shellNode is the node the demo shell's segmesh talks to.
const shellNode = "web-1"

// shellEnv is what the demo shell sets: the demo's binary first in PATH,
// SEGMESH_CONFIG naming shellNode's config (its control_socket is the
// node's) and no SEGMESH_CONTROL_SOCKET (it would beat the config).
func shellEnv(environ []string) []string {
	env := []string{
		"SEGMESH_CONFIG=" + filepath.Join(baseDir, shellNode, "segmesh.yaml"),
		"PATH=" + filepath.Join(baseDir, "bin") + string(filepath.ListSeparator) + os.Getenv("PATH"),
	}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k != "SEGMESH_CONFIG" && k != "PATH" && k != "SEGMESH_CONTROL_SOCKET" {
			env = append(env, kv)
		}
	}
	return env
}

// writeShellRC writes the rc file of an interactive demo shell: the user's
// ~/.bashrc, then shellEnv's settings (again: a .bashrc may set PATH) and
// a prompt naming the node.
func writeShellRC() error {
	rc := fmt.Sprintf(`# The segmesh demo shell (make demo-shell): segmesh is the demo's binary
# and talks to %[1]s. Written by go run ./test/cmd/demo up.
[ -f ~/.bashrc ] && . ~/.bashrc
export SEGMESH_CONFIG=%[2]s
export PATH=%[3]s:"$PATH"
unset SEGMESH_CONTROL_SOCKET
PS1='[segmesh demo: %[1]s] \u@\h:\w\$ '
`, shellNode, filepath.Join(baseDir, shellNode, "segmesh.yaml"), filepath.Join(baseDir, "bin"))
	return os.WriteFile(shellRC, []byte(rc), 0o644)
}

// shell replaces this program by bash set up as shellEnv says: interactive
// with the rc file (prompt) when stdin is a terminal, else reading the
// commands from stdin (echo 'segmesh status' | make demo-shell).
func shell(stdout io.Writer) error {
	sock := filepath.Join(baseDir, shellNode, "segmesh.sock")
	if _, err := os.Stat(sock); err != nil {
		return fmt.Errorf("no demo running (no %s): start one with make demo", sock)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		return err
	}
	argv := []string{"bash", "-s"}
	if isTerminal(os.Stdin) {
		if _, err := os.Stat(shellRC); errors.Is(err, os.ErrNotExist) {
			if err := writeShellRC(); err != nil {
				return err
			}
		}
		argv = []string{"bash", "--rcfile", shellRC, "-i"}
		fmt.Fprintf(stdout, "segmesh demo shell: segmesh talks to %s (SEGMESH_CONFIG); exit leaves it, the demo keeps running\n", shellNode)
	}
	return syscall.Exec(bash, argv, shellEnv(os.Environ()))
}
