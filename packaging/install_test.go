package packaging_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall installs into a DESTDIR with PREFIX=/usr/local: every file
// lands under it with its mode, the unit runs the installed binary, the
// binary works, a second install keeps an edited config, and uninstall
// removes exactly what install wrote, keeping the config.
func TestMakeInstall(t *testing.T) {
	needTool(t, "make")
	root := repoRoot(t)
	dest := filepath.Join(t.TempDir(), "dest")
	noMake := []string{"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL="}
	out := run(t, root, noMake, "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local",
		"VERSION=v9.8.7", "COMMIT=abc1234")
	if !strings.Contains(out, "installed segmesh under "+dest+"/usr/local") {
		t.Errorf("install output:\n%s", out)
	}

	modes := map[string]os.FileMode{
		"usr/local/bin/segmesh":                                  0o755,
		"usr/local/lib/systemd/system/segmesh.service":           0o644,
		"usr/local/lib/sysusers.d/segmesh.conf":                  0o644,
		"usr/local/share/bash-completion/completions/segmesh":    0o644,
		"usr/local/share/zsh/site-functions/_segmesh":            0o644,
		"usr/local/share/fish/vendor_completions.d/segmesh.fish": 0o644,
		"usr/local/share/man/man1/segmesh.1.gz":                  0o644,
		"usr/local/share/man/man1/segmesh-top.1.gz":              0o644,
		"usr/local/share/man/man1/segmesh-policy-explain.1.gz":   0o644,
		"usr/local/share/doc/segmesh/examples/policy.yaml":       0o644,
		"usr/local/share/doc/segmesh/examples/alerts.yaml":       0o644,
		"usr/local/share/doc/segmesh/LICENSE":                    0o644,
		"etc/segmesh/segmesh.yaml":                               0o644,
	}
	for f, mode := range modes {
		fi, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Errorf("install lacks /%s: %v", f, err)
		} else if fi.Mode().Perm() != mode {
			t.Errorf("/%s mode %v, want %v", f, fi.Mode().Perm(), mode)
		}
	}
	var files []string
	_ = filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if man, _ := filepath.Glob(filepath.Join(dest, "usr/local/share/man/man1/segmesh-*.1.gz")); len(files) != len(modes)-3+len(man)+1 {
		t.Errorf("install wrote %d files, want %d (the list above plus every man page): %v", len(files), len(modes)-3+len(man)+1, files)
	}

	unit, _ := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/segmesh.service"))
	if !strings.Contains(string(unit), "\nExecStart=/usr/local/bin/segmesh up -c /etc/segmesh/segmesh.yaml\n") {
		t.Errorf("installed unit does not run the installed binary:\n%s", unit)
	}
	bin := filepath.Join(dest, "usr/local/bin/segmesh")
	if v := run(t, root, nil, bin, "version"); !strings.Contains(v, "segmesh v9.8.7\ncommit abc1234") {
		t.Errorf("installed `segmesh version`:\n%s", v)
	}
	checkStripped(t, bin)
	checkManPages(t, filepath.Join(dest, "usr/local/share/man/man1"))

	conf := filepath.Join(dest, "etc/segmesh/segmesh.yaml")
	if err := os.WriteFile(conf, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run(t, root, noMake, "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	if b, _ := os.ReadFile(conf); string(b) != "# edited\n" || !strings.Contains(out, "kept the existing") {
		t.Errorf("second install replaced the edited config (now %q):\n%s", b, out)
	}

	run(t, root, noMake, "make", "--no-print-directory", "uninstall", "DESTDIR="+dest, "PREFIX=/usr/local")
	var left []string
	_ = filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, strings.TrimPrefix(p, dest))
		}
		return err
	})
	if len(left) != 1 || left[0] != "/etc/segmesh/segmesh.yaml" {
		t.Errorf("after uninstall: %v, want only /etc/segmesh/segmesh.yaml", left)
	}
}
