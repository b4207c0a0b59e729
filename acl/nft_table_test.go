package acl

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// tableV3 is `nft list table inet segmesh` as the version before the range
// shards wrote it (one interval set per family for the ranges).
const tableV3 = `table inet segmesh {
	counter final {
		packets 0 bytes 0
	}

	set local4 {
		type ipv4_addr
	}

	set local6 {
		type ipv6_addr
	}

	set allow4 {
		type ipv4_addr . inet_proto . inet_service
	}

	set allow6 {
		type ipv6_addr . inet_proto . inet_service
	}

	set allow4r {
		type ipv4_addr . inet_proto . inet_service
		flags interval
	}

	set allow6r {
		type ipv6_addr . inet_proto . inet_service
		flags interval
	}

	set icmp4 {
		type ipv4_addr
	}

	set icmp6 {
		type ipv6_addr
	}

	set any4 {
		type ipv4_addr
	}

	set any6 {
		type ipv6_addr
	}

	set seen4 {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		counter
		timeout 10m
	}

	set seen6 {
		type ipv6_addr
		size 65535
		flags dynamic,timeout
		counter
		timeout 10m
	}

	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		iifname "smesh0" ct direction reply accept
		iifname "smesh0" ct state related accept
		iifname "smesh0" jump mesh_in
		iifname != "lo" ct direction reply ct status dnat accept
		iifname != "lo" ip saddr 100.80.0.0/16 drop
		iifname != "lo" ip daddr 100.80.0.0/16 drop
		iifname != "lo" ip6 saddr fd5e:6d00::/48 drop
		iifname != "lo" ip6 daddr fd5e:6d00::/48 drop
	}

	chain mesh_in {
		ip daddr != @local4 counter packets 0 bytes 0 drop
		ip saddr . meta l4proto . th dport @allow4 accept
		ip saddr . meta l4proto . th dport @allow4r accept
		ip saddr @icmp4 icmp type echo-request accept
		ip saddr @any4 accept
		ip6 daddr != @local6 counter packets 0 bytes 0 drop
		ip6 saddr . meta l4proto . th dport @allow6 accept
		ip6 saddr . meta l4proto . th dport @allow6r accept
		ip6 saddr @icmp6 icmpv6 type echo-request accept
		ip6 saddr @any6 accept
		limit rate 100/second burst 100 packets log group 8476 snaplen 128
		update @seen4 { ip saddr }
		update @seen6 { ip6 saddr }
		counter name "final" drop
	}
}
`

// wantTable is `nft list table inet segmesh` right after Install for
// testConfig, with the elements of its maps on one line (see normTable):
// the contract layout, as nft itself decodes our bytecode.
var wantTable = func() string {
	shards := func(format string) string {
		var b strings.Builder
		for f, fam := range []string{"4", "6"} {
			for i := range rangeShards {
				b.WriteString(strings.NewReplacer("FAM", fam, "NN", fmt.Sprintf("%03d", i), "ADDR", []string{"ipv4", "ipv6"}[f]).Replace(format))
			}
		}
		return b.String()
	}
	elements := func(f int) string {
		var parts []string
		for i := range rangeShards {
			key := fmt.Sprintf("0.0.0.%d", i)
			if f == 1 {
				key = netip.AddrFrom16([16]byte{15: byte(i)}).String()
			}
			parts = append(parts, fmt.Sprintf("%s : jump %s", key, shardChains[f][i]))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	t := tableV3
	for _, r := range []struct{ old, new string }{
		{"\tset allow4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t}\n", "\tset allow4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tsize 131072\n\t}\n"},
		{"\tset allow6 {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t}\n", "\tset allow6 {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tsize 131072\n\t}\n"},
		{"\tset allow4r {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n\n" +
			"\tset allow6r {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n\n",
			shards("\tset allowFAMr_NN {\n\t\ttype ADDR_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n\n")},
		{"\tset icmp4 {\n\t\ttype ipv4_addr\n\t}\n", "\tset icmp4 {\n\t\ttype ipv4_addr\n\t\tsize 32768\n\t}\n"},
		{"\tset icmp6 {\n\t\ttype ipv6_addr\n\t}\n", "\tset icmp6 {\n\t\ttype ipv6_addr\n\t\tsize 32768\n\t}\n"},
		{"\tset any4 {\n\t\ttype ipv4_addr\n\t}\n", "\tset any4 {\n\t\ttype ipv4_addr\n\t\tsize 32768\n\t}\n"},
		{"\tset any6 {\n\t\ttype ipv6_addr\n\t}\n", "\tset any6 {\n\t\ttype ipv6_addr\n\t\tsize 32768\n\t}\n"},
		{"\tchain prerouting {\n",
			"\tmap ranges4 {\n\t\ttype ipv4_addr : verdict\n\t\tflags constant\n\t\telements = " + elements(0) + "\n\t}\n\n" +
				"\tmap ranges6 {\n\t\ttype ipv6_addr : verdict\n\t\tflags constant\n\t\telements = " + elements(1) + "\n\t}\n\n" +
				"\tchain prerouting {\n"},
		{"\t\tip saddr . meta l4proto . th dport @allow4r accept\n", "\t\tip saddr & 0.0.0.127 vmap @ranges4\n"},
		{"\t\tip6 saddr . meta l4proto . th dport @allow6r accept\n", "\t\tip6 saddr & ::7f vmap @ranges6\n"},
		{"\t\tcounter name \"final\" drop\n\t}\n", "\t\tcounter name \"final\" drop\n\t}\n" +
			shards("\n\tchain rangesFAM_NN {\n\t\tip"+"V saddr . meta l4proto . th dport @allowFAMr_NN accept\n\t}\n")},
	} {
		if !strings.Contains(t, r.old) {
			panic(fmt.Sprintf("tableV3 lacks %q", r.old))
		}
		t = strings.Replace(t, r.old, r.new, 1)
	}
	return strings.NewReplacer("ipV saddr . meta l4proto . th dport @allow4", "ip saddr . meta l4proto . th dport @allow4",
		"ipV saddr . meta l4proto . th dport @allow6", "ip6 saddr . meta l4proto . th dport @allow6").Replace(t)
}()

var elementsBlock = regexp.MustCompile(`elements = \{[^}]*\}`)

// normTable puts the elements of every set and map of an `nft list`
// output on one line (nft wraps them by width).
func normTable(s string) string {
	return elementsBlock.ReplaceAllStringFunc(s, func(b string) string { return strings.Join(strings.Fields(b), " ") })
}

// previousTable is the table as an earlier version wrote it (see
// previousLayout for the versions).
func previousTable(t *testing.T, version int) string {
	t.Helper()
	if version == 3 {
		return tableV3
	}
	cuts := []string{
		"\tset allow4r {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n\n",
		"\tset allow6r {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n\n",
		"\t\tip saddr . meta l4proto . th dport @allow4r accept\n",
		"\t\tip6 saddr . meta l4proto . th dport @allow6r accept\n",
	}
	if version == 1 {
		cuts = append(cuts,
			"\tset seen4 {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\tcounter\n\t\ttimeout 10m\n\t}\n\n",
			"\tset seen6 {\n\t\ttype ipv6_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\tcounter\n\t\ttimeout 10m\n\t}\n\n",
			"\t\tupdate @seen4 { ip saddr }\n", "\t\tupdate @seen6 { ip6 saddr }\n")
	}
	old := tableV3
	for _, cut := range cuts {
		if !strings.Contains(old, cut) {
			t.Fatalf("tableV3 lacks %q", cut)
		}
		old = strings.Replace(old, cut, "", 1)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		set := "\t\ttype " + fam + "_addr . inet_proto . inet_service\n\t}\n"
		if !strings.Contains(old, set) {
			t.Fatalf("tableV3 lacks %q", set)
		}
		old = strings.Replace(old, set, "\t\ttype "+fam+"_addr . inet_proto . inet_service\n\t\tflags interval\n\t}\n", 1)
	}
	return old
}
