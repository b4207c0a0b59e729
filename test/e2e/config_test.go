package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestConfigErrors: `segmesh up` refuses a bad config with exit code 2 and
// a message naming the key or file. No root needed; as root the daemon runs
// in a throwaway network namespace (unshare -n) so a missed error cannot
// touch the host's network.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, dir string) // breaks the config in dir
		want func(dir string) string        // the message must contain this
	}{
		{"unknown key", setKeys(map[string]any{"bogus_option": true}), fixed("bogus_option")},
		{"unknown nested key", setKeys(map[string]any{"gossip": map[string]any{"frobnicate": 1}}), fixed("frobnicate")},
		{"bad IPv4 CIDR", setKeys(map[string]any{"network": "100.80.0.0/33"}), fixed("network")},
		{"bad IPv6 CIDR", setKeys(map[string]any{"network6": "fd5e:6d00::/129"}), fixed("network6")},
		{"private key 0644", chmod("private.key", 0o644), inDir("private.key")},
		{"cluster key 0644", chmod("cluster.key", 0o644), inDir("cluster.key")},
	}
	for i, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			dir := t.TempDir()
			ifname := fmt.Sprintf("smcfg%05d%d", os.Getpid()%100000, i) // unique on the host
			runOK(t, bins.Segmesh, "init", "--dir", dir, "--name", "cfgtest",
				"--advertise", "127.0.0.1", "--interface", ifname)
			t.Cleanup(func() { _ = harness.RemoveWireGuardSocket(ifname) })
			if err := harness.EditConfig(filepath.Join(dir, "segmesh.yaml"), map[string]any{
				"state_dir":      filepath.Join(dir, "state"),
				"control_socket": filepath.Join(dir, "segmesh.sock"),
				"metrics_listen": "",
			}); err != nil {
				t.Fatal(err)
			}
			cs.edit(t, dir)
			code, out := runUp(t, filepath.Join(dir, "segmesh.yaml"))
			if code != 2 {
				t.Errorf("segmesh up: exit code %d, want 2; output:\n%s", code, out)
			}
			if want := cs.want(dir); !strings.Contains(out, want) {
				t.Errorf("segmesh up: output does not name %q:\n%s", want, out)
			}
		})
	}
}

func setKeys(set map[string]any) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := harness.EditConfig(filepath.Join(dir, "segmesh.yaml"), set); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod(file string, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Chmod(filepath.Join(dir, file), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func fixed(s string) func(string) string { return func(string) string { return s } }

func inDir(file string) func(string) string {
	return func(dir string) string { return filepath.Join(dir, file) }
}

func runOK(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// runUp runs `segmesh up -c cfg` (in a fresh network namespace when root)
// and returns its exit code and combined output. A daemon that does not
// exit within 20s is killed and fails the test.
func runUp(t *testing.T, cfg string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	argv := []string{bins.Segmesh, "up", "-c", cfg}
	if os.Geteuid() == 0 {
		argv = append([]string{"unshare", "--net", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("segmesh up did not exit within 20s on a bad config; output:\n%s", buf.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, buf.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), buf.String()
	default:
		t.Fatalf("run segmesh up: %v", err)
		return -1, ""
	}
}
