package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/mesh"
)

// fakeRevocationDaemon serves POST /v1/revocations on a unix socket the way
// the daemon does: it verifies the entry against its CA keys and keeps a
// revocation list.
type fakeRevocationDaemon struct {
	socket string
	mu     sync.Mutex
	list   *ca.RevocationList
}

func startFakeRevocationDaemon(t *testing.T, cas []ed25519.PublicKey) *fakeRevocationDaemon {
	t.Helper()
	d := &fakeRevocationDaemon{list: ca.NewRevocationList(cas)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/revocations", func(w http.ResponseWriter, r *http.Request) {
		var req api.RevokeRequest
		fail := func(err error) {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(err)
			return
		}
		e, err := ca.ParseRevocation(req.Entry)
		if err != nil {
			fail(err)
			return
		}
		added, err := d.list.Add(e)
		if err != nil {
			fail(err)
			return
		}
		_ = json.NewEncoder(w).Encode(api.RevocationResult{Added: added, Target: e.Target(), Version: d.list.Version()})
	})
	d.socket = serveFake(t, mux)
	return d
}

func TestCLICertRevokeSendsToDaemon(t *testing.T) {
	caDir := newTestCA(t)
	caKey, caPub := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pub")
	cas, err := ca.LoadCAPublicKeys(caPub)
	if err != nil {
		t.Fatal(err)
	}
	d := startFakeRevocationDaemon(t, cas)
	k, _ := mesh.GenerateKey()
	pub := k.PublicKey()

	// Online: signed and sent at once.
	out := mustRun(t, "--socket", d.socket, "cert", "revoke", "--ca-key", caKey, "--public-key", pub.String(), "--reason", "stolen")
	if !strings.Contains(out, "revoked key "+pub.String()) || !strings.Contains(out, "version 1") || !d.list.RevokedKey(pub) {
		t.Fatalf("online revoke:\n%s", out)
	}

	// Offline entry, later sent from "any node".
	serial, _ := ca.NewSerial()
	rev := filepath.Join(t.TempDir(), "r.pem")
	mustRun(t, "cert", "revoke", "--ca-key", caKey, "--serial", serial.String(), "--out", rev)
	if d.list.RevokedSerial(serial) {
		t.Fatal("--out reached the daemon")
	}
	out = mustRun(t, "--socket", d.socket, "cert", "revoke", "--signed", rev)
	if !strings.Contains(out, "revoked serial "+serial.String()) || !d.list.RevokedSerial(serial) || d.list.Version() != 2 {
		t.Fatalf("--signed:\n%s", out)
	}
	out = mustRun(t, "--socket", d.socket, "cert", "revoke", "--signed", rev)
	if !strings.Contains(out, "already revoked") || d.list.Version() != 2 {
		t.Fatalf("duplicate --signed:\n%s", out)
	}

	// An entry from another CA is refused by the daemon: the command fails.
	other := newTestCA(t)
	foreign := filepath.Join(t.TempDir(), "f.pem")
	mustRun(t, "cert", "revoke", "--ca-key", filepath.Join(other, "ca.key"), "--serial", serial.String(), "--out", foreign)
	_, err = runCLI(t, "--socket", d.socket, "cert", "revoke", "--signed", foreign)
	if err == nil || !strings.Contains(err.Error(), ca.ErrUnknownIssuer.Error()) {
		t.Fatalf("foreign entry: %v", err)
	}
	// A file that is not a revocation never leaves this host.
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "--socket", d.socket, "cert", "revoke", "--signed", junk); !errors.Is(err, ca.ErrMalformed) {
		t.Fatalf("junk: %v", err)
	}
	// No daemon.
	if _, err := runCLI(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "cert", "revoke", "--signed", rev); err == nil ||
		!strings.Contains(err.Error(), "daemon running") {
		t.Fatalf("no daemon: %v", err)
	}
}
