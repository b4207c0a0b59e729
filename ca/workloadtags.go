package ca

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// TagPair is one tag: a key and a value.
type TagPair struct {
	Key, Value string
}

// String is key=value.
func (p TagPair) String() string { return p.Key + "=" + p.Value }

func compareTagPairs(a, b TagPair) int {
	return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Value, b.Value))
}

// ParseTagPairs parses k=v,k=v (the --workload-tags flag): white space
// around fields is ignored, keys are lower-cased, one key may come with
// several values. The result is sorted and has no duplicates (a pair given
// twice counts once); keys and values are 1-63 of [A-Za-z0-9_./-].
func ParseTagPairs(s string) ([]TagPair, error) {
	var out []TagPair
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		p := TagPair{Key: strings.ToLower(strings.TrimSpace(k)), Value: strings.TrimSpace(v)}
		if !ok || !tagRE.MatchString(p.Key) || !tagRE.MatchString(p.Value) {
			return nil, fmt.Errorf("bad tag %q: want key=value of [A-Za-z0-9_./-]", f)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, compareTagPairs)
	return slices.Compact(out), nil
}

// FormatTagPairs renders pairs as k=v,k=v in their order ("" for none).
func FormatTagPairs(pairs []TagPair) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// AllowsWorkloadTag reports whether the certificate allows the node's
// workloads to carry tag key=value.
func (c *Certificate) AllowsWorkloadTag(key, value string) bool {
	_, found := slices.BinarySearchFunc(c.WorkloadTags, TagPair{Key: key, Value: value}, compareTagPairs)
	return found
}

// normalizeTagPairs returns a sorted copy of pairs with lower-case keys
// (nil for none); a pair given twice is an error wrapping ErrMalformed.
func normalizeTagPairs(pairs []TagPair) ([]TagPair, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make([]TagPair, len(pairs))
	for i, p := range pairs {
		out[i] = TagPair{Key: strings.ToLower(p.Key), Value: p.Value}
	}
	slices.SortFunc(out, compareTagPairs)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, fmt.Errorf("%w: workload tag %s given twice", ErrMalformed, out[i])
		}
	}
	return out, nil
}

// validateWorkloadTags checks WorkloadTags against the format (format 1:
// none; format 2: 1-MaxWorkloadTags), the tag rule, the order (strictly
// ascending, so the encoding is canonical) and the node's tags (a workload
// may not redefine a node tag key, so such a pair could never apply).
func (c *Certificate) validateWorkloadTags() error {
	n := len(c.WorkloadTags)
	switch {
	case c.Format == CertFormat && n > 0:
		return fmt.Errorf("format %d carries no workload tags, %d given", CertFormat, n)
	case c.Format == CertFormatWorkloadTags && n == 0:
		return fmt.Errorf("format %d without workload tags (write format %d)", CertFormatWorkloadTags, CertFormat)
	case n > MaxWorkloadTags:
		return fmt.Errorf("%d workload tags (at most %d)", n, MaxWorkloadTags)
	}
	for i, p := range c.WorkloadTags {
		switch {
		case !tagRE.MatchString(p.Key) || p.Key != strings.ToLower(p.Key) || !tagRE.MatchString(p.Value):
			return fmt.Errorf("workload tag %q=%q: keys lower-case, keys and values 1-63 of [A-Za-z0-9_./-]", p.Key, p.Value)
		case i > 0 && compareTagPairs(c.WorkloadTags[i-1], p) >= 0:
			return fmt.Errorf("workload tags not sorted or repeated at %s", p)
		}
		if _, set := c.Tags[p.Key]; set {
			return fmt.Errorf("workload tag %s: %s is a node tag (a workload may not redefine it)", p, p.Key)
		}
	}
	return nil
}

// encodeTagPairs appends a format 2 certificate's workload tag pairs.
func encodeTagPairs(e *encoder, pairs []TagPair) {
	e.uvarint(uint64(len(pairs)))
	for _, p := range pairs {
		e.str(p.Key)
		e.str(p.Value)
	}
}

// decodeTagPairs reads what encodeTagPairs wrote; order and duplicates are
// left to validate (via checkCanonical).
func decodeTagPairs(d *decoder) []TagPair {
	n := d.uvarint("workload tag count")
	if n > MaxWorkloadTags {
		d.fail("%d workload tags (at most %d)", n, MaxWorkloadTags)
		return nil
	}
	out := make([]TagPair, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, TagPair{Key: d.str(63, "workload tag key"), Value: d.str(63, "workload tag value")})
	}
	return out
}
