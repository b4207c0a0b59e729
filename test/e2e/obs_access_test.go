package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// The unprivileged identities of TestObsControlGroup: nobody/nogroup is a
// member of control_group (its primary group); 65533 is nobody at all.
const (
	nobodyID   = 65534
	nogroup    = "nogroup"
	strangerID = 65533
)

// TestObsControlGroup: with control_group: nogroup the control socket is
// 0660 with group nogroup; nobody (gid nogroup) may read `status --json`
// and run the read-only `policy diff`, but `policy apply` fails with a
// permission error and changes nothing; uid/gid 65533 cannot even connect.
func TestObsControlGroup(t *testing.T) {
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: obsPolicy})
	db := tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db"), Set: map[string]any{"control_group": nogroup}})
	tc.Start(db)
	tc.WaitFor("db1 has its policy", 20*time.Second, func() error {
		p, err := policyOf(db)
		if err == nil && p.Version < 1 {
			err = fmt.Errorf("no policy yet")
		}
		return err
	})
	before := tc.Status(db).Policy

	st, err := os.Stat(db.Socket)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o660 || sys.Gid != nobodyID || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("control socket %s: mode %v gid %d, want a socket 0660 with group nogroup (%d)", db.Socket, st.Mode(), sys.Gid, nobodyID)
	}
	// The harness's directories are 0700: let others traverse (not list)
	// them to reach the socket, as /run/segmesh would allow.
	for _, d := range []string{tc.C.BaseDir(), db.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bin, dir := publicCopy(t, bins.Segmesh)
	stricter := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(stricter, []byte(strings.Replace(obsPolicy, "ports: [tcp/8080]", "ports: [tcp/8081]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	asUser := func(uid, gid uint32, args ...string) cliResult {
		t.Helper()
		argv := append([]string{bin}, append(args, "--socket", db.Socket)...)
		stdout, stderr, code, err := runCmd(30*time.Second, func(c *exec.Cmd) {
			c.Dir = "/"
			c.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		}, argv...)
		if err != nil {
			t.Fatalf("segmesh %s as %d:%d: %v", strings.Join(args, " "), uid, gid, err)
		}
		return cliResult{args: args, stdout: stdout, stderr: stderr, code: code}
	}

	r := asUser(nobodyID, nobodyID, "status", "--json")
	var got harness.Status
	if r.code != 0 {
		t.Errorf("status --json as nobody:nogroup: %v", r)
	} else if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Self.Name != db.Name || got.Policy != before {
		t.Errorf("status --json as nobody:nogroup: %+v (%v), want db1 with policy %+v", got, err, before)
	} else {
		t.Logf("control_group member nobody:nogroup reads status: %s, policy v%d", got.Self.Name, got.Policy.Version)
	}
	if r := asUser(nobodyID, nobodyID, "policy", "diff", stricter); r.code != 0 || !strings.Contains(r.stdout, "~ rule web-to-app") {
		t.Errorf("policy diff (read-only) as nobody:nogroup: %v", r)
	}

	r = asUser(nobodyID, nobodyID, "policy", "apply", stricter)
	if r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("policy apply as nobody:nogroup: %v; want a permission error", r)
	} else {
		t.Logf("policy apply as nobody:nogroup refused: %s", strings.TrimSpace(r.stderr))
	}
	if p := tc.Status(db).Policy; p != before {
		t.Errorf("policy after the refused apply: %+v, want %+v", p, before)
	}

	r = asUser(strangerID, strangerID, "status", "--json")
	if r.code == 0 || !strings.Contains(r.stderr, "connect: permission denied") {
		t.Errorf("status as %d:%d (not in control_group): %v; want connect: permission denied", strangerID, strangerID, r)
	} else {
		t.Logf("status as %d:%d refused at connect: %s", strangerID, strangerID, strings.TrimSpace(r.stderr))
	}
}

// publicCopy copies the program at src into a new directory that everyone
// may read and enter (mode 0755, removed when the test ends) and returns
// the copy and the directory.
func publicCopy(t *testing.T, src string) (string, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "segmesh-e2e-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst, dir
}
