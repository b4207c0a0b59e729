package packaging_test

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkStripped: the shipped binary has no symbol table and no DWARF (-s -w)
// but keeps both build IDs (Go's, and the GNU one made from it by
// -B gobuildid), so crash tools can still match it to its build.
func checkStripped(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("open %s: %v", bin, err)
	}
	defer f.Close()
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("binary not stripped: has section %s", s.Name)
		}
	}
	for _, note := range []string{".note.go.buildid", ".note.gnu.build-id"} {
		if f.Section(note) == nil {
			t.Errorf("binary lacks %s", note)
		}
	}
}

// checkManPages: every page has its own title and an EXIT STATUS section;
// top's page lists its keys, explain's its deny status, the root page the
// environment.
func checkManPages(t *testing.T, dir string) {
	t.Helper()
	pages, _ := filepath.Glob(filepath.Join(dir, "segmesh*.1.gz"))
	if len(pages) < 20 {
		t.Fatalf("only %d man pages in %s", len(pages), dir)
	}
	text := map[string]string{}
	for _, p := range pages {
		name := strings.TrimSuffix(filepath.Base(p), ".1.gz")
		body := gunzip(t, p)
		text[name] = body
		title := `.TH "` + strings.ToUpper(name) + `" "1"`
		if !strings.Contains(body, title) {
			t.Errorf("%s: no %s header", name, title)
		}
		if !strings.Contains(body, ".SH EXIT STATUS\n.TP\n\\fB0\\fP") {
			t.Errorf("%s: no EXIT STATUS section", name)
		}
	}
	for page, wants := range map[string][]string{
		"segmesh-top":            {"ctrl+f", "shift+tab", "left/h", "q, ctrl+c", "5 Map"},
		"segmesh-policy-explain": {"\\fB3\\fP\nthe policy denies"},
		"segmesh-up":             {"RestartPreventExitStatus=2"},
		"segmesh":                {"SEGMESH_CONFIG", "SEGMESH_CONTROL_SOCKET"},
	} {
		for _, w := range wants {
			if !strings.Contains(text[page], w) {
				t.Errorf("%s(1) lacks %q", page, w)
			}
		}
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(out)
}

// TestVersionScheme checks how the Makefile turns `git describe` into the
// binary's VERSION and the packages' PKG_VERSION, and that this tree's
// version comes from a tag (or the BASE_VERSION fallback), never 0.0.0.
func TestVersionScheme(t *testing.T) {
	needTool(t, "make")
	root := repoRoot(t)
	noMake := []string{"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL="}
	for describe, want := range map[string]string{
		"v0.2.0":                   "0.2.0",
		"v0.2.0-3-gabc1234":        "0.2.0+3.gabc1234",
		"v0.2.0-dirty":             "0.2.0+dirty",
		"v0.2.0-3-gabc1234-dirty":  "0.2.0+3.gabc1234.dirty",
		"v0.2.0-dev+gabc1234":      "0.2.0~dev+gabc1234",
		"v1.10.2-120-g0123456789a": "1.10.2+120.g0123456789a",
	} {
		out := run(t, root, noMake, "make", "-s", "--no-print-directory", "print-version", "VERSION="+describe)
		if !strings.Contains(out, "PKG_VERSION="+want+"\n") {
			t.Errorf("VERSION=%s: got %q, want PKG_VERSION=%s", describe, out, want)
		}
	}
	out := run(t, root, noMake, "make", "-s", "--no-print-directory", "print-version")
	if !regexp.MustCompile(`(?m)^VERSION=v\d+\.\d+\.\d+`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^PKG_VERSION=\d+\.\d+\.\d+`).MatchString(out) || strings.Contains(out, "=0.0.0") {
		t.Errorf("this tree's version is not from a tag or BASE_VERSION:\n%s", out)
	}
}
