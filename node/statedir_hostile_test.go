package node

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// Broken host state: the control socket's mode, and a state_dir that is
// full or read-only. The node must refuse the change with an error naming
// the state it could not write and keep enforcing its last good policy.

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs root (CI=true): %s", why)
		}
		t.Skipf("needs root: %s", why)
	}
}

// The socket is born 0600 whatever the process umask (invariant 6).
func TestControlSocketMode0600(t *testing.T) {
	dir := t.TempDir() // before the umask change: a 0777 socket directory would be refused
	old := syscall.Umask(0)
	r := func() *rig {
		defer syscall.Umask(old)
		return newRig(t, dir, "")
	}()
	st, err := os.Stat(r.cfg.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, want socket 0600", st.Mode())
	}
}

// smallTmpfs mounts a tmpfs of size bytes on dir until the test ends.
func smallTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fill writes to a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'f'}, 512)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return p
		}
	}
}

// stateUnchanged checks the node still runs policy v1 with the sets it
// compiled from it.
func stateUnchanged(t *testing.T, r *rig, want acl.Desired, what string) {
	t.Helper()
	if st := r.n.Status(); st.Policy.Version != 1 {
		t.Fatalf("%s: active policy version %d, want the last good 1", what, st.Policy.Version)
	}
	if got := r.fw.desired(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: enforced sets changed:\n%+v\nwant\n%+v", what, got, want)
	}
}

const policyV2 = policyV + `  - name: any-to-db
    from: ["*"]
    to: [db]
    ports: [tcp/22]
`

// applyV1WithPeer applies policyV with a web peer present and returns the
// sets it enforces (web-1 allowed to tcp/5432); v2 would add tcp/22.
func applyV1WithPeer(t *testing.T, r *rig) acl.Desired {
	t.Helper()
	web := newTestNode(t)
	rec := gossip.Record{Format: 1, Name: "web-1", PublicKey: web.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(r.cfg.Network, web.pub, 0), Address6: mesh.Address6(r.cfg.Network6, web.pub),
		Claimed: time.Now().UnixNano(), Tags: map[string]string{"role": "web"}}
	r.gossip.setMembers(web.withRecord(rec, gossip.StateAlive))
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{AppliedBy: "test"}); err != nil {
		t.Fatalf("apply v1: %v", err)
	}
	waitFor(t, "web-1 allowed to tcp/5432", func() bool {
		d := r.fw.desired()
		return len(d.Ports) == 2 && d.Ports[0].PortLo == 5432
	})
	return r.fw.desired()
}

func TestFullStateDirKeepsLastGoodPolicy(t *testing.T) {
	needRoot(t, "mounts a 32 KiB tmpfs as state_dir")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	noLeaks(t)
	smallTmpfs(t, state, "32k") // registered before the rig: unmounted after the node stops
	r := newRig(t, dir, "")
	good := applyV1WithPeer(t, r)
	filler := fill(t, state)

	_, err := r.n.ApplyPolicy([]byte(policyV2), ApplyOptions{AppliedBy: "test"})
	if err == nil {
		t.Fatal("apply v2 on a full state_dir succeeded")
	}
	if !strings.Contains(err.Error(), state) || !strings.Contains(err.Error(), "persist policy") ||
		!errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error does not say which state could not be written and why: %v", err)
	}
	stateUnchanged(t, r, good, "after a failed apply")

	// The same from the mesh: a newer document is not half-accepted.
	doc := acl.NewDocument([]byte(policyV2), 2, "peer", r.n.deps.Now())
	b, _ := doc.Encode()
	if r.gossip.docs.MergeDocument(docKindPolicy, b) {
		t.Fatal("a policy from the mesh was accepted on a full state_dir")
	}
	stateUnchanged(t, r, good, "after a policy from the mesh")
	if b, err := os.ReadFile(filepath.Join(state, policyFile)); err != nil || !bytes.Contains(b, []byte(`"version":1`)) {
		t.Fatalf("persisted policy damaged: %v %.80s", err, b)
	}
	statusOK(t, unixClient(r.cfg.ControlSocket))

	// Space back: the next apply works.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if d, err := r.n.ApplyPolicy([]byte(policyV2), ApplyOptions{AppliedBy: "test"}); err != nil || d.Version != 2 {
		t.Fatalf("apply after freeing space: %+v %v", d, err)
	}
	waitFor(t, "v2 enforced", func() bool { return !reflect.DeepEqual(r.fw.desired(), good) })
}

func TestReadOnlyStateDirKeepsLastGoodPolicy(t *testing.T) {
	needRoot(t, "remounts state_dir read-only (root ignores file modes)")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	noLeaks(t)
	smallTmpfs(t, state, "1m")
	r := newRig(t, dir, "")
	good := applyV1WithPeer(t, r)
	remount := func(flags uintptr) {
		if err := unix.Mount("", state, "", unix.MS_REMOUNT|flags, ""); err != nil {
			t.Fatalf("remount %s: %v", state, err)
		}
	}
	remount(unix.MS_RDONLY)
	defer remount(0) // before the node stops: it writes its peer cache on the way out

	_, err := r.n.ApplyPolicy([]byte(policyV2), ApplyOptions{AppliedBy: "test"})
	if err == nil || !strings.Contains(err.Error(), state) || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("apply on a read-only state_dir: want an error naming %s (read-only), got %v", state, err)
	}
	stateUnchanged(t, r, good, "after a failed apply")
	statusOK(t, unixClient(r.cfg.ControlSocket))
	remount(0)
	if d, err := r.n.ApplyPolicy([]byte(policyV2), ApplyOptions{AppliedBy: "test"}); err != nil || d.Version != 2 {
		t.Fatalf("apply after remounting read-write: %+v %v", d, err)
	}
	waitFor(t, "v2 enforced", func() bool { return !reflect.DeepEqual(r.fw.desired(), good) })
}
