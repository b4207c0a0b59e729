package acl

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// services reads the services mapping; every name it tries to define
// (valid or not) is marked, so a reference to a broken service reports only
// the service's own error.
func (ps *parser) services(n *yaml.Node) []Service {
	var out []Service
	for _, p := range ps.pairs(n, "services") {
		ps.serviceNames[p.name] = true
		if why := checkServiceName(p.name); why != "" {
			ps.nodeErrorf(p.key, "%s", why)
			continue
		}
		svc := Service{Name: p.name, Pos: posOf(p.key)}
		label := "service " + strconv.Quote(p.name)
		for _, item := range ps.list(p.val, label, "[tcp/80, tcp/443]") {
			e, ok := ps.portEntry(item, false)
			if ok {
				svc.Ports = append(svc.Ports, e.Ports...)
			}
		}
		ps.defServices[p.name] = svc
		out = append(out, svc)
	}
	return out
}

// portEntry reads one ports entry: a port as ParsePort reads it, or a
// service name (built in, or when local is true also one of the policy's).
func (ps *parser) portEntry(n *yaml.Node, local bool) (PortEntry, bool) {
	s, ok := ps.str(n, "a port")
	if !ok {
		return PortEntry{}, false
	}
	e := PortEntry{Pos: posOf(n)}
	if isPortSyntax(s) {
		port, err := ParsePort(s)
		if err != nil {
			ps.nodeErrorf(n, "%v", err)
			return e, false
		}
		e.Ports = []Port{port}
		return e, true
	}
	svc, found := ps.service(s, local)
	if !found {
		ps.unknownService(n, s, local)
		return e, false
	}
	if svc.Name == "" { // defined, but with errors already reported
		return e, false
	}
	e.Service, e.Ports = s, svc.Ports
	if len(e.Ports) == 0 {
		return e, false
	}
	return e, true
}

// service resolves a service name. A name
// the services section tried to define but could not is found with an
// empty Service.
func (ps *parser) service(name string, local bool) (Service, bool) {
	if local {
		if svc, ok := ps.defServices[name]; ok {
			return svc, true
		}
		if ps.serviceNames[name] {
			return Service{}, true
		}
	}
	if svc, ok := builtinService(name); ok {
		return svc, true
	}
	return Service{}, false
}

// unknownService reports a ports entry naming no service.
func (ps *parser) unknownService(n *yaml.Node, name string, local bool) {
	where := "a built-in service"
	if local {
		where = "a service defined under services, or a built-in one"
	}
	ps.nodeErrorf(n, "unknown service %q (want %s: %s; or a port such as tcp/80)", name, where, builtinNames())
}
