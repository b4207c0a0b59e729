//go:build mangen

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// The hidden `segmesh man` exists only in builds with the mangen tag (`make
// package` builds its host helper so): the generator's Markdown renderer
// builds a 0.5 MB table at process start, which the daemon has no use for.
func init() { buildCommands = append(buildCommands, newMan) }

// newMan is the hidden `segmesh man --dir DIR`: section-1 man pages for every
// command, generated from the cobra tree (used by `make package`).
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
			hdr := &doc.GenManHeader{Title: "SEGMESH", Section: "1", Source: "segmesh " + version, Manual: "segmesh manual"}
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "output directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
