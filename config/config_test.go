package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeDir creates a minimal valid setup and returns the config path.
func writeDir(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	r, err := InitDir(InitOptions{Dir: dir, Name: "db-1", Advertise: "192.0.2.11", Tags: map[string]string{"role": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	if extra != "" {
		f, err := os.OpenFile(r.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(extra)
		f.Close()
	}
	return r.ConfigFile
}

func TestInitThenLoad(t *testing.T) {
	c, err := Load(writeDir(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "db-1" || c.Tags["role"] != "db" || c.Interface != DefaultInterface || c.ListenPort != DefaultListenPort {
		t.Fatalf("unexpected config: %+v", c)
	}
	if c.MTU != 0 || c.DeadPeerGrace != DefaultDeadPeerGrace || c.Network.String() != DefaultNetwork || c.TrustMode() != "open" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.MetricsListen != DefaultMetricsListen || c.ControlSocket != DefaultControlSocket {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestLoadErrorsNameFileAndKey(t *testing.T) {
	cases := []struct {
		name, extra, wantKey string
	}{
		{"unknown key", "bogus: 1\n", "bogus"},
		{"unknown nested key", "gossipx:\n  a: 1\n", "gossipx.a"},
		{"bad cidr", "", "network"},
		{"bad port", "", "listen_port"},
		{"bad level", "", "log_level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeDir(t, tc.extra)
			switch tc.name {
			case "bad cidr":
				rewrite(t, path, `network: "100.80.0.0/16"`, `network: "100.80.0.0/33"`)
			case "bad port":
				rewrite(t, path, "listen_port: 51820", "listen_port: 70000")
			case "bad level":
				rewrite(t, path, `log_level: "info"`, `log_level: "loud"`)
			}
			_, err := Load(path)
			if err == nil || !IsConfigError(err) {
				t.Fatalf("want a config error, got %v", err)
			}
			if !strings.Contains(err.Error(), path+": "+tc.wantKey+":") {
				t.Fatalf("error does not name file and key %q: %v", tc.wantKey, err)
			}
		})
	}
}

func TestLoadRefusesReadableKey(t *testing.T) {
	path := writeDir(t, "")
	key := filepath.Join(filepath.Dir(path), "private.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "private_key_file") || !strings.Contains(err.Error(), key) {
		t.Fatalf("want error naming private_key_file and %s, got %v", key, err)
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeDir(t, "")
	t.Setenv("SEGMESH_LISTEN_PORT", "51999")
	t.Setenv("SEGMESH_GOSSIP_ADVERTISE", "192.0.2.99")
	t.Setenv("SEGMESH_GOSSIP_JOIN", "192.0.2.1,192.0.2.2:8000")
	t.Setenv("SEGMESH_TAGS", "role=web,env=prod")
	t.Setenv("SEGMESH_DEAD_PEER_GRACE", "5s")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenPort != 51999 || c.Gossip.Advertise != "192.0.2.99" || c.DeadPeerGrace != 5*time.Second {
		t.Fatalf("env not applied: %+v", c)
	}
	if strings.Join(c.Gossip.Join, " ") != "192.0.2.1:7946 192.0.2.2:8000" {
		t.Fatalf("join: %v", c.Gossip.Join)
	}
	if c.Tags["role"] != "web" || c.Tags["env"] != "prod" || len(c.Tags) != 2 {
		t.Fatalf("tags: %v", c.Tags)
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, err := InitDir(InitOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitDir(InitOptions{Dir: dir}); err == nil {
		t.Fatal("second init without --force must fail")
	}
	ck1, _ := os.ReadFile(first.ClusterKeyFile)
	second, err := InitDir(InitOptions{Dir: dir, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	ck2, _ := os.ReadFile(second.ClusterKeyFile)
	if string(ck1) != string(ck2) || second.ClusterKeyCreated {
		t.Fatal("the shared cluster key must never be replaced")
	}
	if first.PublicKey == second.PublicKey {
		t.Fatal("--force must write a new key")
	}
	for _, p := range []string{second.KeyFile, second.ClusterKeyFile} {
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %o", p, st.Mode().Perm())
		}
	}
}

func TestClusterKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	os.WriteFile(p, []byte("# primary\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"), 0o600)
	keys, err := ReadClusterKeys(p)
	if err != nil || len(keys) != 2 || keys[1][0] != 1 {
		t.Fatalf("keys %v err %v", keys, err)
	}
	os.WriteFile(p, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := ReadClusterKeys(p); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("short key must fail with its line: %v", err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadClusterKeys(p); err == nil {
		t.Fatal("an empty keyring must fail: gossip is never unencrypted")
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%q not in config", old)
	}
	os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
}
