package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Units asks a service manager which cgroup a unit runs in.
type Units interface {
	// ControlGroup returns the cgroup path of unit relative to the cgroup2
	// mount, or "" when the unit has none (it is not running or not
	// loaded).
	ControlGroup(ctx context.Context, unit string) (string, error)
}

// Systemd is Units backed by systemd's D-Bus API (the unit's
// ControlGroup property).
type Systemd struct {
	conn *sddbus.Conn
}

// NewSystemd connects to systemd on the system bus; it fails when systemd
// (or the bus) does not run, and the caller then searches the tree
// (FindUnit) instead.
func NewSystemd(ctx context.Context) (*Systemd, error) {
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	return &Systemd{conn: conn}, nil
}

// Close closes the D-Bus connection.
func (s *Systemd) Close() error {
	s.conn.Close()
	return nil
}

// unitTypes maps unit name suffixes to the D-Bus interface (after
// org.freedesktop.systemd1.) carrying ControlGroup.
var unitTypes = map[string]string{
	".service": "Service", ".scope": "Scope", ".slice": "Slice",
	".socket": "Socket", ".mount": "Mount", ".swap": "Swap",
}

// ControlGroup implements Units.
func (s *Systemd) ControlGroup(ctx context.Context, unit string) (string, error) {
	typ, ok := unitTypes[path.Ext(unit)]
	if !ok {
		return "", fmt.Errorf("unit %q: %w", unit, errUnitType)
	}
	p, err := s.conn.GetUnitTypePropertyContext(ctx, unit, typ, "ControlGroup")
	if err != nil {
		return "", fmt.Errorf("ControlGroup of %s: %w", unit, err)
	}
	cg, ok := p.Value.Value().(string)
	if !ok {
		return "", fmt.Errorf("ControlGroup of %s: unexpected type %s", unit, p.Value.Signature())
	}
	return cg, nil
}

var errUnitType = errors.New("unit has no cgroup (want .service, .scope, .slice, .socket, .mount or .swap)")

// Search bounds of FindUnit.
const (
	searchDepth = 6
	searchDirs  = 20000
)

// FindUnit searches the cgroup tree below mount for a directory named
// exactly unit, the way systemd names unit cgroups: first
// /system.slice/UNIT, then breadth first (system.slice before other
// directories of a level) down to 6 levels and over at most 20000
// directories. It returns the cgroup path relative to mount, or "" when
// there is none.
func FindUnit(mount, unit string) (string, error) {
	if unit == "" || strings.ContainsAny(unit, "/\x00") || unit == "." || unit == ".." {
		return "", fmt.Errorf("unit %q: invalid name", unit)
	}
	if isDir(filepath.Join(mount, "system.slice", unit)) {
		return "/system.slice/" + unit, nil
	}
	level := []string{"/"}
	visited := 0
	for depth := 0; depth < searchDepth && len(level) > 0; depth++ {
		var next []string
		for _, cg := range level {
			if visited++; visited > searchDirs {
				return "", nil
			}
			entries, err := os.ReadDir(filepath.Join(mount, cg))
			if err != nil {
				continue // removed meanwhile, or not readable
			}
			var rest []string
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				child := path.Join(cg, e.Name())
				if e.Name() == unit {
					return child, nil
				}
				if e.Name() == "system.slice" {
					next = append(next, child)
				} else {
					rest = append(rest, child)
				}
			}
			next = append(next, rest...)
		}
		level = next
	}
	return "", nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
