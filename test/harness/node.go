package harness

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// StopTimeout is how long Stop waits after SIGTERM before it kills.
const StopTimeout = 20 * time.Second

// Node is one namespace with (unless Bare) a segmesh config.
type Node struct {
	c *Cluster

	Name       string     // node name
	Index      int        // creation index in the cluster
	Namespace  string     // network namespace
	Addr       netip.Addr // underlay address on eth0
	Interface  string     // WireGuard interface name (unique on the host)
	Dir        string     // node directory: config, keys, state, socket, log
	ConfigPath string     // Dir/segmesh.yaml
	Socket     string     // control socket, Dir/segmesh.sock
	LogPath    string     // stdout+stderr of every process started, appended
	Bare       bool       // no segmesh config
	HostSys    bool       // processes start with nsenter --net (see NodeSpec.HostSys)

	veth string // underlay-side veth in the underlay namespace

	mu   sync.Mutex
	proc *process
}

// process is one started program and its exit.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

// GossipAddr is the node's gossip address "IP:7946", for join lists.
func (n *Node) GossipAddr() string {
	return netip.AddrPortFrom(n.Addr, GossipPort).String()
}

// ClusterKeyPath is Dir/cluster.key.
func (n *Node) ClusterKeyPath() string { return filepath.Join(n.Dir, "cluster.key") }

// PrivateKeyPath is Dir/private.key.
func (n *Node) PrivateKeyPath() string { return filepath.Join(n.Dir, "private.key") }

// PIDPath is Dir/segmesh.pid, written for detached processes.
func (n *Node) PIDPath() string { return filepath.Join(n.Dir, "segmesh.pid") }

// PublicKey derives the node's WireGuard public key (base64) from its
// private key file.
func (n *Node) PublicKey() (string, error) {
	b, err := os.ReadFile(n.PrivateKeyPath())
	if err != nil {
		return "", fmt.Errorf("node %s: %w", n.Name, err)
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("node %s: parse private key: %w", n.Name, err)
	}
	return k.PublicKey().String(), nil
}

// Start runs `segmesh up -c ConfigPath` in the node's namespace.
func (n *Node) Start() error {
	if n.Bare {
		return fmt.Errorf("node %s is bare: use StartCommand", n.Name)
	}
	return n.StartCommand(n.c.cfg.Binary, "up", "-c", n.ConfigPath)
}

// StartCommand runs argv in the node's namespace with stdout and stderr
// appended to LogPath. A node runs one process at a time.
func (n *Node) StartCommand(argv ...string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		select {
		case <-n.proc.done:
		default:
			return fmt.Errorf("node %s: a process is already running (pid %d)", n.Name, n.proc.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(n.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("node %s: open log: %w", n.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== harness %s: start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	args := append([]string{"netns", "exec", n.Namespace}, argv...)
	cmd := exec.Command("ip", args...) // ip netns exec execs argv in place: the pid is argv's
	if n.HostSys {
		// nsenter execs argv in place too (no --fork for a net namespace).
		cmd = exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, n.Namespace), "--"}, argv...)...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if n.c.cfg.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("node %s: start: %w", n.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
	if n.c.cfg.Detach {
		pid := strconv.Itoa(cmd.Process.Pid) + "\n"
		if err := os.WriteFile(n.PIDPath(), []byte(pid), 0o600); err != nil {
			return fmt.Errorf("node %s: write pid file: %w", n.Name, err)
		}
	}
	n.c.cfg.Logf("harness: node %s: started pid %d: %s", n.Name, cmd.Process.Pid, strings.Join(argv, " "))
	return nil
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	p := n.current()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitError returns an error describing how the last process ended, or nil
// while it runs (or when none was started).
func (n *Node) ExitError() error {
	p := n.current()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("node %s: process exited with status 0", n.Name)
		}
		return fmt.Errorf("node %s: process exited: %w", n.Name, p.err)
	default:
		return nil
	}
}

// ExitCode returns the exit code of the last process and whether it has
// exited; a process ended by a signal reports -1.
func (n *Node) ExitCode() (int, bool) {
	p := n.current()
	if p == nil {
		return 0, false
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// Stop sends SIGTERM and waits for the process to exit; after StopTimeout
// it kills it and returns an error. Stopping a stopped node does nothing.
// Stop succeeds whatever the exit status; ExitError reports it.
func (n *Node) Stop() error {
	p := n.current()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("node %s: SIGTERM: %w", n.Name, err)
	}
	select {
	case <-p.done:
		n.c.cfg.Logf("harness: node %s: stopped (%v)", n.Name, exitText(p.err))
		return nil
	case <-time.After(StopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("node %s: did not exit within %v of SIGTERM; killed", n.Name, StopTimeout)
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() error {
	p := n.current()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("node %s: SIGKILL: %w", n.Name, err)
	}
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		return fmt.Errorf("node %s: still running %v after SIGKILL", n.Name, StopTimeout)
	}
	n.c.cfg.Logf("harness: node %s: killed", n.Name)
	return nil
}

// Restart stops the node gracefully and starts it again.
func (n *Node) Restart() error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.Start()
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// LinkDown sets the node's underlay link (its veth port on the bridge) down,
// cutting it off the underlay.
func (n *Node) LinkDown() error {
	return ip("-n", n.c.underlay, "link", "set", n.veth, "down")
}

// LinkUp sets the node's underlay link up again.
func (n *Node) LinkUp() error {
	return ip("-n", n.c.underlay, "link", "set", n.veth, "up")
}
