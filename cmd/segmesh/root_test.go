package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRoot(args ...string) (string, error) {
	root := newRoot()
	var o bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&o)
	root.SetArgs(args)
	err := root.Execute()
	return o.String(), err
}

// TestConfigEnv: $SEGMESH_CONFIG names the config file when --config is
// not given; --config wins over it.
func TestConfigEnv(t *testing.T) {
	dir := t.TempDir()
	env, flag := filepath.Join(dir, "env.yaml"), filepath.Join(dir, "flag.yaml")
	t.Setenv(configEnv, env)
	if _, err := runRoot("config", "check"); err == nil || !strings.Contains(err.Error(), env) {
		t.Fatalf("config check with %s=%s: %v, want an error naming it", configEnv, env, err)
	}
	if _, err := runRoot("config", "check", "-c", flag); err == nil || !strings.Contains(err.Error(), flag) || strings.Contains(err.Error(), env) {
		t.Fatalf("config check -c %s: %v, want an error naming only it", flag, err)
	}
}

// TestConfigEnvSocket: a client command without --socket talks to the
// control_socket of the $SEGMESH_CONFIG file (the demo shell's setup).
func TestConfigEnvSocket(t *testing.T) {
	sock, paths := fakeMapDaemon(t)
	cfg := filepath.Join(t.TempDir(), "segmesh.yaml")
	if err := os.WriteFile(cfg, []byte("control_socket: "+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEGMESH_CONTROL_SOCKET", "")
	t.Setenv(configEnv, cfg)
	if out, err := runRoot("map"); err != nil {
		t.Fatalf("map: %v\n%s", err, out)
	}
	if len(paths()) == 0 {
		t.Fatal("the daemon of the config's control_socket was not asked")
	}
}
