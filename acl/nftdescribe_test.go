package acl

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// describeMsg renders one batch message in a compact nft-like text, so that
// tests can compare batches by content and golden files stay reviewable.
func describeMsg(m netlink.Message) []string {
	fam := m.Data[0]
	as := parseAttrs(m.Data[4:])
	switch typ := nftType(m); typ {
	case unix.NFT_MSG_NEWTABLE:
		return []string{fmt.Sprintf("add table %s %s", famName(fam), attrStr(as, unix.NFTA_TABLE_NAME))}
	case unix.NFT_MSG_DELTABLE:
		return []string{fmt.Sprintf("delete table %s %s", famName(fam), attrStr(as, unix.NFTA_TABLE_NAME))}
	case unix.NFT_MSG_NEWCHAIN:
		s := fmt.Sprintf("add chain %s %s", attrStr(as, unix.NFTA_CHAIN_TABLE), attrStr(as, unix.NFTA_CHAIN_NAME))
		if h := attr(as, unix.NFTA_CHAIN_HOOK); h != nil {
			ha := parseAttrs(h)
			s += fmt.Sprintf(" { type %s hook %d priority %d; policy %d; }", attrStr(as, unix.NFTA_CHAIN_TYPE),
				binary.BigEndian.Uint32(attr(ha, unix.NFTA_HOOK_HOOKNUM)), int32(binary.BigEndian.Uint32(attr(ha, unix.NFTA_HOOK_PRIORITY))),
				binary.BigEndian.Uint32(attr(as, unix.NFTA_CHAIN_POLICY)))
		}
		return []string{s}
	case unix.NFT_MSG_NEWSET:
		extra := ""
		if t := attr(as, unix.NFTA_SET_TIMEOUT); t != nil {
			extra += fmt.Sprintf(" timeout %dms", binary.BigEndian.Uint64(t))
		}
		if d := attr(as, unix.NFTA_SET_DESC); d != nil {
			if size := attr(parseAttrs(d), unix.NFTA_SET_DESC_SIZE); size != nil {
				extra += fmt.Sprintf(" size %d", binary.BigEndian.Uint32(size))
			}
		}
		if dt := attr(as, unix.NFTA_SET_DATA_TYPE); dt != nil {
			extra += fmt.Sprintf(" datatype %#x", binary.BigEndian.Uint32(dt))
		}
		if e := attr(as, nftaSetExpr); e != nil {
			extra += " expr " + attrStr(parseAttrs(e), unix.NFTA_EXPR_NAME)
		}
		return []string{fmt.Sprintf("add set %s %s { keytype %#x keylen %d flags %#x%s }",
			attrStr(as, unix.NFTA_SET_TABLE), attrStr(as, unix.NFTA_SET_NAME),
			binary.BigEndian.Uint32(attr(as, unix.NFTA_SET_KEY_TYPE)), binary.BigEndian.Uint32(attr(as, unix.NFTA_SET_KEY_LEN)),
			binary.BigEndian.Uint32(attr(as, unix.NFTA_SET_FLAGS)), extra)}
	case unix.NFT_MSG_NEWOBJ:
		return []string{fmt.Sprintf("add object %s %s type %d", attrStr(as, unix.NFTA_OBJ_TABLE), attrStr(as, unix.NFTA_OBJ_NAME),
			binary.BigEndian.Uint32(attr(as, unix.NFTA_OBJ_TYPE)))}
	case unix.NFT_MSG_NEWRULE:
		op := "add rule"
		if h := attr(as, unix.NFTA_RULE_HANDLE); h != nil {
			op = fmt.Sprintf("replace rule handle %d", binary.BigEndian.Uint64(h))
		}
		return []string{fmt.Sprintf("%s %s %s: %s", op, attrStr(as, unix.NFTA_RULE_TABLE), attrStr(as, unix.NFTA_RULE_CHAIN),
			describeExprs(fam, attr(as, unix.NFTA_RULE_EXPRESSIONS)))}
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		op := "add element"
		if typ == unix.NFT_MSG_DELSETELEM {
			op = "delete element"
		}
		set := attrStr(as, unix.NFTA_SET_ELEM_LIST_SET)
		list := attr(as, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		if list == nil {
			return []string{fmt.Sprintf("flush set %s", set)}
		}
		var out []string
		for _, a := range parseAttrs(list) {
			e := nftables.SetElement{Key: elemKey(a.Data, unix.NFTA_SET_ELEM_KEY), KeyEnd: elemKey(a.Data, nftables.NFTA_SET_ELEM_KEY_END)}
			out = append(out, fmt.Sprintf("%s %s { %s%s }", op, set, describeElement(set, e), describeElemData(a.Data)))
		}
		return out
	default:
		return []string{fmt.Sprintf("message type %d", typ)}
	}
}

// describeElemData renders a map element's verdict (" : jump chain"), or
// nothing for a set element.
func describeElemData(raw []byte) string {
	data := attr(parseAttrs(raw), unix.NFTA_SET_ELEM_DATA)
	if data == nil {
		return ""
	}
	v := parseAttrs(attr(parseAttrs(data), unix.NFTA_DATA_VERDICT))
	code := int32(binary.BigEndian.Uint32(attr(v, unix.NFTA_VERDICT_CODE)))
	if code == int32(expr.VerdictJump) {
		return " : jump " + attrStr(v, unix.NFTA_VERDICT_CHAIN)
	}
	return fmt.Sprintf(" : verdict %d", code)
}

func describeBatch(msgs []netlink.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, describeMsg(m)...)
	}
	return out
}

func famName(f byte) string {
	if f == unix.NFPROTO_INET {
		return "inet"
	}
	return fmt.Sprintf("family%d", f)
}

// describeExprs decodes a rule's expression list.
func describeExprs(fam byte, b []byte) string {
	var parts []string
	for _, a := range parseAttrs(b) {
		ea := parseAttrs(a.Data)
		name := attrStr(ea, unix.NFTA_EXPR_NAME)
		var e expr.Any
		switch name {
		case "meta":
			e = &expr.Meta{}
		case "cmp":
			e = &expr.Cmp{}
		case "ct":
			e = &expr.Ct{}
		case "bitwise":
			e = &expr.Bitwise{}
		case "payload":
			e = &expr.Payload{}
		case "lookup":
			e = &expr.Lookup{}
		case "immediate":
			e = &expr.Verdict{}
		case "counter":
			e = &expr.Counter{}
		case "limit":
			e = &expr.Limit{}
		case "log":
			e = &expr.Log{}
		case "objref":
			e = &expr.Objref{}
		case "dynset":
			e = &expr.Dynset{}
		default:
			parts = append(parts, "?"+name)
			continue
		}
		if err := expr.Unmarshal(fam, attr(ea, unix.NFTA_EXPR_DATA), e); err != nil {
			parts = append(parts, fmt.Sprintf("%s(%v)", name, err))
			continue
		}
		parts = append(parts, describeExpr(e))
	}
	return strings.Join(parts, "; ")
}

func describeExpr(e expr.Any) string {
	switch v := e.(type) {
	case *expr.Meta:
		return fmt.Sprintf("meta load %s => reg %d", map[expr.MetaKey]string{
			expr.MetaKeyIIFNAME: "iifname", expr.MetaKeyNFPROTO: "nfproto", expr.MetaKeyL4PROTO: "l4proto"}[v.Key], v.Register)
	case *expr.Cmp:
		op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq"}[v.Op]
		return fmt.Sprintf("cmp %s reg %d %x", op, v.Register, v.Data)
	case *expr.Ct:
		return fmt.Sprintf("ct load %s => reg %d", map[expr.CtKey]string{
			expr.CtKeyDIRECTION: "direction", expr.CtKeySTATE: "state", expr.CtKeySTATUS: "status"}[v.Key], v.Register)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = (reg %d & %x) ^ %x", v.DestRegister, v.SourceRegister, v.Mask, v.Xor)
	case *expr.Payload:
		base := map[expr.PayloadBase]string{expr.PayloadBaseNetworkHeader: "network", expr.PayloadBaseTransportHeader: "transport"}[v.Base]
		return fmt.Sprintf("payload load %db @ %s header + %d => reg %d", v.Len, base, v.Offset, v.DestRegister)
	case *expr.Lookup:
		inv := ""
		if v.Invert {
			inv = " invert"
		}
		if v.IsDestRegSet {
			inv += fmt.Sprintf(" dreg %d", v.DestRegister)
		}
		return fmt.Sprintf("lookup reg %d set %s%s", v.SourceRegister, v.SetName, inv)
	case *expr.Verdict:
		switch v.Kind {
		case expr.VerdictAccept:
			return "accept"
		case expr.VerdictDrop:
			return "drop"
		case expr.VerdictJump:
			return "jump " + v.Chain
		}
		return fmt.Sprintf("verdict %d %s", v.Kind, v.Chain)
	case *expr.Counter:
		return "counter"
	case *expr.Limit:
		return fmt.Sprintf("limit rate %d/%ds burst %d type %d", v.Rate, v.Unit, v.Burst, v.Type)
	case *expr.Log:
		return fmt.Sprintf("log group %d snaplen %d", v.Group, v.Snaplen)
	case *expr.Objref:
		return fmt.Sprintf("objref type %d name %s", v.Type, v.Name)
	case *expr.Dynset:
		var exprs []string
		for _, x := range v.Exprs {
			exprs = append(exprs, describeExpr(x))
		}
		return fmt.Sprintf("dynset op %d reg %d set %s timeout %v exprs [%s]", v.Operation, v.SrcRegKey, v.SetName, v.Timeout, strings.Join(exprs, ", "))
	}
	return fmt.Sprintf("%T%+v", e, e)
}
