package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitVerifies runs `systemd-analyze verify` on packaging/segmesh.service,
// with ExecStart pointed at an existing executable (this test binary) since
// /usr/bin/segmesh is only there once the package is installed. Man pages named
// in Documentation= come with the package too, hence --man=no.
func TestUnitVerifies(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "segmesh.service"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	if !strings.Contains(text, "ExecStart=/usr/bin/segmesh up") {
		t.Fatal("ExecStart does not run /usr/bin/segmesh up")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "segmesh.service")
	if err := os.WriteFile(path, []byte(strings.Replace(text, "ExecStart=/usr/bin/segmesh", "ExecStart="+self, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, nil, analyze, "verify", "--man=no", path)
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify printed warnings:\n%s", out)
	}
}

// TestUnitHardening pins the service settings the operator guide relies on.
func TestUnitHardening(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "segmesh.service"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not key=value: %q", line)
		}
		set[k] = append(set[k], v)
	}
	want := map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"ExecReload":               "/bin/kill -HUP $MAINPID",
		"User":                     "segmesh",
		"Group":                    "segmesh",
		"CapabilityBoundingSet":    "CAP_NET_ADMIN",
		"AmbientCapabilities":      "CAP_NET_ADMIN",
		"ProtectProc":              "invisible",
		"PrivateMounts":            "yes",
		"ProtectKernelTunables":    "yes",
		"StateDirectory":           "segmesh",
		"RuntimeDirectory":         "segmesh wireguard",
		"ConfigurationDirectory":   "segmesh",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"ReadWritePaths":           "/var/lib/segmesh /run/segmesh /run/wireguard",
		"Environment":              "SEGMESH_UNIT_INTERFACE=segmesh0",
		"ExecStopPost":             "-ip link delete dev ${SEGMESH_UNIT_INTERFACE}",
		"StateDirectoryMode":       "0700",
		"DeviceAllow":              "/dev/net/tun rw",
	}
	for k, v := range want {
		if got := set[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
	}
}

// TestUnitSecurityScore keeps the unit's `systemd-analyze security` exposure
// at 2.5 or below (--threshold=25: the exit status is non-zero above it). The
// analysis is offline: it reads the unit file, not a running service.
func TestUnitSecurityScore(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	path := filepath.Join(repoRoot(t), "packaging", "segmesh.service")
	cmd := exec.Command(analyze, "security", "--offline=yes", "--threshold=25", "--no-pager", path)
	out, err := cmd.CombinedOutput()
	score := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Overall exposure level") {
			score = strings.TrimSpace(line)
		}
	}
	if err != nil || score == "" {
		t.Fatalf("systemd-analyze security --threshold=25 (exposure must be <= 2.5): %v\n%s", err, out)
	}
	t.Log(score)
}
