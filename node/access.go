package node

import (
	"fmt"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/segmesh/segmesh/api"
)

// Control socket access (security invariant 6): the socket is 0600, owned
// by the daemon's user, who has full access. With control_group set it is
// 0660 with that group, whose members get the read-only (GET) endpoints;
// both are checked per request with SO_PEERCRED, not only by file mode.
type access int

const (
	accessNone access = iota
	accessRead
	accessFull
)

// accessPolicy decides who may do what on the control socket.
type accessPolicy struct {
	owner int // uid with full access (besides root)
	group int // gid given read-only access; -1 when control_group is unset
}

func newAccessPolicy(group string) (accessPolicy, error) {
	ap := accessPolicy{owner: os.Geteuid(), group: -1}
	if group == "" {
		return ap, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return ap, fmt.Errorf("control_group: %w", err)
	}
	if ap.group, err = strconv.Atoi(g.Gid); err != nil {
		return ap, fmt.Errorf("control_group %s: gid %q: %w", group, g.Gid, err)
	}
	return ap, nil
}

// socketMode sets the socket's group and mode for this policy.
func (ap accessPolicy) socketMode(path string) error {
	if ap.group < 0 {
		return os.Chmod(path, 0o600)
	}
	if err := os.Chown(path, -1, ap.group); err != nil {
		// Without CAP_CHOWN (the packaged unit grants none) a file can be
		// given only to a group the daemon's user is a member of.
		return fmt.Errorf("control_socket: chown to control_group (the daemon's user must be a member of it: SupplementaryGroups= in the unit): %w", err)
	}
	return os.Chmod(path, 0o660)
}

// of returns the access of a peer process.
func (ap accessPolicy) of(uid, gid uint32) access {
	if uid == 0 || int(uid) == ap.owner {
		return accessFull
	}
	if ap.group < 0 {
		return accessNone
	}
	if int(gid) == ap.group {
		return accessRead
	}
	u, err := user.LookupId(strconv.Itoa(int(uid)))
	if err != nil {
		return accessNone
	}
	gids, err := u.GroupIds()
	if err != nil {
		return accessNone
	}
	if slices.Contains(gids, strconv.Itoa(ap.group)) {
		return accessRead
	}
	return accessNone
}

// readOnlyPosts are POST endpoints that change nothing (a body too large for
// a query string); read access is enough for them.
var readOnlyPosts = map[string]bool{"/v1/policy/diff": true}

// guard wraps the API: GET and HEAD need read access, everything else full.
func (ap accessPolicy) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, err := peerCred(r.Context())
		if err != nil {
			writeJSON(w, http.StatusForbidden, api.Error{Error: "cannot identify the caller: " + err.Error()})
			return
		}
		need := accessFull
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPost && readOnlyPosts[r.URL.Path] {
			need = accessRead
		}
		if got := ap.of(cred.Uid, cred.Gid); got < need {
			msg := "permission denied: this endpoint needs the daemon's user or root"
			if got == accessNone {
				msg = "permission denied: not the daemon's user, root or a member of control_group"
			}
			writeJSON(w, http.StatusForbidden, api.Error{Error: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}
