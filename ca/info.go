package ca

import "time"

// CertInfo is a certificate's printable form (`cert show --json`, and what
// a daemon may put in its status). Times are RFC 3339, UTC.
type CertInfo struct {
	Format    int               `json:"format"`
	Serial    string            `json:"serial"`
	Name      string            `json:"name"`
	PublicKey string            `json:"public_key"`
	Tags      map[string]string `json:"tags"`
	Address4  string            `json:"address,omitempty"`
	NotBefore string            `json:"not_before"`
	NotAfter  string            `json:"not_after"`
	Issuer    string            `json:"issuer"`
	// WorkloadTags are the allowed workload tag pairs as k=v (omitted when
	// the certificate allows none).
	WorkloadTags []string `json:"workload_tags,omitempty"`
}

// Info returns the printable form of c.
func (c *Certificate) Info() CertInfo {
	i := CertInfo{
		Format:    c.Format,
		Serial:    c.Serial.String(),
		Name:      c.Name,
		PublicKey: c.PublicKey.String(),
		Tags:      c.Tags,
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
		Issuer:    c.Issuer.String(),
	}
	if i.Tags == nil {
		i.Tags = map[string]string{}
	}
	if c.Address4.IsValid() {
		i.Address4 = c.Address4.String()
	}
	for _, p := range c.WorkloadTags {
		i.WorkloadTags = append(i.WorkloadTags, p.String())
	}
	return i
}

// RevocationInfo is a revocation entry's printable form.
type RevocationInfo struct {
	Serial    string `json:"serial,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Time      string `json:"time"`
	Issuer    string `json:"issuer"`
}

// Info returns the printable form of r.
func (r *Revocation) Info() RevocationInfo {
	i := RevocationInfo{Reason: r.Reason, Time: r.Time.UTC().Format(time.RFC3339), Issuer: r.Issuer.String()}
	if r.BySerial() {
		i.Serial = r.Serial.String()
	} else {
		i.PublicKey = r.PublicKey.String()
	}
	return i
}
