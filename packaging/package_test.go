package packaging_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestMakePackage runs `make package` into a temporary directory, unpacks the
// .deb with dpkg-deb and checks its files, conffiles and maintainer scripts,
// then runs the packaged binary: `version` shows the stamped version and
// commit, and `config check` accepts the shipped example config once its key
// files exist. The binary is stripped with a build ID, the man pages are
// complete, and nothing but the two packages is left in DIST.
func TestMakePackage(t *testing.T) {
	needTool(t, "make")
	dpkgDeb := needTool(t, "dpkg-deb")
	root := repoRoot(t)
	tmp := t.TempDir()
	dist := filepath.Join(tmp, "dist")
	// The outer make (make test) must not leak its flags or variables into this one.
	run(t, root, []string{"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL="}, "make", "--no-print-directory", "package",
		"DIST="+dist, "VERSION=9.8.7-test", "COMMIT=abc1234", "PKG_VERSION=9.8.7")

	debs, _ := filepath.Glob(filepath.Join(dist, "segmesh_9.8.7-1_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "segmesh-9.8.7-1.*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		entries, _ := os.ReadDir(dist)
		t.Fatalf("want one .deb and one .rpm in dist, got debs=%v rpms=%v (dist: %v)", debs, rpms, entries)
	}
	if entries, _ := os.ReadDir(dist); len(entries) != 2 {
		t.Errorf("dist holds %v, want only the .deb and the .rpm (no staging left behind)", entries)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "dist", ".stage*")); len(left) > 0 {
		t.Errorf("staging left in the tree: %v", left)
	}
	if fi, err := os.Stat(rpms[0]); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("rpm %s looks empty: %v", rpms[0], err)
	}

	fsroot := filepath.Join(tmp, "root")
	run(t, tmp, nil, dpkgDeb, "-x", debs[0], fsroot)
	for _, f := range []string{
		"usr/bin/segmesh",
		"usr/lib/systemd/system/segmesh.service",
		"usr/lib/sysusers.d/segmesh.conf",
		"etc/segmesh/segmesh.yaml",
		"usr/share/bash-completion/completions/segmesh",
		"usr/share/zsh/vendor-completions/_segmesh",
		"usr/share/fish/vendor_completions.d/segmesh.fish",
		"usr/share/doc/segmesh/LICENSE",
		"usr/share/doc/segmesh/examples/policy.yaml",
		"usr/share/doc/segmesh/examples/alerts.yaml",
		"usr/share/man/man1/segmesh.1.gz",
		"usr/share/man/man1/segmesh-up.1.gz",
		"usr/share/man/man1/segmesh-config-check.1.gz",
		"usr/share/man/man1/segmesh-policy-explain.1.gz",
		"usr/share/man/man1/segmesh-quarantine.1.gz",
		"usr/share/man/man1/segmesh-release.1.gz",
		"usr/share/man/man1/segmesh-ca-operator-key.1.gz",
	} {
		if _, err := os.Stat(filepath.Join(fsroot, f)); err != nil {
			t.Errorf("package lacks /%s: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(fsroot, "usr/bin/segmesh")); err == nil && fi.Mode().Perm() != 0o755 {
		t.Errorf("/usr/bin/segmesh mode %v, want 0755", fi.Mode().Perm())
	}
	if man, _ := filepath.Glob(filepath.Join(fsroot, "usr/share/man/man1/segmesh-*.1.gz")); len(man) < 20 {
		t.Errorf("only %d man pages", len(man))
	}
	for _, hidden := range []string{"usr/share/man/man1/segmesh-man.1.gz"} {
		if _, err := os.Stat(filepath.Join(fsroot, hidden)); err == nil {
			t.Errorf("hidden command documented: /%s", hidden)
		}
	}
	fish, _ := os.ReadFile(filepath.Join(fsroot, "usr/share/fish/vendor_completions.d/segmesh.fish"))
	if !strings.Contains(string(fish), "complete -c segmesh") {
		t.Errorf("fish completion does not look like one:\n%.300s", fish)
	}

	ctrl := filepath.Join(tmp, "control")
	run(t, tmp, nil, dpkgDeb, "-e", debs[0], ctrl)
	conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if got := strings.Fields(string(conffiles)); len(got) != 1 || got[0] != "/etc/segmesh/segmesh.yaml" {
		t.Errorf("conffiles = %q, want only /etc/segmesh/segmesh.yaml", got)
	}
	postinst, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	for _, want := range []string{"systemd-sysusers segmesh.conf", "install -d -m 0700 -o segmesh -g segmesh /var/lib/segmesh"} {
		if !strings.Contains(string(postinst), want) {
			t.Errorf("postinst lacks %q (user segmesh, /var/lib/segmesh 0700 owned by it):\n%s", want, postinst)
		}
	}
	for _, line := range strings.Split(string(postinst), "\n") {
		code, _, _ := strings.Cut(line, "#")
		if strings.Contains(code, "enable") || strings.Contains(code, "systemctl start") {
			t.Errorf("postinst enables or starts the service: %q", line)
		}
	}
	control, _ := os.ReadFile(filepath.Join(ctrl, "control"))
	for _, want := range []string{"Version: 9.8.7-1", "License: Apache-2.0", "Depends: iproute2",
		"Maintainer: segmesh maintainers <maintainers@segmesh.dev>"} {
		if !strings.Contains(string(control), want) {
			t.Errorf("control lacks %q:\n%s", want, control)
		}
	}

	bin := filepath.Join(fsroot, "usr/bin/segmesh")
	out := run(t, tmp, nil, bin, "version")
	for _, want := range []string{"segmesh 9.8.7-test", "commit abc1234", "go1.", "wireguard backend:"} {
		if !strings.Contains(out, want) {
			t.Errorf("packaged `segmesh version` lacks %q:\n%s", want, out)
		}
	}

	// The shipped example is a valid config: only its key files are missing
	// on a fresh install (segmesh init writes them).
	keys := filepath.Join(tmp, "keys")
	run(t, tmp, nil, bin, "init", "--dir", keys)
	example := filepath.Join(fsroot, "etc/segmesh/segmesh.yaml")
	out = run(t, tmp, []string{
		"SEGMESH_PRIVATE_KEY_FILE=" + filepath.Join(keys, "private.key"),
		"SEGMESH_GOSSIP_SECRET_FILE=" + filepath.Join(keys, "cluster.key"),
	}, bin, "config", "check", "-c", example)
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("config check of the shipped example: %q", out)
	}

	if rpm, err := exec.LookPath("rpm"); err == nil {
		list := strings.Fields(run(t, tmp, nil, rpm, "-qlp", rpms[0]))
		sort.Strings(list)
		for _, want := range []string{"/usr/bin/segmesh", "/usr/share/zsh/site-functions/_segmesh", "/etc/segmesh/segmesh.yaml"} {
			if i := sort.SearchStrings(list, want); i == len(list) || list[i] != want {
				t.Errorf("rpm lacks %s", want)
			}
		}
	}
	checkCLI(t, bin)
	checkStripped(t, bin)
	checkManPages(t, filepath.Join(fsroot, "usr/share/man/man1"))
}

// checkCLI runs the packaged binary: `config check` on a bad file gives the
// same error as `up` and exit code 2; `init` prints how to add a node.
func checkCLI(t *testing.T, bin string) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen_port: 70000\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "config", "check", "-c", bad)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("config check of a bad file: err=%v, want exit 2\n%s", err, out)
	}
	if !strings.Contains(string(out), bad+": bogus: unknown key") {
		t.Errorf("error does not name file and key:\n%s", out)
	}
	keys := filepath.Join(tmp, "n1")
	initOut := run(t, tmp, nil, bin, "init", "--dir", keys, "--advertise", "192.0.2.11")
	for _, want := range []string{
		"scp -p " + filepath.Join(keys, "cluster.key") + " root@NODE2:" + filepath.Join(keys, "cluster.key"),
		"segmesh init --dir " + keys + " --join 192.0.2.11:7946",
		"7946/tcp and 7946/udp", "51820/udp",
	} {
		if !strings.Contains(initOut, want) {
			t.Errorf("init output lacks %q:\n%s", want, initOut)
		}
	}
	if got := run(t, tmp, nil, bin, "config", "check", "-c", filepath.Join(keys, "segmesh.yaml")); strings.TrimSpace(got) != "ok" {
		t.Errorf("config check of an init'ed config: %q", got)
	}
}
