package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"
)

// shortHash is the first 8 hex digits of a "sha256:…" hash.
func shortHash(h string) string {
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[i+1:]
	}
	if len(h) > 8 {
		h = h[:8]
	}
	return h
}

// age renders a duration compactly: 5s, 3m07s, 2h05m, 4d03h.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

// handshakeAge is the age of an RFC3339 handshake time, "never" for none.
func handshakeAge(ts *string, now time.Time) string {
	if ts == nil || *ts == "" {
		return "never"
	}
	t, err := time.Parse(time.RFC3339Nano, *ts)
	if err != nil {
		return "?"
	}
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	return age(now.Sub(t))
}

// byteRate renders bytes per second with three significant digits and an
// IEC unit ("0 B", "512 B", "1.23 KiB", "45.6 MiB"); the column title
// carries the "/s".
func byteRate(bps float64) string {
	if bps < 0 {
		bps = 0
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for bps >= 1000 && i < len(units)-1 {
		bps /= 1024
		i++
	}
	switch {
	case i == 0:
		return fmt.Sprintf("%.0f B", bps)
	case bps < 10:
		return fmt.Sprintf("%.2f %s", bps, units[i])
	case bps < 100:
		return fmt.Sprintf("%.1f %s", bps, units[i])
	default:
		return fmt.Sprintf("%.0f %s", bps, units[i])
	}
}

// width is the terminal cell width of s (escape sequences excluded).
func width(s string) int { return ansi.StringWidth(s) }

// truncate cuts s to w cells, ending in "…" when it had to cut.
func truncate(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if width(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

// truncateLeft cuts s to w cells from the left, starting with "…" when it
// had to cut.
func truncateLeft(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if width(s) <= w {
		return s
	}
	return ansi.TruncateLeft(s, width(s)-w+1, "…")
}

// pad fills s with spaces to w cells, on the left when right is set.
func pad(s string, w int, right bool) string {
	n := w - width(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

// dash stands in for an empty value.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// matches reports whether the lower-cased filter occurs in any of texts
// (case-insensitive); an empty filter matches everything.
func matches(filter string, texts ...string) bool {
	if filter == "" {
		return true
	}
	f := strings.ToLower(filter)
	for _, t := range texts {
		if strings.Contains(strings.ToLower(t), f) {
			return true
		}
	}
	return false
}
