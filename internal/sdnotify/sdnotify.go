// Package sdnotify tells systemd about a service's state, as sd_notify(3)
// does, for units with Type=notify: the service manager passes the path of
// a unix datagram socket in NOTIFY_SOCKET (an abstract socket when it
// starts with '@') and reads newline-separated KEY=VALUE assignments such
// as READY=1, RELOADING=1, STOPPING=1 and STATUS=text from it.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state to the service manager. The zero value (no socket)
// sends nothing: a daemon started outside systemd, or under Type=simple.
type Notifier struct {
	socket string
}

// New returns a Notifier for the socket named by getenv("NOTIFY_SOCKET").
func New(getenv func(string) string) Notifier {
	return Notifier{socket: getenv("NOTIFY_SOCKET")}
}

// Enabled reports whether a service manager listens.
func (n Notifier) Enabled() bool { return n.socket != "" }

// Notify sends the assignments (e.g. "READY=1", "STATUS=joined") as one
// datagram. Without a socket it does nothing.
func (n Notifier) Notify(assignments ...string) error {
	if n.socket == "" || len(assignments) == 0 {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("sd_notify: malformed assignment %q", a)
		}
	}
	name := n.socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	} else if !strings.HasPrefix(name, "/") {
		return errors.New("sd_notify: NOTIFY_SOCKET is neither a path nor an abstract socket: " + n.socket)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// MonotonicUsec is the MONOTONIC_USEC assignment systemd wants with
// RELOADING=1 (Type=notify-reload): CLOCK_MONOTONIC in microseconds.
func MonotonicUsec() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}
