package harness

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxLogDump bounds how much of each node's log Report includes (the tail).
const MaxLogDump = 256 << 10

// Report writes, for every node, its identity, its last status (when its
// process runs), `wg show` and the tail of its log. It is what a failing
// test prints.
func (c *Cluster) Report(w io.Writer) {
	for _, n := range c.Nodes() {
		fmt.Fprintf(w, "===== node %s: namespace %s, %s, interface %s, dir %s, running %v\n",
			n.Name, n.Namespace, n.Addr, n.Interface, n.Dir, n.Running())
		if n.Running() && !n.Bare {
			if out, err := n.StatusOutput("--json"); err != nil {
				fmt.Fprintf(w, "--- status: %v\n", err)
			} else {
				fmt.Fprintf(w, "--- status --json:\n%s\n", strings.TrimSpace(string(out)))
			}
			if out, err := n.Exec("wg", "show", n.Interface); err != nil {
				fmt.Fprintf(w, "--- wg show: %v\n", err)
			} else {
				fmt.Fprintf(w, "--- wg show:\n%s\n", strings.TrimSpace(string(out)))
			}
		}
		fmt.Fprintf(w, "--- log %s:\n%s\n", n.LogPath, tail(n.LogPath, MaxLogDump))
	}
}

// tail returns the last max bytes of the file at path.
func tail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := int64(0)
	prefix := ""
	if st.Size() > max {
		off = st.Size() - max
		prefix = fmt.Sprintf("(... %d bytes cut ...)\n", off)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return prefix + string(b)
}
