package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// fakeKernel is a small in-memory nf_tables for tests without root, reached
// through nftables.WithTestDial. It records every batch it receives, applies
// batches atomically (all or nothing, like the kernel) and answers the dumps
// the Firewall uses (tables, chains, sets, objects, rules, set elements). It
// checks what the kernel would refuse and our code must never send: unknown
// tables/chains/sets, deleting a missing element, overlapping interval
// elements.
type fakeKernel struct {
	t  testing.TB
	mu sync.Mutex

	tables  []*fakeTable
	handle  uint64
	batches [][]netlink.Message // every batch received, without begin/end
	// fail, when set, makes the next batch fail with this errno on its
	// first message of type failType (0: any) — nothing of it is applied.
	fail     unix.Errno
	failType uint16
	// light (benchmarks) accepts element messages without keeping elements
	// and does not record batches.
	light bool
}

type fakeTable struct {
	family byte
	name   string
	chains [][]netlink.Attribute // NEWCHAIN attributes
	sets   []*fakeSet
	objs   [][]netlink.Attribute
	rules  []*fakeRule
}

type fakeSet struct {
	name     string
	attrs    []netlink.Attribute
	interval bool
	elems    []fakeElem // in insertion order
}

type fakeElem struct {
	key, end []byte
	raw      []byte // the element's attributes as sent
}

type fakeRule struct {
	chain  string
	handle uint64
	exprs  []byte
}

func newFakeKernel(t testing.TB) *fakeKernel { return &fakeKernel{t: t} }

// firewall returns a Firewall talking to k.
func (k *fakeKernel) firewall(cfg Config) *Firewall {
	k.t.Helper()
	f, err := NewFirewall(cfg, nil, nftables.WithTestDial(k.dial))
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { _ = f.Close() })
	return f
}

// conn returns a plain nftables connection to k, to set up state.
func (k *fakeKernel) conn() *nftables.Conn {
	c, err := nftables.New(nftables.WithTestDial(k.dial))
	if err != nil {
		k.t.Fatal(err)
	}
	return c
}

// lastBatches returns the batches received since n batches.
func (k *fakeKernel) batchCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.batches)
}

func (k *fakeKernel) batch(i int) []netlink.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.batches[i]
}

func (k *fakeKernel) table(family byte, name string) *fakeTable {
	for _, t := range k.tables {
		if t.family == family && t.name == name {
			return t
		}
	}
	return nil
}

// elements returns the keys (hex, key-end after a dash) of a set of table
// inet segmesh, sorted.
func (k *fakeKernel) elements(set string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.table(byte(nftables.TableFamilyINet), TableName)
	if t == nil {
		return nil
	}
	var out []string
	for _, s := range t.sets {
		if s.name == set {
			for _, e := range s.elems {
				d := fmt.Sprintf("%x", e.key)
				if e.end != nil && !bytes.Equal(e.end, e.key) {
					d += fmt.Sprintf("-%x", e.end)
				}
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (k *fakeKernel) dial(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) == 0 {
		return nil, nil // a read with nothing pending
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		return k.doBatch(req[1 : len(req)-1])
	}
	if len(req) != 1 {
		k.t.Errorf("fake nftables: %d messages outside a batch", len(req))
		return nil, errors.New("unexpected request")
	}
	return k.get(req[0])
}

func nftType(m netlink.Message) uint16 { return uint16(m.Header.Type) & 0xff }

func msgType(t uint16) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t)
}

func parseAttrs(b []byte) []netlink.Attribute {
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		panic(fmt.Sprintf("fake nftables: bad attributes: %v", err))
	}
	for i := range as {
		as[i].Type &= 0x3fff
	}
	return as
}

func attr(as []netlink.Attribute, typ uint16) []byte {
	for _, a := range as {
		if a.Type == typ {
			return a.Data
		}
	}
	return nil
}

func attrStr(as []netlink.Attribute, typ uint16) string {
	return string(bytes.TrimRight(attr(as, typ), "\x00"))
}

func (k *fakeKernel) clone() []*fakeTable {
	out := make([]*fakeTable, len(k.tables))
	for i, t := range k.tables {
		c := *t
		c.chains = slices.Clone(t.chains)
		c.objs = slices.Clone(t.objs)
		c.sets = make([]*fakeSet, len(t.sets))
		for j, s := range t.sets {
			cs := *s
			cs.elems = slices.Clone(s.elems)
			c.sets[j] = &cs
		}
		c.rules = make([]*fakeRule, len(t.rules))
		for j, r := range t.rules {
			cr := *r
			c.rules[j] = &cr
		}
		out[i] = &c
	}
	return out
}

func (k *fakeKernel) doBatch(msgs []netlink.Message) ([]netlink.Message, error) {
	if k.light {
		var replies []netlink.Message
		for _, m := range msgs {
			if t := nftType(m); t == unix.NFT_MSG_NEWSETELEM || t == unix.NFT_MSG_DELSETELEM {
				continue
			}
			reply, errno := k.apply(m)
			if errno != 0 {
				return nltest.Error(int(errno), []netlink.Message{m})
			}
			if reply != nil {
				replies = append(replies, *reply)
			}
		}
		return replies, nil
	}
	// Keep copies: the sender may reuse its buffers.
	kept := make([]netlink.Message, len(msgs))
	for i, m := range msgs {
		kept[i] = netlink.Message{Header: m.Header, Data: slices.Clone(m.Data)}
	}
	k.batches = append(k.batches, kept)
	saved, savedHandle := k.clone(), k.handle
	var replies []netlink.Message
	for _, m := range msgs {
		errno := k.fail
		if errno != 0 && (k.failType == 0 || k.failType == nftType(m)) {
			k.fail = 0
		} else {
			var reply *netlink.Message
			reply, errno = k.apply(m)
			if reply != nil {
				replies = append(replies, *reply)
			}
		}
		if errno != 0 {
			k.tables, k.handle = saved, savedHandle
			return nltest.Error(int(errno), []netlink.Message{m})
		}
	}
	return replies, nil
}

// apply applies one batch message to k.tables.
func (k *fakeKernel) apply(m netlink.Message) (*netlink.Message, unix.Errno) {
	fam := m.Data[0]
	as := parseAttrs(m.Data[4:])
	switch typ := nftType(m); typ {
	case unix.NFT_MSG_NEWTABLE:
		name := attrStr(as, unix.NFTA_TABLE_NAME)
		if k.table(fam, name) != nil {
			if m.Header.Flags&netlink.Excl != 0 {
				return nil, unix.EEXIST
			}
			return nil, 0
		}
		k.tables = append(k.tables, &fakeTable{family: fam, name: name})
	case unix.NFT_MSG_DELTABLE:
		t := k.table(fam, attrStr(as, unix.NFTA_TABLE_NAME))
		if t == nil {
			return nil, unix.ENOENT
		}
		k.tables = slices.DeleteFunc(k.tables, func(x *fakeTable) bool { return x == t })
	case unix.NFT_MSG_NEWCHAIN:
		t := k.table(fam, attrStr(as, unix.NFTA_CHAIN_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		t.chains = append(t.chains, as)
	case unix.NFT_MSG_NEWSET:
		t := k.table(fam, attrStr(as, unix.NFTA_SET_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		flags := binary.BigEndian.Uint32(attr(as, unix.NFTA_SET_FLAGS))
		t.sets = append(t.sets, &fakeSet{name: attrStr(as, unix.NFTA_SET_NAME), attrs: as, interval: flags&unix.NFT_SET_INTERVAL != 0})
	case unix.NFT_MSG_NEWOBJ:
		t := k.table(fam, attrStr(as, unix.NFTA_OBJ_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		t.objs = append(t.objs, as)
	case unix.NFT_MSG_NEWRULE:
		return k.newRule(m, fam, as)
	case unix.NFT_MSG_DELRULE: // without a handle: flush the chain
		t := k.table(fam, attrStr(as, unix.NFTA_RULE_TABLE))
		if t == nil || attr(as, unix.NFTA_RULE_HANDLE) != nil {
			return nil, unix.ENOENT
		}
		chain := attrStr(as, unix.NFTA_RULE_CHAIN)
		t.rules = slices.DeleteFunc(t.rules, func(r *fakeRule) bool { return r.chain == chain })
	case unix.NFT_MSG_DELCHAIN:
		t := k.table(fam, attrStr(as, unix.NFTA_CHAIN_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		name := attrStr(as, unix.NFTA_CHAIN_NAME)
		i := slices.IndexFunc(t.chains, func(c []netlink.Attribute) bool { return attrStr(c, unix.NFTA_CHAIN_NAME) == name })
		if i < 0 {
			return nil, unix.ENOENT
		}
		if slices.ContainsFunc(t.rules, func(r *fakeRule) bool { return r.chain == name }) {
			return nil, unix.EBUSY
		}
		for _, set := range t.sets {
			for _, e := range set.elems {
				if bytes.Contains(e.raw, []byte(name+"\x00")) {
					return nil, unix.EBUSY // a map element still jumps to it
				}
			}
		}
		t.chains = slices.Delete(t.chains, i, i+1)
	case unix.NFT_MSG_DELSET:
		t := k.table(fam, attrStr(as, unix.NFTA_SET_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		name := attrStr(as, unix.NFTA_SET_NAME)
		i := slices.IndexFunc(t.sets, func(x *fakeSet) bool { return x.name == name })
		if i < 0 {
			return nil, unix.ENOENT
		}
		t.sets = slices.Delete(t.sets, i, i+1)
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		t := k.table(fam, attrStr(as, unix.NFTA_SET_ELEM_LIST_TABLE))
		if t == nil {
			return nil, unix.ENOENT
		}
		name := attrStr(as, unix.NFTA_SET_ELEM_LIST_SET)
		i := slices.IndexFunc(t.sets, func(s *fakeSet) bool { return s.name == name })
		if i < 0 {
			return nil, unix.ENOENT
		}
		return nil, t.sets[i].update(typ == unix.NFT_MSG_NEWSETELEM, attr(as, unix.NFTA_SET_ELEM_LIST_ELEMENTS))
	default:
		k.t.Errorf("fake nftables: unexpected batch message type %d", typ)
		return nil, unix.EOPNOTSUPP
	}
	return nil, 0
}

func (k *fakeKernel) newRule(m netlink.Message, fam byte, as []netlink.Attribute) (*netlink.Message, unix.Errno) {
	t := k.table(fam, attrStr(as, unix.NFTA_RULE_TABLE))
	if t == nil {
		return nil, unix.ENOENT
	}
	chain := attrStr(as, unix.NFTA_RULE_CHAIN)
	if !slices.ContainsFunc(t.chains, func(c []netlink.Attribute) bool { return attrStr(c, unix.NFTA_CHAIN_NAME) == chain }) {
		return nil, unix.ENOENT
	}
	exprs, errno := t.storedExprs(attr(as, unix.NFTA_RULE_EXPRESSIONS))
	if errno != 0 {
		return nil, errno
	}
	if h := attr(as, unix.NFTA_RULE_HANDLE); h != nil {
		handle := binary.BigEndian.Uint64(h)
		i := slices.IndexFunc(t.rules, func(r *fakeRule) bool { return r.handle == handle && r.chain == chain })
		if i < 0 || m.Header.Flags&netlink.Replace == 0 {
			return nil, unix.ENOENT
		}
		t.rules[i].exprs = exprs
		return nil, 0
	}
	k.handle++
	t.rules = append(t.rules, &fakeRule{chain: chain, handle: k.handle, exprs: exprs})
	if m.Header.Flags&netlink.Echo == 0 {
		return nil, 0
	}
	reply := netlink.Message{
		Header: netlink.Header{Type: msgType(unix.NFT_MSG_NEWRULE), Sequence: m.Header.Sequence, PID: m.Header.PID},
		Data: append([]byte{fam, 0, 0, 0}, nltest.MustMarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: []byte(t.name + "\x00")},
			{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
			{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, k.handle)},
		})...),
	}
	return &reply, 0
}

// nftaSetExpr is NFTA_SET_EXPR: a set's own expression (e.g. counter).
const nftaSetExpr = 0x11

// storedExprs checks a rule's dynset expressions and returns the rule's
// expressions as the kernel keeps and dumps them: a dynset on a set that
// carries its own expressions loses its copy of them (NFTA_DYNSET_EXPR), like
// nft_dynset_dump does; a dynset with expressions on a set without any, or
// on a set that is not dynamic, is refused as the kernel would (EOPNOTSUPP,
// a deliberate simplification: the kernel accepts the former).
func (t *fakeTable) storedExprs(exprs []byte) ([]byte, unix.Errno) {
	list := parseAttrs(exprs)
	changed := false
	for i, a := range list {
		ea := parseAttrs(a.Data)
		if attrStr(ea, unix.NFTA_EXPR_NAME) != "dynset" {
			continue
		}
		da := parseAttrs(attr(ea, unix.NFTA_EXPR_DATA))
		name := attrStr(da, unix.NFTA_DYNSET_SET_NAME)
		j := slices.IndexFunc(t.sets, func(s *fakeSet) bool { return s.name == name })
		if j < 0 {
			return nil, unix.ENOENT
		}
		set := t.sets[j]
		if binary.BigEndian.Uint32(attr(set.attrs, unix.NFTA_SET_FLAGS))&unix.NFT_SET_EVAL == 0 ||
			(attr(da, unix.NFTA_DYNSET_EXPR) != nil) != (attr(set.attrs, nftaSetExpr) != nil) {
			return nil, unix.EOPNOTSUPP
		}
		da = slices.DeleteFunc(da, func(x netlink.Attribute) bool { return x.Type == unix.NFTA_DYNSET_EXPR })
		for k := range ea {
			if ea[k].Type == unix.NFTA_EXPR_DATA {
				ea[k] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: nltest.MustMarshalAttributes(da)}
			}
		}
		list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | a.Type, Data: nltest.MustMarshalAttributes(ea)}
		changed = true
	}
	if !changed {
		return exprs, 0
	}
	return nltest.MustMarshalAttributes(list), 0
}

func elemKey(raw []byte, typ uint16) []byte {
	return attr(parseAttrs(attr(parseAttrs(raw), typ)), unix.NFTA_DATA_VALUE)
}

// update adds or deletes the elements of an element list.
func (s *fakeSet) update(add bool, list []byte) unix.Errno {
	if list == nil {
		if add {
			return unix.EINVAL
		}
		s.elems = nil // flush
		return 0
	}
	for _, a := range parseAttrs(list) {
		e := fakeElem{key: elemKey(a.Data, unix.NFTA_SET_ELEM_KEY), end: elemKey(a.Data, nftables.NFTA_SET_ELEM_KEY_END), raw: a.Data}
		if s.interval && e.end == nil {
			e.end = e.key
		}
		i := slices.IndexFunc(s.elems, func(x fakeElem) bool { return bytes.Equal(x.key, e.key) && bytes.Equal(x.end, e.end) })
		switch {
		case !add && i < 0:
			return unix.ENOENT
		case !add:
			s.elems = slices.Delete(s.elems, i, i+1)
		case i >= 0: // identical element: no error without NLM_F_EXCL
		default:
			if s.interval && slices.ContainsFunc(s.elems, func(x fakeElem) bool {
				return bytes.Compare(e.key, x.end) <= 0 && bytes.Compare(x.key, e.end) <= 0
			}) {
				return unix.EEXIST
			}
			s.elems = append(s.elems, e)
		}
	}
	return 0
}

// get answers a GET request.
func (k *fakeKernel) get(req netlink.Message) ([]netlink.Message, error) {
	fam := req.Data[0]
	as := parseAttrs(req.Data[4:])
	dump := req.Header.Flags&netlink.Dump != 0
	var out []netlink.Message
	add := func(typ uint16, fam byte, attrs []netlink.Attribute) {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: msgType(typ), Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   append([]byte{fam, 0, 0, 0}, nltest.MustMarshalAttributes(attrs)...),
		})
	}
	str := func(typ uint16, s string) netlink.Attribute {
		return netlink.Attribute{Type: typ, Data: []byte(s + "\x00")}
	}
	inFamily := func(t *fakeTable) bool { return fam == unix.NFPROTO_UNSPEC || t.family == fam }
	tableNamed := func(typ uint16) *fakeTable { return k.table(fam, attrStr(as, typ)) }

	switch typ := nftType(req); typ {
	case unix.NFT_MSG_GETTABLE:
		name := attrStr(as, unix.NFTA_TABLE_NAME)
		for _, t := range k.tables {
			if inFamily(t) && (name == "" || t.name == name) {
				add(unix.NFT_MSG_NEWTABLE, t.family, []netlink.Attribute{str(unix.NFTA_TABLE_NAME, t.name),
					{Type: unix.NFTA_TABLE_FLAGS, Data: make([]byte, 4)}})
			}
		}
	case unix.NFT_MSG_GETCHAIN:
		for _, t := range k.tables {
			if inFamily(t) {
				for _, c := range t.chains {
					add(unix.NFT_MSG_NEWCHAIN, t.family, c)
				}
			}
		}
	case unix.NFT_MSG_GETSET:
		if t := tableNamed(unix.NFTA_SET_TABLE); t != nil {
			for _, s := range t.sets {
				add(unix.NFT_MSG_NEWSET, t.family, s.attrs)
			}
		}
	case unix.NFT_MSG_GETOBJ:
		if t := tableNamed(unix.NFTA_OBJ_TABLE); t != nil {
			name := attrStr(as, unix.NFTA_OBJ_NAME)
			for _, o := range t.objs {
				if name == "" || attrStr(o, unix.NFTA_OBJ_NAME) == name {
					add(unix.NFT_MSG_NEWOBJ, t.family, o)
				}
			}
		}
	case unix.NFT_MSG_GETRULE:
		if t := tableNamed(unix.NFTA_RULE_TABLE); t != nil {
			chain := attrStr(as, unix.NFTA_RULE_CHAIN)
			for _, r := range t.rules {
				if r.chain == chain {
					add(unix.NFT_MSG_NEWRULE, t.family, []netlink.Attribute{
						str(unix.NFTA_RULE_TABLE, t.name), str(unix.NFTA_RULE_CHAIN, r.chain),
						{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, r.handle)},
						{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: r.exprs},
					})
				}
			}
		}
	case unix.NFT_MSG_GETSETELEM:
		if t := tableNamed(unix.NFTA_SET_ELEM_LIST_TABLE); t != nil {
			name := attrStr(as, unix.NFTA_SET_ELEM_LIST_SET)
			for _, s := range t.sets {
				if s.name != name {
					continue
				}
				for chunk := range slices.Chunk(s.elems, 500) {
					var list []netlink.Attribute
					for _, e := range chunk {
						list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: e.raw})
					}
					add(unix.NFT_MSG_NEWSETELEM, t.family, []netlink.Attribute{
						str(unix.NFTA_SET_ELEM_LIST_TABLE, t.name), str(unix.NFTA_SET_ELEM_LIST_SET, s.name),
						{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: nltest.MustMarshalAttributes(list)},
					})
				}
			}
		}
	default:
		k.t.Errorf("fake nftables: unexpected request type %d", typ)
		return nltest.Error(int(unix.EOPNOTSUPP), []netlink.Message{req})
	}
	if !dump {
		if len(out) == 0 {
			return nltest.Error(int(unix.ENOENT), []netlink.Message{req})
		}
		return out, nil
	}
	for i := range out {
		out[i].Header.Flags |= netlink.Multi
	}
	return append(out, netlink.Message{Header: netlink.Header{
		Type: netlink.Done, Flags: netlink.Multi, Sequence: req.Header.Sequence, PID: req.Header.PID}}), nil
}
