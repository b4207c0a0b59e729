package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/var/run/netns"

// WireGuardSocketDir holds the userspace WireGuard UAPI sockets, shared by
// every network namespace on the host.
const WireGuardSocketDir = "/var/run/wireguard"

// commandTimeout bounds every helper command (ip, wg, ping, status).
const commandTimeout = 30 * time.Second

// run runs a command with a timeout and returns its combined output; the
// error includes the command line and output.
func run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	if err != nil {
		return buf.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return buf.Bytes(), nil
}

// ip runs the ip(8) command.
func ip(args ...string) error {
	_, err := run("ip", args...)
	return err
}

// randomID returns n random bytes in hex.
func randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// NetnsExists reports whether a named network namespace exists.
func NetnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// DeleteNetns deletes a named network namespace; a missing one is not an
// error.
func DeleteNetns(name string) error {
	if !NetnsExists(name) {
		return nil
	}
	if err := ip("netns", "del", name); err != nil && NetnsExists(name) {
		return err
	}
	return nil
}

// RemoveWireGuardSocket removes /var/run/wireguard/<ifname>.sock (and the
// wireguard-go .name file next to it) if present.
func RemoveWireGuardSocket(ifname string) error {
	var errs []error
	for _, p := range []string{
		filepath.Join(WireGuardSocketDir, ifname+".sock"),
		filepath.Join(WireGuardSocketDir, ifname+".name"),
	} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NetnsProblem returns why network namespaces cannot be used here, or ""
// when a probe namespace could be created and deleted.
func NetnsProblem() string {
	if os.Geteuid() != 0 {
		return "not running as root (network namespaces need root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip(8) not found: " + err.Error()
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "no /dev/net/tun: " + err.Error()
	}
	id, err := randomID(4)
	if err != nil {
		return err.Error()
	}
	name := "smprobe-" + id
	if err := ip("netns", "add", name); err != nil {
		return "cannot create a network namespace: " + err.Error()
	}
	if err := DeleteNetns(name); err != nil {
		return "cannot delete a network namespace: " + err.Error()
	}
	return ""
}
