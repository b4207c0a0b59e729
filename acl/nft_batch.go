package acl

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemBatch is the transaction of one Apply: set element deletions and
// additions and the final rule's replacement, encoded straight into
// netlink messages. The library encodes every element with a few
// allocations of its own (about 1 µs each: at 200,000 elements a third of
// the kernel's own work), so Apply encodes the element messages itself, in
// the layout the library and nft use, into one growing buffer; the rest of
// the table (Install, dumps) stays with the library.
type elemBatch struct {
	buf     []byte   // message payloads, back to back
	ends    []int    // end of each message's payload in buf
	typ     []uint16 // NFT_MSG_* of each message
	flags   []netlink.HeaderFlags
	scratch []elem // shard buckets (see elements)
}

// maxElemListBytes bounds the element list of one message: an attribute's
// length is 16 bits (as in the library: 1 KiB left for the headers).
const maxElemListBytes = math.MaxUint16 - 1024

func (b *elemBatch) reset() {
	b.buf, b.ends, b.typ, b.flags = b.buf[:0], b.ends[:0], b.typ[:0], b.flags[:0]
}

// keepBytes bounds the buffers a batch keeps for the next one: a large
// batch (a first Apply: 10 MB for 200,000 elements) is rare, so its
// buffers are given back rather than held for the daemon's lifetime.
const keepBytes = 1 << 20

// release resets b, dropping buffers larger than keepBytes.
func (b *elemBatch) release() {
	b.reset()
	if cap(b.buf) > keepBytes {
		b.buf = nil
	}
	if cap(b.scratch) > keepBytes/24 { // an elem is 24 bytes
		b.scratch = nil
	}
}

func (b *elemBatch) empty() bool { return len(b.ends) == 0 }

// reserve makes room in buf for the elements of adds and dels and their
// messages' headers, so that a large batch is encoded without regrowing.
func (b *elemBatch) reserve(adds, dels *[numSets][]elem) {
	n := 0
	for i := range numSets {
		n += (len(adds[i]) + len(dels[i])) * kinds[i].attrBytes()
	}
	// At most one message per full list, plus one per set and operation,
	// of at most 64 bytes of headers each.
	msgs := n/maxElemListBytes + 2*(numSets+2*rangeShards)
	b.buf = slices.Grow(b.buf, n+64*msgs)
}

// putAttrHeader appends an attribute header (native byte order, like every
// netlink header) and returns its offset, for setAttrLen.
func (b *elemBatch) putAttrHeader(typ uint16) int {
	off := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	return off
}

// setAttrLen fixes the length of the attribute starting at off to end at
// the buffer's end (attributes are built whole: their lengths are 4-aligned).
func (b *elemBatch) setAttrLen(off int) {
	binary.NativeEndian.PutUint16(b.buf[off:], uint16(len(b.buf)-off))
}

// putStringAttr appends a NUL-terminated string attribute, padded to 4 bytes.
func (b *elemBatch) putStringAttr(typ uint16, s string) {
	n := unix.NLA_HDRLEN + len(s) + 1
	b.buf = binary.NativeEndian.AppendUint16(b.buf, uint16(n))
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, s...)
	b.buf = append(b.buf, make([]byte, 1+(4-n%4)%4)...)
}

// begin starts a message of family inet; end closes it.
func (b *elemBatch) begin() {
	b.buf = append(b.buf, byte(nftables.TableFamilyINet), unix.NFNETLINK_V0, 0, 0) // nfgenmsg
}

func (b *elemBatch) end(typ uint16, flags netlink.HeaderFlags) {
	b.ends = append(b.ends, len(b.buf))
	b.typ = append(b.typ, typ)
	b.flags = append(b.flags, flags)
}

// elements queues the deletion (del) or addition of l, elements of logical
// set i, in as few messages as the attribute size allows; a range set's
// elements go to their shards' sets.
func (b *elemBatch) elements(del bool, i int, l []elem) {
	if len(l) == 0 {
		return
	}
	if !kinds[i].interval {
		b.setElements(del, setNames[i], kinds[i], l)
		return
	}
	// Bucket by shard (a counting sort: each shard keeps l's order).
	var count [rangeShards + 1]int
	for _, e := range l {
		count[shardOf(e)+1]++
	}
	for s := 1; s <= rangeShards; s++ {
		count[s] += count[s-1]
	}
	b.scratch = append(b.scratch[:0], l...)
	pos := count
	for _, e := range l {
		s := shardOf(e)
		b.scratch[pos[s]] = e
		pos[s]++
	}
	f := 0
	if i == sAllow6R {
		f = 1
	}
	for s := range rangeShards {
		if part := b.scratch[count[s]:count[s+1]]; len(part) > 0 {
			b.setElements(del, shardNames[f][s], kinds[i], part)
		}
	}
}

// setElements queues messages for set name (of kind k) holding l.
func (b *elemBatch) setElements(del bool, name string, k setKind, l []elem) {
	typ := uint16(unix.NFT_MSG_NEWSETELEM)
	if del {
		typ = unix.NFT_MSG_DELSETELEM
	}
	ne := binary.NativeEndian
	key := 2*unix.NLA_HDRLEN + k.keyLen()
	per := k.attrBytes()
	for len(l) > 0 {
		chunk := min(len(l), maxElemListBytes/per)
		b.begin()
		b.putStringAttr(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
		b.putStringAttr(unix.NFTA_SET_ELEM_LIST_SET, name)
		list := b.putAttrHeader(unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		start := len(b.buf)
		b.buf = slices.Grow(b.buf, chunk*per)[:start+chunk*per]
		w := b.buf[start:]
		clear(w) // key padding
		for _, e := range l[:chunk] {
			ne.PutUint16(w[0:], uint16(per))
			ne.PutUint16(w[2:], unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM)
			putKeyAttr(w[4:], unix.NFTA_SET_ELEM_KEY, k, e, false)
			if k.interval {
				putKeyAttr(w[4+key:], nftables.NFTA_SET_ELEM_KEY_END, k, e, true)
			}
			w = w[per:]
		}
		b.setAttrLen(list)
		b.end(typ, netlink.Request|netlink.Create)
		l = l[chunk:]
	}
}

// attrBytes is the size of an element's attribute in an element list: the
// list entry, the key's nest and value, and for a range the key end's nest
// and value:
//
//	[len|LIST_ELEM [len|KEY [len|DATA_VALUE key]] [len|KEY_END [len|DATA_VALUE key end]]]
func (k setKind) attrBytes() int {
	key := 2*unix.NLA_HDRLEN + k.keyLen()
	if k.interval {
		return unix.NLA_HDRLEN + 2*key
	}
	return unix.NLA_HDRLEN + key
}

// putKeyAttr writes `typ { NFTA_DATA_VALUE: key }` for e (its high port
// when end) to w, zeroed and long enough.
func putKeyAttr(w []byte, typ uint16, k setKind, e elem, end bool) {
	ne := binary.NativeEndian
	n := k.keyLen()
	ne.PutUint16(w[0:], uint16(2*unix.NLA_HDRLEN+n))
	ne.PutUint16(w[2:], unix.NLA_F_NESTED|typ)
	ne.PutUint16(w[4:], uint16(unix.NLA_HDRLEN+n))
	ne.PutUint16(w[6:], unix.NFTA_DATA_VALUE)
	k.putKey(w[8:8+n], e, end)
}

// replaceRule queues the replacement of the rule with handle h in chain
// of table inet segmesh by exprs (what nftables.Conn.ReplaceRule sends).
func (b *elemBatch) replaceRule(chain string, h uint64, exprs []expr.Any) error {
	list := make([]netlink.Attribute, len(exprs))
	for i, e := range exprs {
		data, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			return fmt.Errorf("encode rule: %w", err)
		}
		list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
	}
	exprsData, err := netlink.MarshalAttributes(list)
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
		{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, h)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: exprsData},
	})
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	b.begin()
	b.buf = append(b.buf, attrs...)
	b.end(unix.NFT_MSG_NEWRULE, netlink.Request|netlink.Replace)
	return nil
}

// messages returns the batch's messages between a batch begin and end, as
// nft and the library send them.
func (b *elemBatch) messages() []netlink.Message {
	marker := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES} // res_id, big endian
	out := make([]netlink.Message, 0, len(b.ends)+2)
	out = append(out, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: marker})
	start := 0
	for i, end := range b.ends {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | b.typ[i]), Flags: b.flags[i]},
			Data:   b.buf[start:end:end],
		})
		start = end
	}
	return append(out, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: marker})
}
