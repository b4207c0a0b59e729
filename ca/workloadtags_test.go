package ca

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wlTemplate is template with allowed workload tags, given unsorted and
// with an upper-case key.
func wlTemplate(t testing.TB) Certificate {
	c := template(t)
	c.WorkloadTags = []TagPair{{"svc", "worker"}, {"SVC", "api"}, {"tier", "batch"}}
	return c
}

// TestCertificateFormat1Unchanged: a certificate written before workload
// tags (testdata, format 1) still parses, verifies and allows no workload
// tags; this build re-encodes it to the same bytes and issues the same
// bytes from the same template.
func TestCertificateFormat1Unchanged(t *testing.T) {
	file, err := os.ReadFile("testdata/cert-format1.pem")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseCertificate(file)
	if err != nil {
		t.Fatal(err)
	}
	cas := []ed25519.PublicKey{fuzzCA.Public().(ed25519.PublicKey)}
	if err := s.Verify(cas, t0); err != nil {
		t.Fatalf("format 1 certificate: %v", err)
	}
	if s.Format != CertFormat || s.WorkloadTags != nil || s.AllowsWorkloadTag("svc", "api") || s.Info().WorkloadTags != nil {
		t.Fatalf("format 1 certificate allows workload tags: %+v", s.Certificate)
	}
	again, err := s.PEM()
	if err != nil || !bytes.Equal(again, file) {
		t.Fatalf("re-encoded differently (%v):\n%s", err, again)
	}
	tmpl := s.Certificate
	tmpl.Format, tmpl.Issuer = 0, KeyID{}
	if re := issue(t, fuzzCA, tmpl); !bytes.Equal(re.Signature, s.Signature) {
		t.Fatal("the same template no longer issues the same certificate")
	}
}

func TestCertificateWorkloadTags(t *testing.T) {
	pub, priv := newCA(t)
	cas := []ed25519.PublicKey{pub}
	tmpl := wlTemplate(t)
	s := issue(t, priv, tmpl)
	want := []TagPair{{"svc", "api"}, {"svc", "worker"}, {"tier", "batch"}}
	if s.Format != CertFormatWorkloadTags || !reflect.DeepEqual(s.WorkloadTags, want) {
		t.Fatalf("format %d, workload tags %v, want format 2 and %v", s.Format, s.WorkloadTags, want)
	}
	if tmpl.WorkloadTags[1].Key != "SVC" {
		t.Fatal("Issue modified the template's workload tags")
	}
	for _, p := range want {
		if !s.AllowsWorkloadTag(p.Key, p.Value) {
			t.Errorf("%s not allowed", p)
		}
	}
	for _, p := range []TagPair{{"svc", "web"}, {"tier", "api"}, {"role", "db"}, {"SVC", "api"}} {
		if s.AllowsWorkloadTag(p.Key, p.Value) {
			t.Errorf("%s allowed", p)
		}
	}
	if got := s.Info().WorkloadTags; !slices.Equal(got, []string{"svc=api", "svc=worker", "tier=batch"}) {
		t.Errorf("info: %v", got)
	}
	raw, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if err := got.Verify(cas, t0); err != nil {
		t.Fatal(err)
	}

	// The pairs are signed: adding, changing or dropping one (down to
	// format 1) breaks the signature.
	for name, tamper := range map[string]func(c *Signed){
		"pair added":   func(c *Signed) { c.WorkloadTags = append(c.WorkloadTags, TagPair{"zone", "a"}) },
		"pair changed": func(c *Signed) { c.WorkloadTags[0].Value = "apj" },
		"pair gone":    func(c *Signed) { c.WorkloadTags = c.WorkloadTags[1:] },
		"downgraded":   func(c *Signed) { c.Format, c.WorkloadTags = CertFormat, nil },
	} {
		c := issue(t, priv, wlTemplate(t))
		tamper(c)
		if err := c.Verify(cas, t0); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
}

func TestIssueWorkloadTagsRejects(t *testing.T) {
	_, priv := newCA(t)
	many := make([]TagPair, MaxWorkloadTags+1)
	for i := range many {
		many[i] = TagPair{"svc", fmt.Sprintf("v%02d", i)}
	}
	for name, pairs := range map[string][]TagPair{
		"given twice":    {{"svc", "api"}, {"Svc", "api"}},
		"node tag key":   {{"role", "api"}},
		"bad value":      {{"svc", "a b"}},
		"empty key":      {{"", "api"}},
		"too many":       many,
		"value too long": {{"svc", strings.Repeat("v", 64)}},
	} {
		tmpl := template(t)
		tmpl.WorkloadTags = pairs
		if _, err := Issue(priv, tmpl); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Issue(priv, Certificate{Name: "n", PublicKey: nodeKey(t), WorkloadTags: many[:MaxWorkloadTags],
		NotBefore: t0, NotAfter: t0.AddDate(1, 0, 0)}); err != nil {
		t.Errorf("%d pairs: %v", MaxWorkloadTags, err)
	}
}

// TestParseCertificateRejectsWorkloadTags: format 2 has exactly one
// encoding of a set of pairs, and format 1 none.
func TestParseCertificateRejectsWorkloadTags(t *testing.T) {
	_, priv := newCA(t)
	s := issue(t, priv, wlTemplate(t))
	raw, _ := s.Marshal()
	body, sig := raw[:len(raw)-ed25519.SignatureSize], raw[len(raw)-ed25519.SignatureSize:]
	v1, _ := issue(t, priv, template(t)).Marshal()
	v1body, v1sig := v1[:len(v1)-ed25519.SignatureSize], v1[len(v1)-ed25519.SignatureSize:]
	section := []byte("\x03\x03svc\x03api\x03svc\x06worker\x04tier\x05batch")
	if !bytes.HasSuffix(body, section) {
		t.Fatalf("workload tag encoding not as expected: %x", body)
	}
	head := body[:len(body)-len(section)]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	bad := map[string][]byte{
		"format 2, no pairs":     cat([]byte{2}, v1body[1:], []byte{0}, v1sig),
		"format 1 with pairs":    cat([]byte{1}, body[1:], sig),
		"unsorted pairs":         cat(head, []byte("\x03\x03svc\x06worker\x03svc\x03api\x04tier\x05batch"), sig),
		"repeated pair":          cat(head, []byte("\x03\x03svc\x03api\x03svc\x03api\x04tier\x05batch"), sig),
		"upper-case key":         cat(head, []byte("\x03\x03SVC\x03api\x03svc\x06worker\x04tier\x05batch"), sig),
		"count beyond the limit": cat(head, []byte{MaxWorkloadTags + 1}, section[1:], sig),
		"count beyond the data":  cat(head, []byte{4}, section[1:], sig),
		"node tag key":           cat(head, []byte("\x01\x04role\x03api"), sig),
	}
	for name, in := range bad {
		if _, err := ParseCertificate(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestParseTagPairs(t *testing.T) {
	got, err := ParseTagPairs(" svc=worker, SVC=api,,tier=batch,svc=api ")
	if err != nil {
		t.Fatal(err)
	}
	if want := []TagPair{{"svc", "api"}, {"svc", "worker"}, {"tier", "batch"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if FormatTagPairs(got) != "svc=api,svc=worker,tier=batch" {
		t.Fatalf("format: %s", FormatTagPairs(got))
	}
	if got, err := ParseTagPairs(""); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, s := range []string{"svc", "svc=", "=api", "svc=a b", "s v=api"} {
		if _, err := ParseTagPairs(s); err == nil || !strings.Contains(err.Error(), "bad tag") {
			t.Errorf("%q: %v", s, err)
		}
	}
}
