package flows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// IP protocol numbers the package names or looks into.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoICMPv6  uint8 = 58
	protoDCCP    uint8 = 33
	protoSCTP    uint8 = 132
	protoUDPLite uint8 = 136
)

// Errors of ParsePayload (wrapped; test with errors.Is).
var (
	// ErrTruncated: the payload ends before a header that must be read.
	ErrTruncated = errors.New("truncated packet")
	// ErrMalformed: a header field is impossible (bad version, length).
	ErrMalformed = errors.New("malformed packet")
)

// Packet is one logged packet (or, from InboundFlows, one connection): who
// sent it where. Packet is comparable.
type Packet struct {
	Src, Dst netip.Addr // IPv4 addresses are plain 4-byte addresses, never 4in6
	Proto    uint8      // IP protocol number (after IPv6 extension headers)
	// Port is the destination port for TCP, UDP, UDP-Lite, SCTP and DCCP;
	// 0 for other protocols and for non-first fragments.
	Port uint16
	// SrcPort is the source port where Port is set (not part of an
	// aggregate; egress uses it to find the sending socket).
	SrcPort uint16
	// ICMPType is the ICMP (Proto 1, IPv4) or ICMPv6 (Proto 58, IPv6) type;
	// 0 otherwise. It is not part of a flow aggregate.
	ICMPType uint8
	// Time is when the kernel logged the packet (or when it was read, when
	// the kernel gave no timestamp). ParsePayload leaves it zero.
	Time time.Time
	// Out marks an egress denial: logged by the sender's output chain
	// (NFLOG prefix OutPrefix + the local workload's name, "" for the
	// node's identity) for a local process. Src is then this node's
	// address and Dst the peer's.
	Out      bool
	Workload string
	// UID is the sending socket's owner when HasUID (NFLOG gives it for
	// local sockets).
	UID    int
	HasUID bool
	// Process: where the node could find it, the sending process and the
	// workload's cgroup (egress only).
	PID     int
	Command string
	Cgroup  string
}

// OutPrefix starts the NFLOG prefix of egress denials (the nftables
// backend logs them with it).
const OutPrefix = "segmesh-out:"

// ProtoName names an IP protocol as api.Flow does: "tcp", "udp", "icmp",
// "icmpv6", else the decimal number.
func ProtoName(proto uint8) string {
	switch proto {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	default:
		return strconv.Itoa(int(proto))
	}
}

// hasPorts reports whether proto carries a 16-bit destination port at
// offset 2 of its header.
func hasPorts(proto uint8) bool {
	switch proto {
	case ProtoTCP, ProtoUDP, protoDCCP, protoSCTP, protoUDPLite:
		return true
	}
	return false
}

// ParsePayload decodes the network-layer packet b (an NFLOG payload, which
// may be cut short by the snaplen): IPv4 or IPv6 (by the version nibble),
// source, destination, protocol after IPv6 extension headers (hop-by-hop,
// routing, fragment, destination options, AH, mobility, HIP, shim6), and the
// destination port or ICMP type. Non-first fragments yield Port 0 without
// error. It never panics and does not retain b. On error the returned Packet
// holds what was decoded so far.
func ParsePayload(b []byte) (Packet, error) {
	if len(b) == 0 {
		return Packet{}, fmt.Errorf("empty payload: %w", ErrTruncated)
	}
	switch v := b[0] >> 4; v {
	case 4:
		return parseIPv4(b)
	case 6:
		return parseIPv6(b)
	default:
		return Packet{}, fmt.Errorf("IP version %d: %w", v, ErrMalformed)
	}
}

func parseIPv4(b []byte) (Packet, error) {
	if len(b) < 20 {
		return Packet{}, fmt.Errorf("IPv4 header: %d bytes: %w", len(b), ErrTruncated)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return Packet{}, fmt.Errorf("IPv4 header length %d: %w", ihl, ErrMalformed)
	}
	// Total length 0 is what BIG TCP puts in GSO packets over 64 KiB.
	if total := int(binary.BigEndian.Uint16(b[2:4])); total != 0 {
		if total < ihl {
			return Packet{}, fmt.Errorf("IPv4 total length %d < header length %d: %w", total, ihl, ErrMalformed)
		}
		if len(b) > total {
			b = b[:total] // link-layer padding
		}
	}
	p := Packet{
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
		Proto: b[9],
	}
	if len(b) < ihl {
		return p, fmt.Errorf("IPv4 options: %d of %d header bytes: %w", len(b), ihl, ErrTruncated)
	}
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return p, nil // not the first fragment: no transport header
	}
	return parseTransport(p, b[ihl:], ProtoICMP)
}

// IPv6 extension headers with the generic layout {next header, length in
// 8-octet units not counting the first}.
func genericExtHeader(nh uint8) bool {
	switch nh {
	case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, dstopts, mobility, HIP, shim6
		return true
	}
	return false
}

const (
	ipv6Fragment = 44
	ipv6AH       = 51
	// maxExtHeaders bounds the extension header walk.
	maxExtHeaders = 16
)

func parseIPv6(b []byte) (Packet, error) {
	if len(b) < 40 {
		return Packet{}, fmt.Errorf("IPv6 header: %d bytes: %w", len(b), ErrTruncated)
	}
	// Payload length 0 is a jumbogram or a BIG TCP GSO packet: unknown.
	if plen := int(binary.BigEndian.Uint16(b[4:6])); plen != 0 && len(b) > 40+plen {
		b = b[:40+plen]
	}
	p := Packet{
		Src: netip.AddrFrom16([16]byte(b[8:24])),
		Dst: netip.AddrFrom16([16]byte(b[24:40])),
	}
	nh, off := b[6], 40
	for range maxExtHeaders {
		switch {
		case genericExtHeader(nh) || nh == ipv6AH:
			if len(b) < off+2 {
				p.Proto = nh
				return p, fmt.Errorf("IPv6 extension header %d: %w", nh, ErrTruncated)
			}
			n := (int(b[off+1]) + 1) * 8
			if nh == ipv6AH {
				n = (int(b[off+1]) + 2) * 4
			}
			nh, off = b[off], off+n
		case nh == ipv6Fragment:
			if len(b) < off+8 {
				p.Proto = nh
				return p, fmt.Errorf("IPv6 fragment header: %w", ErrTruncated)
			}
			first := binary.BigEndian.Uint16(b[off+2:off+4])>>3 == 0
			nh, off = b[off], off+8
			if !first {
				p.Proto = nh
				return p, nil
			}
		default:
			p.Proto = nh
			if off > len(b) {
				return p, fmt.Errorf("IPv6 extension headers end past the payload: %w", ErrTruncated)
			}
			return parseTransport(p, b[off:], ProtoICMPv6)
		}
	}
	p.Proto = nh
	return p, fmt.Errorf("more than %d IPv6 extension headers: %w", maxExtHeaders, ErrMalformed)
}

// parseTransport reads the destination port or ICMP type from the transport
// header t; icmp is the ICMP protocol number of the packet's IP version.
func parseTransport(p Packet, t []byte, icmp uint8) (Packet, error) {
	switch {
	case hasPorts(p.Proto):
		if len(t) < 4 {
			return p, fmt.Errorf("%s header: %d bytes: %w", ProtoName(p.Proto), len(t), ErrTruncated)
		}
		p.SrcPort, p.Port = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
	case p.Proto == icmp:
		if len(t) < 1 {
			return p, fmt.Errorf("%s header: %w", ProtoName(p.Proto), ErrTruncated)
		}
		p.ICMPType = t[0]
	}
	return p, nil
}
