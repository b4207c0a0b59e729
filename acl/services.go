package acl

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Service is a named set of ports, from the policy's services section or
// built in. A rule's ports list and a test's port may name it instead of
// spelling the ports.
type Service struct {
	Name  string
	Ports []Port // in the order written
	Pos   Pos    // zero for a built-in service
}

// builtinServices are the service names every policy knows; a policy may not
// redefine them.
var builtinServices = []Service{
	{Name: "ssh", Ports: []Port{{protoNameTCP, 22, 22}}},
	{Name: "http", Ports: []Port{{protoNameTCP, 80, 80}}},
	{Name: "https", Ports: []Port{{protoNameTCP, 443, 443}}},
	{Name: "dns", Ports: []Port{{protoNameUDP, 53, 53}, {protoNameTCP, 53, 53}}},
	{Name: "ntp", Ports: []Port{{protoNameUDP, 123, 123}}},
	{Name: "postgres", Ports: []Port{{protoNameTCP, 5432, 5432}}},
	{Name: "mysql", Ports: []Port{{protoNameTCP, 3306, 3306}}},
	{Name: "redis", Ports: []Port{{protoNameTCP, 6379, 6379}}},
	{Name: "mongodb", Ports: []Port{{protoNameTCP, 27017, 27017}}},
	{Name: "kafka", Ports: []Port{{protoNameTCP, 9092, 9092}}},
	{Name: "etcd", Ports: []Port{{protoNameTCP, 2379, 2380}}},
	{Name: "prometheus", Ports: []Port{{protoNameTCP, 9090, 9090}}},
	{Name: "node-exporter", Ports: []Port{{protoNameTCP, 9100, 9100}}},
}

// BuiltinServices returns a copy of the built-in services, in the order
// docs/policy.md lists them.
func BuiltinServices() []Service {
	out := make([]Service, len(builtinServices))
	for i, s := range builtinServices {
		out[i] = Service{Name: s.Name, Ports: slices.Clone(s.Ports)}
	}
	return out
}

// builtinService returns the built-in service called name.
func builtinService(name string) (Service, bool) {
	for _, s := range builtinServices {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Service returns the service called name: one of p's services, else a
// built-in one (p may be nil).
func (p *Policy) Service(name string) (Service, bool) {
	if p != nil {
		for _, s := range p.Services {
			if s.Name == name {
				return s, true
			}
		}
	}
	return builtinService(name)
}

// serviceNameRE is what a service name may look like: it starts with a
// letter and holds letters, digits, '-', '_' and '.'; no '/' (port syntax).
var serviceNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)

// protocolWords are names that read as port entries, not services.
var protocolWords = []string{protoNameTCP, protoNameUDP, protoNameICMP, protoNameAny, "icmpv6"}

// checkServiceName says why name cannot name a service ("" when it can).
func checkServiceName(name string) string {
	switch {
	case name == "":
		return "service name is empty"
	case slices.Contains(protocolWords, strings.ToLower(name)):
		return fmt.Sprintf("service name %q clashes with the protocol %q (port entries use it)", name, strings.ToLower(name))
	case strings.Contains(name, "/"):
		return fmt.Sprintf("service name %q clashes with port syntax (no '/' in a service name)", name)
	case !serviceNameRE.MatchString(name):
		return fmt.Sprintf("service name %q is not a name (start with a letter; letters, digits, '-', '_', '.')", name)
	}
	if _, ok := builtinService(name); ok {
		return fmt.Sprintf("service %q is built in and cannot be redefined (built-ins: %s)", name, builtinNames())
	}
	return ""
}

// builtinNames lists the built-in service names, comma-separated.
func builtinNames() string {
	names := make([]string, len(builtinServices))
	for i, s := range builtinServices {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// isPortSyntax reports whether a ports entry is written as a port (a
// protocol word, or anything with a '/'), not as a service name.
func isPortSyntax(s string) bool {
	proto, _, hasSlash := strings.Cut(s, "/")
	return hasSlash || slices.Contains(protocolWords, proto)
}

// FlowPort reads one flow as policy explain takes it: tcp/N, udp/N or icmp,
// or the name of a service (p's or built in; p may be nil) of exactly one
// such port. It returns the port and the service name ("" for a port).
func (p *Policy) FlowPort(s string) (Port, string, error) {
	oneFlow := func(pt Port) bool { return pt.Proto != protoNameAny && pt.Lo == pt.Hi }
	if isPortSyntax(s) {
		pt, err := ParsePort(s)
		if err != nil {
			return Port{}, "", err
		}
		if !oneFlow(pt) {
			return Port{}, "", errors.New("give one protocol and port, e.g. tcp/5432 or icmp")
		}
		return pt, "", nil
	}
	svc, ok := p.Service(s)
	switch {
	case !ok:
		return Port{}, "", fmt.Errorf("unknown service %q (want a service of the policy or a built-in one: %s; or a port such as tcp/5432)", s, builtinNames())
	case len(svc.Ports) == 0:
		return Port{}, "", fmt.Errorf("service %q has no ports", s)
	case len(svc.Ports) != 1 || !oneFlow(svc.Ports[0]):
		eg := svc.Ports[0].Proto
		if eg != protoNameICMP {
			eg += "/" + strconv.Itoa(int(svc.Ports[0].Lo))
		}
		return Port{}, "", fmt.Errorf("service %q is %s: give one flow, e.g. %s", s, describePorts(svc.Ports), eg)
	}
	return svc.Ports[0], s, nil
}
