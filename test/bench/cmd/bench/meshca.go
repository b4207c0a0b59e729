package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// authority is the mesh CA of the revocation cluster (`segmesh ca init`).
type authority struct {
	env      *Env
	key, pub string
}

// segmeshCLI runs the segmesh CLI and returns its stdout.
func segmeshCLI(env *Env, args ...string) ([]byte, error) {
	cmd := exec.Command(env.Segmesh, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("segmesh %s: %w: %s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out, nil
}

func newAuthority(env *Env, dir string) (*authority, error) {
	if _, err := segmeshCLI(env, "ca", "init", "--dir", dir); err != nil {
		return nil, err
	}
	return &authority{env: env, key: filepath.Join(dir, "ca.key"), pub: filepath.Join(dir, "ca.pub")}, nil
}

// signPolicy returns content signed for version (`policy sign`).
func (a *authority) signPolicy(dir, content string, version int) (string, error) {
	in, out := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "policy.signed.yaml")
	if err := os.WriteFile(in, []byte(content), 0o600); err != nil {
		return "", err
	}
	if _, err := segmeshCLI(a.env, "policy", "sign", in, "--key", a.key, "--version", fmt.Sprint(version), "--out", out); err != nil {
		return "", err
	}
	b, err := os.ReadFile(out)
	return string(b), err
}

// issue (re)writes n's certificate DIR/node.crt for its key with role and
// returns the certificate's serial.
func (a *authority) issue(n *harness.Node, role string) (string, error) {
	crt := filepath.Join(n.Dir, "node.crt")
	if _, err := segmeshCLI(a.env, "cert", "issue", "--ca-key", a.key, "--config", n.ConfigPath,
		"--tags", "role="+role, "--out", crt, "--force"); err != nil {
		return "", err
	}
	out, err := segmeshCLI(a.env, "cert", "show", crt, "--ca", a.pub, "--json")
	if err != nil {
		return "", err
	}
	var info struct {
		Serial string `json:"serial"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Serial == "" {
		return "", fmt.Errorf("cert show --json: no serial (%v): %s", err, out)
	}
	return info.Serial, nil
}

// trust puts n in CA mode with a certificate for role.
func (a *authority) trust(n *harness.Node, role string) (string, error) {
	serial, err := a.issue(n, role)
	if err != nil {
		return "", err
	}
	return serial, harness.EditConfig(n.ConfigPath, map[string]any{
		"trust": map[string]any{"ca_file": a.pub, "cert_file": filepath.Join(n.Dir, "node.crt")},
	})
}

// benchRevocation is row 5d: a CA-mode cluster of MeshNodes nodes; the
// mover (a client admitted to tcp/7000 on every server) is revoked with
// `segmesh cert revoke` through n0's socket, and its prober times when each
// server stops answering it.
func benchRevocation(env *Env, prm Params) []Row {
	dir := filepath.Join(env.Dir, "ca")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errRow("5d", "revocation", err)
	}
	a, err := newAuthority(env, dir)
	if err != nil {
		return errRow("5d", "revocation", err)
	}
	signed, err := a.signPolicy(dir, meshPolicy(""), 1)
	if err != nil {
		return errRow("5d", "revocation", err)
	}
	c, err := harness.New(harness.Config{Binary: env.Segmesh, LogLevel: "info", Policy: signed})
	if err != nil {
		return errRow("5d", "revocation", err)
	}
	var procs []*harness.Proc
	defer func() {
		for _, p := range procs {
			_ = p.Stop()
		}
		if err := c.Close(); err != nil {
			logf("CA cluster close: %v", err)
		}
	}()
	row, err := measureRevocation(env, prm, a, c, &procs)
	if err != nil {
		c.Report(os.Stderr)
		return errRow("5d", "revocation → cut everywhere", err)
	}
	return []Row{row}
}

func measureRevocation(env *Env, prm Params, a *authority, c *harness.Cluster, procs *[]*harness.Proc) (Row, error) {
	nodes, err := addMeshNodes(c, prm.MeshNodes, "client")
	if err != nil {
		return Row{}, err
	}
	mover, servers := nodes[len(nodes)-1], nodes[:len(nodes)-1]
	var serial string
	for _, n := range nodes {
		role := "server"
		if n == mover {
			role = "client"
		}
		s, err := a.trust(n, role)
		if err != nil {
			return Row{}, err
		}
		if n == mover {
			serial = s
		}
	}
	tMesh, err := startMesh(nodes)
	if err != nil {
		return Row{}, err
	}
	addrs, err := overlayAddrs(nodes)
	if err != nil {
		return Row{}, err
	}
	st, err := mover.Status()
	if err != nil {
		return Row{}, err
	}
	moverKey := st.Self.PublicKey
	probeLog, targets, err := startProbes(env, procs, mover, servers, addrs, 7000)
	if err != nil {
		return Row{}, err
	}
	t7000 := targets[7000]
	if _, err := waitProbes(probeLog, t7000, "up", time.Time{}, 20*time.Second); err != nil {
		return Row{}, fmt.Errorf("the mover's probes before any revocation: %w", err)
	}

	var cut, back []float64
	for r := 0; r < prm.RevRounds; r++ {
		byKey := r == prm.RevRounds-1 // the last round revokes the key for good
		args := []string{"cert", "revoke", "--ca-key", a.key, "--reason", "bench", "--socket", servers[0].Socket}
		if byKey {
			args = append(args, "--public-key", moverKey)
		} else {
			args = append(args, "--serial", serial)
		}
		t := time.Now()
		if _, err := segmeshCLI(env, args...); err != nil {
			return Row{}, err
		}
		d, err := waitProbes(probeLog, t7000, "down", t, 15*time.Second)
		if err != nil {
			return Row{}, fmt.Errorf("revocation round %d: %w", r+1, err)
		}
		cut = append(cut, d...)
		if byKey {
			break
		}
		// Renewal: a new certificate (new serial) for the same key, reload.
		if serial, err = a.issue(mover, "client"); err != nil {
			return Row{}, err
		}
		t = time.Now()
		if _, err := segmeshCLI(env, "reload", "--socket", mover.Socket); err != nil {
			return Row{}, err
		}
		if d, err = waitProbes(probeLog, t7000, "up", t, 20*time.Second); err != nil {
			return Row{}, fmt.Errorf("re-admission after renewal, round %d: %w", r+1, err)
		}
		back = append(back, d...)
	}
	row := propRow("5d", "revocation → cut everywhere, s", cut, prm, "")
	readmit := ""
	if len(back) > 0 {
		readmit = fmt.Sprintf(" After each serial revocation a new certificate is issued to the mover and it reloads; re-admission on all servers took p50 %.3f, max %.3f s (not a target).",
			percentile(back, 50), percentile(back, 100))
	}
	row.Note = fmt.Sprintf("a second cluster of %d nodes in CA mode (`ca init`, one `cert issue` per node, trust.ca_file/cert_file, the policy signed with `policy sign`; all peers up after %.1f s). "+
		"The mover's certificate says role client (tcp/7000 on the 9 servers); its prober dials them every 20 ms (40 ms timeout). "+
		"`segmesh cert revoke --ca-key … --socket` on n0 (a server), by serial in the first %d round(s) and by public key in the last; "+
		"delay from starting the command until each server refuses the mover's connection (n0 enforces before the command returns, the others after the revocation list reaches them by gossip). Resolution ≈ 20–60 ms.%s",
		len(c.Nodes()), tMesh.Seconds(), prm.RevRounds-1, readmit)
	return row, nil
}
