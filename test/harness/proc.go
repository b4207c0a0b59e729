package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a helper program running in a network namespace next to (or
// instead of) a node's daemon, e.g. an echo server. Start one with Spawn.
type Proc struct {
	Namespace string
	LogPath   string // stdout and stderr
	argv      []string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error // valid after done is closed
}

// Spawn runs argv in the network namespace ns with stdout and stderr written
// to logPath (truncated). The process gets its own process group and is
// killed when the calling process dies.
func Spawn(ns, logPath string, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("spawn: empty command")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spawn: open log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawn %s in %s: %w", strings.Join(argv, " "), ns, err)
	}
	p := &Proc{Namespace: ns, LogPath: logPath, argv: argv, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// String names the process for messages.
func (p *Proc) String() string {
	return fmt.Sprintf("%q in %s (pid %d)", strings.Join(p.argv, " "), p.Namespace, p.cmd.Process.Pid)
}

// PID is the process's pid (the command's own: `ip netns exec` and `env`
// exec into it).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitError returns nil while the process runs, else how it ended.
func (p *Proc) ExitError() error {
	if p.Running() {
		return nil
	}
	if p.err == nil {
		return fmt.Errorf("%s exited with status 0", p)
	}
	return fmt.Errorf("%s exited: %w", p, p.err)
}

// Output returns what the process has written so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// WaitOutput waits until the output contains s. It fails at once when the
// process exits first.
func (p *Proc) WaitOutput(s string, timeout time.Duration) error {
	return WaitFor(timeout, func() error {
		if strings.Contains(p.Output(), s) {
			return nil
		}
		if err := p.ExitError(); err != nil {
			return Abort(fmt.Errorf("%w; output:\n%s", err, p.Output()))
		}
		return fmt.Errorf("%s has not printed %q", p, s)
	})
}

// Stop sends SIGTERM to the process group and waits; after StopTimeout it
// kills the group. Stopping an exited process does nothing.
func (p *Proc) Stop() error {
	if !p.Running() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(StopTimeout):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p, StopTimeout)
}
