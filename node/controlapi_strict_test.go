package node

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// Regression tests of two control-API findings: strict request decoding
// and the socket directory check.

// Request bodies are
// decoded with json.Decoder.Decode, which reads the first JSON value and
// ignores whatever follows it and any unknown field. A body with trailing
// garbage is malformed, and a misspelt field (e.g. "expect_versoin") is
// silently dropped, so the apply runs without the version check the client
// asked for. Both must be 400 with a JSON error, and nothing applied.
func TestControlAPIStrictBodies(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	c := unixClient(r.cfg.ControlSocket)
	waitFor(t, "the control socket", func() bool {
		resp, err := c.Get("http://segmesh/v1/status")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	const pol = `"mode: enforce\n"`
	for _, body := range []string{
		`{"content": ` + pol + `} trailing garbage`,
		`{"content": ` + pol + `}{"content": "x"}`,
		`{"content": ` + pol + `, "expect_versoin": 7}`,
	} {
		wantJSONError(t, c, "POST", "/v1/policy", body)
	}
	wantJSONError(t, c, "POST", "/v1/policy/diff", `{"content": `+pol+`} trailing`)
	if st := r.n.Status(); st.Policy.Version != 0 {
		t.Errorf("a malformed body applied policy version %d", st.Policy.Version)
	}
}

// A control socket in a directory any local user may write to (no sticky
// bit) can be replaced by another user's socket between daemon starts, or
// while it runs, and the CLI would then hand that user its policies and
// signed documents. The daemon must refuse such a directory with an error
// naming control_socket and the directory.
func TestControlSocketDirWorldWritableRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	c, err := listenControl(filepath.Join(dir, "s.sock"), "", &Node{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		c.close()
		t.Fatal("control socket created in a world-writable directory without the sticky bit")
	}
	// With the sticky bit (like /tmp, /run/user) others cannot swap it.
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	c, err = listenControl(filepath.Join(dir, "s.sock"), "", &Node{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("sticky world-writable directory refused: %v", err)
	}
	c.close()
}
