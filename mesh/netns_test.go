package mesh

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Root tests run the real Open/Up/Reconcile/Close inside fresh network
// namespaces. wireguard-go opens sockets from arbitrary threads, so a
// thread's namespace cannot be switched safely: the test binary re-executes
// itself under `ip netns exec` and the child (TestNetnsChild) does the work.

// childEnv carries a JSON childSpec to a re-executed test binary.
const childEnv = "SEGMESH_MESH_NETNS_CHILD"

// childSpec tells a child what to do.
type childSpec struct {
	Scenario    string // "pair" or "single"
	Interface   string
	PrivateKey  string
	ListenPort  int
	Underlay    string // this node's underlay address (pair)
	UnderlayMTU int    // MTU of the underlay link (pair)
	Address4    string
	Address6    string
	Peer        *peerSpec
}

type peerSpec struct {
	PublicKey string
	Endpoint  string
	Address4  string
	Address6  string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, TUN); under CI=true it must run")
	}
	t.Skip("needs root (network namespaces, TUN)")
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace removed when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := "smt-" + randHex(t, 4)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v %s", ns, err, out)
		}
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// child is a re-executed test binary running a scenario in a namespace.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  chan error
}

const readyMarker = "SEGMESH-CHILD-READY"

func startChild(t *testing.T, label, ns string, spec childSpec) *child {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0],
		"-test.run=^TestNetnsChild$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{name: label, cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan error, 1)}
	var readyOnce sync.Once
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, readyMarker) {
				readyOnce.Do(func() { close(c.ready) })
			}
			t.Logf("[%s] %s", label, line)
		}
	}()
	go func() {
		<-scanned
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case err := <-c.done:
			c.done <- err
		default:
			cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// waitReady waits for the child's ready marker; a child that exits first
// fails the test.
func (c *child) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.ready:
	case err := <-c.done:
		c.done <- err
		t.Fatalf("child %s exited before ready: %v", c.name, err)
	case <-time.After(timeout):
		t.Fatalf("child %s not ready after %v", c.name, timeout)
	}
}

// finish tells the child to close its Mesh and waits for it to pass.
func (c *child) finish(t *testing.T, timeout time.Duration) {
	t.Helper()
	fmt.Fprintln(c.stdin, "close")
	c.stdin.Close()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("child %s failed: %v", c.name, err)
		}
	case <-time.After(timeout):
		t.Fatalf("child %s did not finish after %v", c.name, timeout)
	}
}

// TestNetnsPair joins two namespaces with a veth pair and runs a real Mesh
// in each: traffic must flow over the overlay in IPv4 and IPv6.
func TestNetnsPair(t *testing.T) {
	requireRoot(t)
	nsA, nsB := newNetns(t), newNetns(t)
	run(t, "ip", "-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	for _, n := range []struct{ ns, dev, addr string }{{nsA, "va", "192.0.2.1/24"}, {nsB, "vb", "192.0.2.2/24"}} {
		run(t, "ip", "-n", n.ns, "link", "set", n.dev, "mtu", "1400", "up")
		run(t, "ip", "-n", n.ns, "addr", "add", n.addr, "dev", n.dev)
	}
	keyA, keyB := testKey(t), testKey(t)
	suffix := randHex(t, 3)
	specA := childSpec{Scenario: "pair", Interface: "smta" + suffix, PrivateKey: keyA.String(), ListenPort: 51820,
		Underlay: "192.0.2.1", UnderlayMTU: 1400, Address4: "100.80.0.1/16", Address6: "fd5e:6d00::a/48"}
	specB := childSpec{Scenario: "pair", Interface: "smtb" + suffix, PrivateKey: keyB.String(), ListenPort: 51821,
		Underlay: "192.0.2.2", UnderlayMTU: 1400, Address4: "100.80.0.2/16", Address6: "fd5e:6d00::b/48"}
	specA.Peer = &peerSpec{PublicKey: keyB.PublicKey().String(), Endpoint: "192.0.2.2:51821",
		Address4: "100.80.0.2", Address6: "fd5e:6d00::b"}
	specB.Peer = &peerSpec{PublicKey: keyA.PublicKey().String(), Endpoint: "192.0.2.1:51820",
		Address4: "100.80.0.1", Address6: "fd5e:6d00::a"}

	a := startChild(t, "A", nsA, specA)
	b := startChild(t, "B", nsB, specB)
	a.waitReady(t, 2*time.Minute)
	b.waitReady(t, 2*time.Minute)
	a.finish(t, time.Minute)
	b.finish(t, time.Minute)
}

// TestNetnsSingle checks Open's cleanup and stale-interface handling,
// SetAddress4 and Reconcile against a real device in one namespace.
func TestNetnsSingle(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	c := startChild(t, "S", ns, childSpec{Scenario: "single", Interface: "smts" + randHex(t, 3),
		PrivateKey: testKey(t).String(), ListenPort: 51830, Address4: "100.80.0.1/16", Address6: "fd5e:6d00::1/48"})
	c.waitReady(t, 2*time.Minute)
	c.finish(t, time.Minute)
}
