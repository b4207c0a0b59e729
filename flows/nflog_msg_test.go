package flows

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// TestConfigMsgBytes pins the wire format of the bind request against the
// kernel uapi: nlmsg type (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
// nfgenmsg {AF_UNSPEC, NFNETLINK_V0, be16 group}, then NFULA_CFG_CMD (1
// byte, padded), NFULA_CFG_MODE (be32 range, u8 mode, pad: 6 bytes),
// NFULA_CFG_QTHRESH (be32) and NFULA_CFG_FLAGS (be16).
func TestConfigMsgBytes(t *testing.T) {
	m, err := configMsg(8476, []netlink.Attribute{cmdAttr(nfulnlCfgCmdBind), modeAttr(128), qthreshAttr(1), flagsAttr(nfulnlCfgFSeq)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != 0x0401 {
		t.Fatalf("type %#x, want 0x0401", m.Header.Type)
	}
	if m.Header.Flags != netlink.Request|netlink.Acknowledge {
		t.Fatalf("flags %v", m.Header.Flags)
	}
	ne := binary.NativeEndian
	attr := func(typ uint16, payload ...byte) []byte {
		b := ne.AppendUint16(nil, uint16(4+len(payload)))
		b = ne.AppendUint16(b, typ)
		b = append(b, payload...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	want := []byte{0, 0, 0x21, 0x1c} // family, version, 8476 big-endian
	want = append(want, attr(1, 1)...)
	want = append(want, attr(2, 0, 0, 0, 128, 2, 0)...)
	want = append(want, attr(5, 0, 0, 0, 1)...)
	want = append(want, attr(6, 0, 1)...)
	if !bytes.Equal(m.Data, want) {
		t.Fatalf("data\n%x\nwant\n%x", m.Data, want)
	}
}

// packetMsg builds an NFULNL_MSG_PACKET the way the kernel does.
func packetMsg(family uint8, group uint16, attrs ...netlink.Attribute) netlink.Message {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err)
	}
	return netlink.Message{Header: netlink.Header{Type: 0x0400}, Data: append(nfgenmsg(family, group), b...)}
}

func TestDecodePacketMsg(t *testing.T) {
	payload := v4("100.80.1.2", "100.80.3.7", 6, ports(1, 22, 20))
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts[0:8], 1_700_000_000)
	binary.BigEndian.PutUint64(ts[8:16], 250_000)
	m := packetMsg(2, 8476,
		netlink.Attribute{Type: nfulaPacketHdr, Data: []byte{0x08, 0x00, 0, 0}},
		netlink.Attribute{Type: nfulaIfindexIndev, Data: []byte{0, 0, 0, 7}},
		netlink.Attribute{Type: nfulaTimestamp, Data: ts},
		netlink.Attribute{Type: nfulaPrefix, Data: []byte("segmesh-deny\x00")},
		netlink.Attribute{Type: nfulaSeq, Data: []byte{0, 0, 1, 2}},
		netlink.Attribute{Type: 17, Data: []byte{1, 2, 3}}, // NFULA_HWLEN etc.: ignored
		netlink.Attribute{Type: nfulaPayload, Data: payload},
	)
	got, err := decodePacketMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.family != 2 || got.group != 8476 || got.hwProto != 0x0800 || got.hook != 0 || got.inIf != 7 ||
		got.prefix != "segmesh-deny" || !got.hasSeq || got.seq != 258 || !bytes.Equal(got.payload, payload) ||
		!got.time.Equal(time.Unix(1_700_000_000, 250_000_000)) {
		t.Fatalf("decoded %+v", got)
	}

	// Without timestamp and sequence.
	got, err = decodePacketMsg(packetMsg(10, 1, netlink.Attribute{Type: nfulaPayload, Data: payload}))
	if err != nil || !got.time.IsZero() || got.hasSeq || got.family != 10 {
		t.Fatalf("minimal message: %+v, %v", got, err)
	}

	for name, m := range map[string]netlink.Message{
		"no payload":       packetMsg(2, 1, netlink.Attribute{Type: nfulaPacketHdr, Data: []byte{8, 0, 0, 0}}),
		"short header":     packetMsg(2, 1, netlink.Attribute{Type: nfulaPacketHdr, Data: []byte{8}}, netlink.Attribute{Type: nfulaPayload, Data: payload}),
		"short timestamp":  packetMsg(2, 1, netlink.Attribute{Type: nfulaTimestamp, Data: []byte{1, 2}}, netlink.Attribute{Type: nfulaPayload, Data: payload}),
		"short seq":        packetMsg(2, 1, netlink.Attribute{Type: nfulaSeq, Data: []byte{1}}, netlink.Attribute{Type: nfulaPayload, Data: payload}),
		"short nfgenmsg":   {Header: netlink.Header{Type: 0x0400}, Data: []byte{2, 0}},
		"bad attributes":   {Header: netlink.Header{Type: 0x0400}, Data: []byte{2, 0, 0, 1, 200, 0, 9, 0}},
		"config, not data": {Header: netlink.Header{Type: 0x0401}, Data: []byte{2, 0, 0, 1}},
	} {
		if _, err := decodePacketMsg(m); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodePacketMsg(netlink.Message{Header: netlink.Header{Type: 0x0401}}); !errors.Is(err, errNotPacket) {
		t.Errorf("config message: %v, want errNotPacket", err)
	}
}

// TestHandleSequenceGaps: gaps in the kernel's sequence numbers count as
// dropped packets; undecodable messages are skipped without stopping.
func TestHandleSequenceGaps(t *testing.T) {
	r := &NFLOG{warn: newLimitedLog(discardLogger(), time.Hour), seqOn: true}
	msg := func(seq uint32, payload []byte) netlink.Message {
		return packetMsg(2, 1,
			netlink.Attribute{Type: nfulaSeq, Data: binary.BigEndian.AppendUint32(nil, seq)},
			netlink.Attribute{Type: nfulaPayload, Data: payload})
	}
	good := v4("100.80.1.2", "100.80.3.7", 17, ports(1, 53, 8))
	var got []Packet
	r.handle([]netlink.Message{
		msg(0, good),
		msg(1, []byte{0xff}),              // undecodable payload: skipped, not a loss
		msg(4, good),                      // 2 and 3 lost
		{Header: netlink.Header{Type: 2}}, // an error/ack message: ignored
		msg(5, good),
		packetMsg(2, 1), // no payload: skipped
	}, func(p Packet) { got = append(got, p) })
	if len(got) != 3 || got[0].Port != 53 || got[0].Time.IsZero() {
		t.Fatalf("packets %+v", got)
	}
	if d := r.Dropped(); d != 2 {
		t.Fatalf("Dropped = %d, want 2", d)
	}
	// Wrap-around is no loss.
	r.nextSeq = 0xffffffff
	r.handle([]netlink.Message{msg(0xffffffff, good), msg(0, good)}, func(Packet) {})
	if d := r.Dropped(); d != 2 {
		t.Fatalf("Dropped after wrap = %d, want 2", d)
	}
}

// TestBindKeepsEarlyPackets: packets the kernel logs between binding and the
// acknowledgement are kept for Run; a refusal is an error.
func TestBindKeepsEarlyPackets(t *testing.T) {
	payload := v4("100.80.1.2", "100.80.3.7", 17, ports(1, 53, 8))
	var sent []netlink.Message
	conn := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		sent = append(sent, reqs...)
		ack, _ := nltest.Error(0, reqs)
		early := packetMsg(2, 8476, netlink.Attribute{Type: nfulaPayload, Data: payload})
		return append([]netlink.Message{early}, ack...), nil
	})
	r, err := bindNFLOG(conn, 8476, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || sent[0].Header.Type != 0x0401 || !bytes.Equal(sent[0].Data[:4], []byte{0, 0, 0x21, 0x1c}) {
		t.Fatalf("requests %+v", sent)
	}
	if len(r.pending) != 1 {
		t.Fatalf("pending %d messages, want 1", len(r.pending))
	}
	var got []Packet
	r.handle(r.pending, func(p Packet) { got = append(got, p) })
	if len(got) != 1 || got[0].Port != 53 {
		t.Fatalf("early packet %+v", got)
	}

	conn = nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(int(unix.EPERM), reqs)
	})
	if _, err := bindNFLOG(conn, 8476, discardLogger()); !errors.Is(err, unix.EPERM) {
		t.Fatalf("refused bind: %v, want EPERM", err)
	}
}
