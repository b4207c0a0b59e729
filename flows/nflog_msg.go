package flows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
)

// nfnetlink_log protocol constants (linux/netfilter/nfnetlink.h,
// linux/netfilter/nfnetlink_log.h).
const (
	netlinkNetfilter = 12 // NETLINK_NETFILTER
	nfnlSubsysULOG   = 4  // NFNL_SUBSYS_ULOG
	nfnetlinkV0      = 0  // NFNETLINK_V0

	nfulnlMsgPacket = 0 // NFULNL_MSG_PACKET: kernel → user
	nfulnlMsgConfig = 1 // NFULNL_MSG_CONFIG: user → kernel

	// enum nfulnl_attr_config
	nfulaCfgCmd     = 1 // struct nfulnl_msg_config_cmd {u8 command}
	nfulaCfgMode    = 2 // struct nfulnl_msg_config_mode {be32 copy_range; u8 copy_mode; u8 pad} (packed, 6 bytes)
	nfulaCfgQThresh = 5 // be32: messages batched before a flush (kernel default 100)
	nfulaCfgFlags   = 6 // be16

	// enum nfulnl_msg_config_cmds
	nfulnlCfgCmdBind = 1

	nfulnlCopyPacket = 0x02 // NFULNL_COPY_PACKET
	nfulnlCfgFSeq    = 0x0001

	// enum nfulnl_attr_type
	nfulaPacketHdr     = 1  // struct nfulnl_msg_packet_hdr {be16 hw_protocol; u8 hook; u8 pad}
	nfulaTimestamp     = 3  // struct nfulnl_msg_packet_timestamp {be64 sec; be64 usec}
	nfulaIfindexIndev  = 4  // be32
	nfulaPayload       = 9  // the network-layer packet
	nfulaPrefix        = 10 // NUL-terminated string
	nfulaUID           = 11 // be32: the local socket's owner
	nfulaSeq           = 12 // be32, instance-local sequence number (NFULNL_CFG_F_SEQ)
	nfgenmsgLen        = 4  // struct nfgenmsg {u8 family; u8 version; be16 res_id}
	nfulnlPacketHdrLen = 4
	nfulnlTimestampLen = 16
)

// nflogType is the netlink message type of nfnetlink_log message msg.
func nflogType(msg uint8) netlink.HeaderType {
	return netlink.HeaderType(nfnlSubsysULOG<<8 | uint16(msg))
}

// nfgenmsg encodes the nfnetlink header: family, NFNETLINK_V0, resource id
// (the NFLOG group) in network byte order.
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, nfnetlinkV0, byte(resID >> 8), byte(resID)}
}

// configMsg builds an NFULNL_MSG_CONFIG request for group with the given
// attributes, asking for an acknowledgement.
func configMsg(group uint16, attrs []netlink.Attribute) (netlink.Message, error) {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode nflog config attributes: %w", err)
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  nflogType(nfulnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		// AF_UNSPEC: the family only matters to the PF (un)bind commands.
		Data: append(nfgenmsg(0, group), b...),
	}, nil
}

// cmdAttr is NFULA_CFG_CMD with the given command.
func cmdAttr(cmd uint8) netlink.Attribute {
	return netlink.Attribute{Type: nfulaCfgCmd, Data: []byte{cmd}}
}

// modeAttr is NFULA_CFG_MODE: copy the packet, up to copyRange bytes.
func modeAttr(copyRange uint32) netlink.Attribute {
	b := make([]byte, 6)
	binary.BigEndian.PutUint32(b, copyRange)
	b[4] = nfulnlCopyPacket
	return netlink.Attribute{Type: nfulaCfgMode, Data: b}
}

// qthreshAttr is NFULA_CFG_QTHRESH: flush after n packets.
func qthreshAttr(n uint32) netlink.Attribute {
	return netlink.Attribute{Type: nfulaCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, n)}
}

// flagsAttr is NFULA_CFG_FLAGS.
func flagsAttr(flags uint16) netlink.Attribute {
	return netlink.Attribute{Type: nfulaCfgFlags, Data: binary.BigEndian.AppendUint16(nil, flags)}
}

// nflogMsg is a decoded NFULNL_MSG_PACKET.
type nflogMsg struct {
	family  uint8  // NFPROTO_IPV4 / NFPROTO_IPV6
	group   uint16 // res_id
	hwProto uint16 // ETH_P_IP / ETH_P_IPV6 (0 when absent)
	hook    uint8
	inIf    uint32
	prefix  string
	uid     uint32
	hasUID  bool
	seq     uint32
	hasSeq  bool
	time    time.Time // zero when the kernel sent no timestamp
	payload []byte
}

var errNotPacket = errors.New("not an nflog packet message")

// decodePacketMsg decodes an NFULNL_MSG_PACKET message. Unknown attributes
// are ignored; the payload is a copy.
func decodePacketMsg(m netlink.Message) (nflogMsg, error) {
	var out nflogMsg
	if m.Header.Type != nflogType(nfulnlMsgPacket) {
		return out, fmt.Errorf("message type %#x: %w", uint16(m.Header.Type), errNotPacket)
	}
	if len(m.Data) < nfgenmsgLen {
		return out, fmt.Errorf("nfgenmsg: %d bytes: %w", len(m.Data), ErrTruncated)
	}
	out.family = m.Data[0]
	out.group = binary.BigEndian.Uint16(m.Data[2:4])
	ad, err := netlink.NewAttributeDecoder(m.Data[nfgenmsgLen:])
	if err != nil {
		return out, fmt.Errorf("nflog attributes: %w", err)
	}
	var havePayload bool
	for ad.Next() {
		b := ad.Bytes()
		switch ad.Type() {
		case nfulaPacketHdr:
			if len(b) < nfulnlPacketHdrLen {
				return out, fmt.Errorf("NFULA_PACKET_HDR: %d bytes: %w", len(b), ErrTruncated)
			}
			out.hwProto = binary.BigEndian.Uint16(b[0:2])
			out.hook = b[2]
		case nfulaTimestamp:
			if len(b) < nfulnlTimestampLen {
				return out, fmt.Errorf("NFULA_TIMESTAMP: %d bytes: %w", len(b), ErrTruncated)
			}
			sec := binary.BigEndian.Uint64(b[0:8])
			usec := binary.BigEndian.Uint64(b[8:16])
			if sec < 1<<40 && usec < 1e6 { // sane values only
				out.time = time.Unix(int64(sec), int64(usec)*1000)
			}
		case nfulaIfindexIndev:
			if len(b) < 4 {
				return out, fmt.Errorf("NFULA_IFINDEX_INDEV: %d bytes: %w", len(b), ErrTruncated)
			}
			out.inIf = binary.BigEndian.Uint32(b)
		case nfulaPrefix:
			out.prefix = cString(b)
		case nfulaUID:
			if len(b) >= 4 {
				out.uid, out.hasUID = binary.BigEndian.Uint32(b), true
			}
		case nfulaSeq:
			if len(b) < 4 {
				return out, fmt.Errorf("NFULA_SEQ: %d bytes: %w", len(b), ErrTruncated)
			}
			out.seq, out.hasSeq = binary.BigEndian.Uint32(b), true
		case nfulaPayload:
			out.payload, havePayload = b, true
		}
	}
	if err := ad.Err(); err != nil {
		return out, fmt.Errorf("nflog attributes: %w", err)
	}
	if !havePayload {
		return out, fmt.Errorf("no NFULA_PAYLOAD (copy mode not packet?): %w", ErrTruncated)
	}
	return out, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
