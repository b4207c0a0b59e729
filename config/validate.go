package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/viper"
)

var (
	ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,63}$`)
)

// validator collects per-key errors while it converts values.
type validator struct {
	file string
	v    *viper.Viper
	errs []error
}

func (x *validator) fail(key string, format string, args ...any) {
	x.errs = append(x.errs, &Error{File: x.file, Key: key, Err: fmt.Errorf(format, args...)})
}

func (x *validator) str(key string) string {
	s, err := cast.ToStringE(x.v.Get(key))
	if err != nil {
		x.fail(key, "want a string: %v", err)
	}
	return strings.TrimSpace(s)
}

func (x *validator) boolean(key string) bool {
	b, err := cast.ToBoolE(x.v.Get(key))
	if err != nil {
		x.fail(key, "want true or false: %v", err)
	}
	return b
}

func (x *validator) integer(key string, lo, hi int) int {
	n, err := cast.ToIntE(x.v.Get(key))
	if err != nil {
		x.fail(key, "want a number: %v", err)
		return 0
	}
	if n < lo || n > hi {
		x.fail(key, "%d is outside %d-%d", n, lo, hi)
	}
	return n
}

func (x *validator) prefix(key string, want4 bool, maxBits int) netip.Prefix {
	s := x.str(key)
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		x.fail(key, "not a CIDR: %q", s)
	case p.Addr().Is4() != want4:
		x.fail(key, "%s: wrong address family", s)
	case p.Bits() > maxBits:
		x.fail(key, "%s: prefix too long (at most /%d)", s, maxBits)
	}
	return p.Masked()
}

func (x *validator) list(key string) []string {
	raw := x.v.Get(key)
	if s, ok := raw.(string); ok { // from the environment: comma-separated
		var out []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	l, err := cast.ToStringSliceE(raw)
	if err != nil {
		x.fail(key, "want a list: %v", err)
	}
	return l
}

func (x *validator) tags(key string) map[string]string {
	out := map[string]string{}
	raw := x.v.Get(key)
	if s, ok := raw.(string); ok { // from the environment: k=v,k=v
		m, err := ParseTags(s)
		if err != nil {
			x.fail(key, "%v", err)
		}
		return m
	}
	m, err := cast.ToStringMapStringE(raw)
	if err != nil {
		x.fail(key, "want a map of strings: %v", err)
		return out
	}
	for k, val := range m {
		k = strings.ToLower(k)
		if !tagRE.MatchString(k) || !tagRE.MatchString(val) {
			x.fail(key+"."+k, "tag keys and values are 1-63 of [A-Za-z0-9_./-], got %q: %q", k, val)
			continue
		}
		out[k] = val
	}
	return out
}

// ParseTags parses "k=v,k=v" (the --tags flag and SEGMESH_TAGS).
func ParseTags(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, val, ok := strings.Cut(f, "=")
		k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
		if !ok || !tagRE.MatchString(k) || !tagRE.MatchString(val) {
			return nil, fmt.Errorf("bad tag %q: want key=value of [A-Za-z0-9_./-]", f)
		}
		out[k] = val
	}
	return out, nil
}

func validate(path string, v *viper.Viper) (*Config, error) {
	x := &validator{file: path, v: v}
	c := &Config{File: path}

	c.Name = x.str("name")
	if c.Name == "" {
		c.Name = hostname()
	}
	if len(c.Name) > 63 || strings.ContainsAny(c.Name, " \t\n") {
		x.fail("name", "%q: at most 63 characters, no spaces", c.Name)
	}
	c.Interface = x.str("interface")
	if !ifNameRE.MatchString(c.Interface) {
		x.fail("interface", "%q: 1-15 characters of [A-Za-z0-9_.-]", c.Interface)
	}
	c.ListenPort = x.integer("listen_port", 1, 65535)
	if mtu := x.str("mtu"); mtu != "auto" {
		n, err := strconv.Atoi(mtu)
		if err != nil || n < 1280 || n > 65535 {
			x.fail("mtu", "%q: want auto or a number 1280-65535", mtu)
		}
		c.MTU = n
	}
	c.PrivateKeyFile = x.secretFile("private_key_file")
	c.Network = x.prefix("network", true, 30)
	c.Network6 = x.prefix("network6", false, 120)
	c.StateDir = x.nonEmpty("state_dir")
	c.ControlSocket = x.nonEmpty("control_socket")
	if c.ControlGroup = x.str("control_group"); c.ControlGroup != "" {
		if _, err := user.LookupGroup(c.ControlGroup); err != nil {
			x.fail("control_group", "%v", err)
		}
	}
	if c.MetricsListen = x.str("metrics_listen"); c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			x.fail("metrics_listen", "%q: want host:port or \"\"", c.MetricsListen)
		}
	}
	c.PeerAPIPort = x.integer("peer_api_port", 0, 65535)
	c.LogLevel = x.level("log_level")
	if c.LogFormat = x.str("log_format"); c.LogFormat != "text" && c.LogFormat != "json" {
		x.fail("log_format", "%q: want text or json", c.LogFormat)
	}
	c.DeadPeerGrace = x.duration("dead_peer_grace")
	if c.AddressRetention = x.days("address_retention"); c.AddressRetention < c.DeadPeerGrace {
		x.fail("address_retention", "%v is shorter than dead_peer_grace (%v): a dead peer would lose its address while it still has access", c.AddressRetention, c.DeadPeerGrace)
	}
	c.FlowLog = x.str("flow_log")
	c.FlowLogAllowed = x.boolean("flow_log_allowed")
	c.Gossip = x.gossip()
	c.Tags = x.tags("tags")
	c.Workloads = x.workloads(c.Tags)
	c.PolicyFile = x.str("policy_file")
	c.Trust = Trust{CAFile: x.str("trust.ca_file"), CertFile: x.str("trust.cert_file"), OperatorKeysFile: x.str("trust.operator_keys_file")}
	x.laterFeatures(c)
	if len(x.errs) > 0 {
		return nil, errors.Join(x.errs...)
	}
	return c, nil
}

// laterFeatures checks settings that depend on each other.
func (x *validator) laterFeatures(c *Config) {
	switch {
	case c.Trust.CAFile != "" && c.Trust.CertFile == "":
		x.fail("trust.cert_file", "CA mode (trust.ca_file set) needs this node's certificate (segmesh cert issue)")
	case c.Trust.CAFile == "" && c.Trust.CertFile != "":
		x.fail("trust.ca_file", "a certificate without the CA's public key cannot be verified; set trust.ca_file too")
	case c.Trust.CAFile == "" && c.Trust.OperatorKeysFile != "":
		x.fail("trust.operator_keys_file", "operator keys sign quarantines in CA mode; in trust: open any node's root may quarantine (unset it or set trust.ca_file)")
	}
	for key, p := range map[string]string{"trust.ca_file": c.Trust.CAFile, "trust.cert_file": c.Trust.CertFile, "trust.operator_keys_file": c.Trust.OperatorKeysFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			x.fail(key, "%v", err)
		}
	}

}

func (x *validator) nonEmpty(key string) string {
	s := x.str(key)
	if s == "" {
		x.fail(key, "must not be empty")
	}
	return s
}

func (x *validator) level(key string) slog.Level {
	s := x.str(key)
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil || !map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[strings.ToLower(s)] {
		x.fail(key, "%q: want debug, info, warn or error", s)
	}
	return l
}

func (x *validator) duration(key string) time.Duration {
	d, err := cast.ToDurationE(x.v.Get(key))
	if err != nil || d < 0 {
		x.fail(key, "%v: want a duration like 2m or 30s", x.v.Get(key))
	}
	return d
}

// days is duration that also takes whole days ("30d").
func (x *validator) days(key string) time.Duration {
	if s, ok := x.v.Get(key).(string); ok && strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 || n > 3650 {
			x.fail(key, "%q: want a duration like 30d, 72h or 10m", s)
			return 0
		}
		return time.Duration(n) * 24 * time.Hour
	}
	return x.duration(key)
}

// secretFile checks that a key file exists and is not group/world-accessible.
func (x *validator) secretFile(key string) string {
	p := x.nonEmpty(key)
	if p == "" {
		return p
	}
	st, err := os.Stat(p)
	switch {
	case err != nil:
		x.fail(key, "%v", err)
	case !st.Mode().IsRegular():
		x.fail(key, "%s: not a regular file", p)
	case st.Mode().Perm()&0o077 != 0:
		x.fail(key, "%s: mode %04o is group- or world-accessible; run chmod 600 %s", p, st.Mode().Perm(), p)
	}
	return p
}

func (x *validator) gossip() Gossip {
	g := Gossip{Bind: x.str("gossip.bind"), Advertise: x.str("gossip.advertise")}
	if g.Advertise != "" {
		if _, err := netip.ParseAddr(g.Advertise); err != nil {
			x.fail("gossip.advertise", "%q: want an IP address", g.Advertise)
		}
	}
	if g.Bind != "" {
		if _, err := SplitHostPortDefault(g.Bind, DefaultGossipPort); err != nil {
			x.fail("gossip.bind", "%v", err)
		}
	}
	for _, j := range x.list("gossip.join") {
		ap, err := SplitHostPortDefault(j, DefaultGossipPort)
		if err != nil {
			x.fail("gossip.join", "%v", err)
			continue
		}
		g.Join = append(g.Join, ap)
	}
	g.SecretFile = x.secretFile("gossip.secret_file")
	if g.SecretFile != "" {
		if _, err := ReadClusterKeys(g.SecretFile); err != nil {
			x.fail("gossip.secret_file", "%v", err)
		}
	}
	return g
}

// SplitHostPortDefault accepts "host" or "host:port" (IPv6 in brackets with a
// port) and returns "host:port".
func SplitHostPortDefault(s string, port int) (string, error) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || h == "" {
			return "", fmt.Errorf("%q: bad port", s)
		}
		return s, nil
	}
	if s == "" || strings.ContainsAny(s, " /") {
		return "", fmt.Errorf("%q: want host or host:port", s)
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(port)), nil
}

// ReadClusterKeys reads the gossip keyring: base64 32-byte keys, one per line,
// the first being the primary. Blank lines and # comments are ignored. The
// file must not be group- or world-accessible.
func ReadClusterKeys(path string) ([][]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o is group- or world-accessible", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("%s:%d: want a base64 32-byte key", path, i+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key (gossip is never unencrypted)", path)
	}
	return keys, nil
}
