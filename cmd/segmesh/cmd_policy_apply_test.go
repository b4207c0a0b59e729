package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// badLangPolicy has an unknown service on line 6, column 47.
const badLangPolicy = `services:
  web: [tcp/80, tcp/443]
segments:
  app: {role: app, env: [prod, staging]}
rules:
  - {name: r, from: [app], to: [app], ports: [webb]}
`

// TestPolicyApplyRefusesBadFile: `policy apply` with a file that does not
// parse exits 1 naming file:line:col, without ever contacting the daemon
// (so nothing is distributed).
func TestPolicyApplyRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var contacted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	}()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte(badLangPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"policy", "apply", file, "--socket", sock},
		{"policy", "check", file},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.Execute()
		if err == nil {
			t.Fatalf("%s accepted a bad file: %s", args[1], out.String())
		}
		if code := exitCode(err); code != 1 {
			t.Errorf("%s: exit %d, want 1", args[1], code)
		}
		want := file + `:6:47: unknown service "webb"`
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q, want it to start with %q", args[1], err, want)
		}
	}
	if n := contacted.Load(); n != 0 {
		t.Errorf("policy apply contacted the daemon %d times with a bad file", n)
	}

	// The same socket is contacted for a good file (so the check above can fail).
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(strings.Replace(badLangPolicy, "webb", "web", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"policy", "apply", good, "--socket", sock})
	if err := root.Execute(); err == nil {
		t.Error("apply against a socket that hangs up succeeded")
	}
	if contacted.Load() == 0 {
		t.Error("a good file did not reach the daemon's socket")
	}
}

func TestExitCode(t *testing.T) {
	if c := exitCode(errors.New("x")); c != 1 {
		t.Errorf("plain error: %d", c)
	}
	if c := exitCode(&exitError{code: 2, err: errors.New("x")}); c != 2 {
		t.Errorf("exitError: %d", c)
	}
	if c := exitCode(nil); c != 0 {
		t.Errorf("nil: %d", c)
	}
}
