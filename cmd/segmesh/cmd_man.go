//go:build mangen

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// The hidden `segmesh man` exists only in builds with the mangen tag (`make
// package` and `make install` build their host helper so): the generator's
// Markdown renderer builds a 0.5 MB table at process start, which the daemon
// has no use for.
func init() { buildCommands = append(buildCommands, newMan) }

// newMan is the hidden `segmesh man --dir DIR`: section-1 man pages for every
// command, generated from the cobra tree (used by packaging/stage.sh).
func newMan() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write man pages (section 1) for every command into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			return writeManTree(root, dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "output directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// writeManTree writes DIR/segmesh[-sub...].1 for c and every available
// command below it. Each page has its own title (SEGMESH-POLICY-EXPLAIN) and
// an EXIT STATUS section from the command's exit statuses.
func writeManTree(c *cobra.Command, dir string) error {
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeManTree(sub, dir); err != nil {
			return err
		}
	}
	// An empty Title makes the generator take the command path.
	hdr := &doc.GenManHeader{Section: "1", Source: "segmesh " + version, Manual: "segmesh manual"}
	var page bytes.Buffer
	long := c.Long
	c.Long = preformatted(long)
	err := doc.GenMan(c, hdr, &page)
	c.Long = long
	if err != nil {
		return fmt.Errorf("man page of %q: %w", c.CommandPath(), err)
	}
	out := insertSection(page.Bytes(), "SEE ALSO", exitStatusRoff(exitStatusOf(c)))
	name := filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
	if err := os.WriteFile(name, out, 0o644); err != nil {
		return fmt.Errorf("write man page: %w", err)
	}
	return nil
}

// preformatted turns the indented blocks of a help text (tables of views,
// keys, examples) into Markdown code blocks, which the generator keeps
// verbatim instead of filling them into paragraphs.
func preformatted(long string) string {
	var b strings.Builder
	inBlock := false
	for _, l := range strings.Split(long, "\n") {
		indented := strings.HasPrefix(l, "  ")
		switch {
		case indented && !inBlock:
			b.WriteString("\n")
			inBlock = true
		case !indented && inBlock && strings.TrimSpace(l) != "":
			b.WriteString("\n")
			inBlock = false
		}
		if indented {
			b.WriteString("    ")
		}
		b.WriteString(l)
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// exitStatusRoff is an EXIT STATUS section: one tagged paragraph per code.
func exitStatusRoff(lines []string) []byte {
	var b bytes.Buffer
	b.WriteString(".SH EXIT STATUS\n")
	for _, l := range lines {
		code, meaning, _ := strings.Cut(l, "\t")
		fmt.Fprintf(&b, ".TP\n\\fB%s\\fP\n%s\n", roffEscape(code), roffEscape(meaning))
	}
	return b.Bytes()
}

// roffEscape makes text safe as a roff text line.
func roffEscape(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`, "`", "").Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// insertSection puts sec before the section named before, or at the end.
func insertSection(page []byte, before string, sec []byte) []byte {
	marker := []byte(".SH " + before + "\n")
	i := bytes.Index(page, marker)
	if i < 0 {
		return append(page, sec...)
	}
	out := append([]byte{}, page[:i]...)
	out = append(out, sec...)
	return append(out, page[i:]...)
}
