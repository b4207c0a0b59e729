package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMarkdownLinks: every relative link of the README and docs/*.md names a
// file of the repository and, with #anchor into a Markdown file, one of its
// headings (GitHub's anchors). So a link to a file that is not in the
// repository (as DESIGN.md once was) fails here.
func TestMarkdownLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	if top, _ := filepath.Glob(filepath.Join("top", "*.md")); len(top) > 0 {
		files = append(files, top...)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(string(b), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := f
			if path != "" {
				file = filepath.Join(filepath.Dir(f), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %s: %v", f, target, err)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			if !anchors(t, file)[anchor] {
				t.Errorf("%s: link %s: no heading with anchor #%s in %s", f, target, anchor, file)
			}
		}
	}
}

// anchors returns GitHub's heading anchors of a Markdown file.
func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(string(b), "")
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`).FindAllStringSubmatch(text, -1) {
		h := strings.ToLower(m[1])
		var s strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				s.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && r != '×' && r != '—' && r != '→':
				s.WriteRune(r)
			}
		}
		a := s.String()
		for i := 0; out[a]; i++ {
			a = s.String() + "-" + string(rune('1'+i))
		}
		out[a] = true
	}
	return out
}
