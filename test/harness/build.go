package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binaries are the programs Build produces.
type Binaries struct {
	Segmesh string // the segmesh CLI and daemon
	Forger  string // test/forger: a gossip member announcing a forged record
	Probe   string // test/probe: echo servers, dialer and stream for ACL checks
}

// ModuleRoot returns the directory of the go.mod of the current module, as
// reported by `go env GOMOD` run from the working directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD is %q)", mod)
	}
	return filepath.Dir(mod), nil
}

// BuildPackage runs `go build -trimpath -o out ./pkg` in the module root
// with CGO_ENABLED=0, as `make package` builds what it ships: a static
// executable, no libc mapped into the daemon. pkg is a path relative to the
// module root, e.g. "cmd/segmesh".
func BuildPackage(pkg, out string) error {
	return BuildPackageLDFlags(pkg, out, "")
}

// BuildPackageLDFlags is BuildPackage with -ldflags ldflags (when not
// empty), e.g. "-X main.version=v1.2.0 -X main.commit=abc1234".
func BuildPackageLDFlags(pkg, out, ldflags string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"build", "-trimpath"}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", out, "./"+filepath.ToSlash(pkg))...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./%s: %w\n%s", pkg, err, buf.String())
	}
	return nil
}

// Build builds the segmesh binary and the test tools into dir.
func Build(dir string) (Binaries, error) {
	b := Binaries{Segmesh: filepath.Join(dir, "segmesh")}
	if err := BuildPackage("cmd/segmesh", b.Segmesh); err != nil {
		return b, err
	}
	return BuildTools(dir, b)
}

// BuildTools builds the test tools (forger, probe) into dir and returns b
// with their paths set.
func BuildTools(dir string, b Binaries) (Binaries, error) {
	b.Forger = filepath.Join(dir, "segmesh-forger")
	b.Probe = filepath.Join(dir, "segmesh-probe")
	if err := BuildPackage("test/forger", b.Forger); err != nil {
		return b, err
	}
	if err := BuildPackage("test/probe", b.Probe); err != nil {
		return b, err
	}
	return b, nil
}
