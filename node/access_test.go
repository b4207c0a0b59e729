package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain doubles as a control-socket client run under another uid.
func TestMain(m *testing.M) {
	if sock := os.Getenv("SEGMESH_NODE_TEST_CLIENT"); sock != "" {
		os.Exit(clientMain(sock))
	}
	os.Exit(m.Run())
}

// clientMain prints the HTTP status of a read and of a write request.
func clientMain(sock string) int {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, req := range []struct{ method, path string }{{"GET", "/v1/status"}, {"POST", "/v1/policy"}} {
		r, _ := http.NewRequest(req.method, "http://segmesh"+req.path, strings.NewReader(`{"content":"mode: enforce\n"}`))
		resp, err := c.Do(r)
		if err != nil {
			fmt.Printf("%s %s: %v\n", req.method, req.path, err)
			continue
		}
		resp.Body.Close()
		fmt.Printf("%s %s: %d\n", req.method, req.path, resp.StatusCode)
	}
	return 0
}

func TestAccessLevels(t *testing.T) {
	ap := accessPolicy{owner: 1000, group: 4242}
	for _, c := range []struct {
		uid, gid uint32
		want     access
	}{{0, 0, accessFull}, {1000, 1000, accessFull}, {2000, 4242, accessRead}, {2000, 2000, accessNone}} {
		if got := ap.of(c.uid, c.gid); got != c.want {
			t.Errorf("uid %d gid %d: access %d, want %d", c.uid, c.gid, got, c.want)
		}
	}
	if (accessPolicy{owner: 1000, group: -1}).of(2000, 4242) != accessNone {
		t.Error("without control_group nobody else gets in")
	}
}

// A control_group member can read status but cannot apply a policy; others
// get nothing. Real socket, real SO_PEERCRED.
func TestControlGroupReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI=true)")
		}
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "segmesh-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	t.Setenv("SEGMESH_CONTROL_GROUP", "nogroup")
	r := newRig(t, dir, "")
	sock := filepath.Join(dir, "s.sock")
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Fatalf("socket with control_group: %v %v", st.Mode(), err)
	}
	self, err := os.ReadFile(os.Args[0]) // the build dir is 0700: copy the client where nobody can run it
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "client")
	if err := os.WriteFile(client, self, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(uid, gid uint32) string {
		cmd := exec.Command(client)
		cmd.Env = append(os.Environ(), "SEGMESH_NODE_TEST_CLIENT="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client uid %d: %v\n%s", uid, err, out)
		}
		return string(out)
	}
	if out := run(65534, 65534); !strings.Contains(out, "GET /v1/status: 200") || !strings.Contains(out, "POST /v1/policy: 403") {
		t.Fatalf("control_group member:\n%s", out)
	}
	if out := run(65533, 65533); strings.Count(out, "connect: permission denied") != 2 {
		t.Fatalf("stranger must be kept out by the socket mode:\n%s", out)
	}
	// Second layer: even with a careless mode, SO_PEERCRED refuses strangers.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := run(65533, 65533); !strings.Contains(out, "GET /v1/status: 403") || !strings.Contains(out, "POST /v1/policy: 403") {
		t.Fatalf("stranger through a 0666 socket:\n%s", out)
	}
	if v := r.n.Status().Policy.Version; v != 0 {
		t.Fatalf("a read-only client changed the policy: v%d", v)
	}
}
