package flows

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// v4 builds an IPv4 packet with ihl words of header, protocol proto and
// transport bytes l4; the total length field covers everything.
func v4(src, dst string, proto uint8, l4 []byte) []byte {
	return v4opt(src, dst, proto, 5, 0, l4)
}

func v4opt(src, dst string, proto uint8, ihl int, frag uint16, l4 []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:4], uint16(len(h)+len(l4)))
	binary.BigEndian.PutUint16(h[6:8], frag)
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	for i := 20; i < len(h); i++ {
		h[i] = 1 // NOP options
	}
	return append(h, l4...)
}

// v6 builds an IPv6 packet whose first next header is nh, followed by rest
// (extension headers and transport bytes).
func v6(src, dst string, nh uint8, rest []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(len(rest)))
	h[6] = nh
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, rest...)
}

// ports is a transport header starting with source and destination port.
func ports(sport, dport uint16, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	return b
}

// ext is a generic IPv6 extension header of 8*(1+units) bytes.
func ext(next uint8, units int) []byte {
	b := make([]byte, 8*(units+1))
	b[0], b[1] = next, byte(units)
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParsePayload(t *testing.T) {
	a4, b4 := "100.80.1.2", "100.80.3.7"
	a6, b6 := "fd5e:6d00::1", "fd5e:6d00::2"
	tests := []struct {
		name    string
		in      []byte
		want    Packet
		wantErr error
	}{
		{"v4 tcp", v4(a4, b4, 6, ports(40000, 5432, 20)), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 6, Port: 5432}, nil},
		{"v4 udp", v4(a4, b4, 17, ports(5353, 53, 8)), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 17, Port: 53}, nil},
		{"v4 icmp echo", v4(a4, b4, 1, []byte{8, 0, 0, 0, 0, 1, 0, 1}), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 1, ICMPType: 8}, nil},
		{"v4 sctp port", v4(a4, b4, 132, ports(1, 3868, 12)), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 132, Port: 3868}, nil},
		{"v4 gre no port", v4(a4, b4, 47, []byte{0, 0, 8, 0}), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 47}, nil},
		{"v4 options", v4opt(a4, b4, 6, 15, 0, ports(1, 443, 20)), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 6, Port: 443}, nil},
		{"v4 first fragment (MF)", v4opt(a4, b4, 17, 5, 0x2000, ports(1, 4789, 8)), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 17, Port: 4789}, nil},
		{"v4 later fragment", v4opt(a4, b4, 17, 5, 0x0010, []byte{9, 9}), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 17}, nil},
		{"v4 snaplen cut inside tcp after port", v4(a4, b4, 6, ports(1, 22, 20))[:24], Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 6, Port: 22}, nil},
		{"v4 link padding ignored", append(v4(a4, b4, 1, []byte{0}), 0xff, 0xff), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 1, ICMPType: 0}, nil},
		{"v4 tcp truncated before port", v4(a4, b4, 6, ports(1, 22, 20))[:23], Packet{}, ErrTruncated},
		{"v4 options truncated", v4opt(a4, b4, 6, 15, 0, nil)[:40], Packet{}, ErrTruncated},
		{"v4 header truncated", v4(a4, b4, 6, nil)[:19], Packet{}, ErrTruncated},
		{"v4 icmp empty", v4(a4, b4, 1, nil), Packet{}, ErrTruncated},
		{"v4 bad ihl", func() []byte { b := v4(a4, b4, 6, ports(1, 2, 20)); b[0] = 0x44; return b }(), Packet{}, ErrMalformed},
		{"v4 total < ihl", func() []byte { b := v4(a4, b4, 6, ports(1, 2, 20)); b[3] = 10; b[2] = 0; return b }(), Packet{}, ErrMalformed},
		{"v4 total length zero (BIG TCP)", func() []byte { b := v4(a4, b4, 6, ports(1, 80, 20)); b[2], b[3] = 0, 0; return b }(), Packet{Src: mustAddr(a4), Dst: mustAddr(b4), Proto: 6, Port: 80}, nil},

		{"v6 tcp", v6(a6, b6, 6, ports(1, 8080, 20)), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 6, Port: 8080}, nil},
		{"v6 udp", v6(a6, b6, 17, ports(1, 53, 8)), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 17, Port: 53}, nil},
		{"v6 icmpv6 echo", v6(a6, b6, 58, []byte{128, 0, 0, 0}), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 58, ICMPType: 128}, nil},
		{"v6 hop-by-hop, dstopts, tcp", v6(a6, b6, 0, cat(ext(60, 0), ext(6, 1), ports(1, 9000, 20))), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 6, Port: 9000}, nil},
		{"v6 routing header, udp", v6(a6, b6, 43, cat(ext(17, 2), ports(1, 123, 8))), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 17, Port: 123}, nil},
		{"v6 first fragment", v6(a6, b6, 44, cat([]byte{17, 0, 0, 1, 0, 0, 0, 7}, ports(1, 4789, 8))), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 17, Port: 4789}, nil},
		{"v6 later fragment", v6(a6, b6, 44, []byte{17, 0, 0x05, 0x00, 0, 0, 0, 7, 1, 2}), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 17}, nil},
		{"v6 AH then tcp", v6(a6, b6, 51, cat([]byte{6, 4, 0, 0}, make([]byte, 20), ports(1, 25, 20))), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 6, Port: 25}, nil},
		{"v6 ESP", v6(a6, b6, 50, make([]byte, 16)), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 50}, nil},
		{"v6 no next header", v6(a6, b6, 59, nil), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 59}, nil},
		{"v6 mapped v4 stays v6", v6("::ffff:100.80.1.2", b6, 17, ports(1, 53, 8)), Packet{Src: mustAddr("::ffff:100.80.1.2"), Dst: mustAddr(b6), Proto: 17, Port: 53}, nil},
		{"v6 padding beyond payload length", append(v6(a6, b6, 58, []byte{1}), 0, 0), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 58, ICMPType: 1}, nil},
		{"v6 payload length zero", func() []byte { b := v6(a6, b6, 6, ports(1, 7, 20)); b[4], b[5] = 0, 0; return b }(), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 6, Port: 7}, nil},
		{"v6 header truncated", v6(a6, b6, 6, nil)[:39], Packet{}, ErrTruncated},
		{"v6 ext header past snaplen", v6(a6, b6, 0, cat(ext(6, 20), ports(1, 2, 20)))[:128], Packet{}, ErrTruncated},
		{"v6 ext header cut", v6(a6, b6, 60, []byte{6}), Packet{}, ErrTruncated},
		{"v6 fragment header cut", v6(a6, b6, 44, []byte{6, 0, 0}), Packet{}, ErrTruncated},
		{"v6 udp truncated", v6(a6, b6, 17, []byte{0, 1, 0}), Packet{}, ErrTruncated},
		{"v6 icmpv6 empty", v6(a6, b6, 58, nil), Packet{}, ErrTruncated},
		{"v6 extension header loop", v6(a6, b6, 60, cat(ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0), ext(60, 0))), Packet{}, ErrMalformed},
		{"v4 icmp in v6 has no type", v6(a6, b6, 1, []byte{8}), Packet{Src: mustAddr(a6), Dst: mustAddr(b6), Proto: 1}, nil},

		{"empty", nil, Packet{}, ErrTruncated},
		{"version 5", []byte{0x50, 1, 2, 3}, Packet{}, ErrMalformed},
		{"garbage", []byte("\xde\xad\xbe\xef GET / HTTP/1.1\r\n"), Packet{}, ErrMalformed},
		{"short text looking like IPv4", []byte("GET / HTTP/1.1\r\n"), Packet{}, ErrTruncated},
		{"ethernet frame", cat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, v4(a4, b4, 6, ports(1, 2, 20))), Packet{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParsePayload: err %v, want %v (packet %+v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			if hasPorts(got.Proto) && got.Port != 0 && got.SrcPort == 0 {
				t.Fatalf("ParsePayload = %+v: no source port", got)
			}
			got.SrcPort = 0 // the cases' packets use several; checked above
			if got != tt.want {
				t.Fatalf("ParsePayload = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProtoName(t *testing.T) {
	for proto, want := range map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "132", 0: "0", 255: "255"} {
		if got := ProtoName(proto); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", proto, got, want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// FuzzParsePayload checks that ParsePayload never panics and that what it
// accepts is consistent: addresses of the packet's IP version, a port only
// for port-carrying protocols, an ICMP type only for ICMP, and the same
// result on a copy.
func FuzzParsePayload(f *testing.F) {
	a4, b4 := "100.80.1.2", "100.80.3.7"
	a6, b6 := "fd5e:6d00::1", "fd5e:6d00::2"
	for _, seed := range [][]byte{
		v4(a4, b4, 6, ports(1, 5432, 20)),
		v4(a4, b4, 17, ports(1, 53, 8)),
		v4(a4, b4, 1, []byte{8, 0, 0, 0}),
		v4opt(a4, b4, 6, 15, 0, ports(1, 443, 20)),
		v4opt(a4, b4, 17, 5, 0x0010, []byte{9, 9}),
		v6(a6, b6, 6, ports(1, 8080, 20)),
		v6(a6, b6, 58, []byte{128, 0, 0, 0}),
		v6(a6, b6, 0, cat(ext(60, 0), ext(6, 1), ports(1, 9000, 20))),
		v6(a6, b6, 44, cat([]byte{17, 0, 0, 1, 0, 0, 0, 7}, ports(1, 4789, 8))),
		v6(a6, b6, 51, cat([]byte{6, 4, 0, 0}, make([]byte, 20), ports(1, 25, 20))),
		{}, {0x45}, {0x60, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		p, err := ParsePayload(b)
		if string(orig) != string(b) {
			t.Fatal("ParsePayload modified its input")
		}
		p2, err2 := ParsePayload(orig)
		if p != p2 || (err == nil) != (err2 == nil) {
			t.Fatalf("not deterministic: %+v %v vs %+v %v", p, err, p2, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither ErrTruncated nor ErrMalformed", err)
			}
			return
		}
		v := b[0] >> 4
		if v == 4 && (!p.Src.Is4() || !p.Dst.Is4()) || v == 6 && (!p.Src.Is6() || !p.Dst.Is6()) {
			t.Fatalf("version %d packet with addresses %v, %v", v, p.Src, p.Dst)
		}
		if p.Port != 0 && !hasPorts(p.Proto) {
			t.Fatalf("port %d for protocol %d", p.Port, p.Proto)
		}
		if p.ICMPType != 0 && !(v == 4 && p.Proto == ProtoICMP || v == 6 && p.Proto == ProtoICMPv6) {
			t.Fatalf("ICMP type %d for protocol %d in IPv%d", p.ICMPType, p.Proto, v)
		}
		if !p.Time.IsZero() {
			t.Fatal("ParsePayload set Time")
		}
	})
}
