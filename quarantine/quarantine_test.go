package quarantine

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(t *testing.T) string {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func TestNewerWinsInEitherOrder(t *testing.T) {
	x := key(t)
	q := Entry{Target: x, Name: "x", Action: ActionQuarantine, AllowFrom: []string{"ops"}, Time: 100, By: "root@a"}
	r := Entry{Target: x, Name: "x", Action: ActionRelease, Time: 200, By: "root@b"}
	for _, order := range [][]Entry{{q, r}, {r, q}} {
		l := NewList(nil)
		if _, err := l.Merge(order); err != nil {
			t.Fatal(err)
		}
		if e, _ := l.Lookup(x); e.Action != ActionRelease || len(l.Active()) != 0 {
			t.Fatalf("order %v: kept %+v", order, e)
		}
	}
	// A quarantine newer than the release wins; at the same time the release.
	l := NewList(nil)
	_, _ = l.Merge([]Entry{r, {Target: x, Name: "x", Action: ActionQuarantine, Time: 300}})
	if len(l.Active()) != 1 {
		t.Fatal("a newer quarantine lost to an older release")
	}
	l = NewList(nil)
	_, _ = l.Merge([]Entry{{Target: x, Action: ActionQuarantine, Time: 5}, {Target: x, Action: ActionRelease, Time: 5}})
	if len(l.Active()) != 0 {
		t.Fatal("a tie is not decided for the release")
	}
	if added, _ := l.Add(Entry{Target: x, Action: ActionQuarantine, Time: 4}); added {
		t.Fatal("an older entry was added")
	}
}

func TestSignedEntries(t *testing.T) {
	caPub, caPriv, _ := ed25519.GenerateKey(nil)
	opPub, opPriv, _ := ed25519.GenerateKey(nil)
	_, strangerPriv, _ := ed25519.GenerateKey(nil)
	keys := []ed25519.PublicKey{caPub, opPub}
	l := NewList(func(e *Entry) error { return Verify(e, keys) })
	base := Entry{Target: key(t), Name: "x", Action: ActionQuarantine, Reason: "incident 42", Time: 10}
	if _, err := l.Add(base); !errors.Is(err, ErrSignature) {
		t.Fatalf("unsigned entry: %v", err)
	}
	for _, priv := range []ed25519.PrivateKey{caPriv, opPriv} {
		e, err := Sign(priv, base)
		if err != nil {
			t.Fatal(err)
		}
		base.Time++
		e.Time = base.Time // tampering after signing breaks it
		if _, err := l.Add(e); !errors.Is(err, ErrSignature) {
			t.Fatalf("tampered entry: %v", err)
		}
		if e, err = Sign(priv, base); err != nil {
			t.Fatal(err)
		}
		if added, err := l.Add(e); !added || err != nil {
			t.Fatalf("signed entry: %v %v", added, err)
		}
	}
	e, _ := Sign(strangerPriv, Entry{Target: base.Target, Action: ActionRelease, Time: 99})
	if _, err := l.Add(e); !errors.Is(err, ErrSignature) {
		t.Fatalf("entry of an unknown key: %v", err)
	}
}

func TestValidateAndPersist(t *testing.T) {
	x := key(t)
	for _, bad := range []Entry{
		{Target: "nope", Action: ActionQuarantine, Time: 1},
		{Target: x, Action: "isolate", Time: 1},
		{Target: x, Action: ActionQuarantine},
		{Target: x, Action: ActionQuarantine, Time: 1, AllowFrom: []string{"Ops Team"}},
		{Target: x, Action: ActionRelease, Time: 1, AllowFrom: []string{"ops"}},
		{Target: x, Action: ActionQuarantine, Time: 1, Reason: "a\nb"},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	l := NewList(nil)
	_, _ = l.Add(Entry{Target: x, Name: "x", Action: ActionQuarantine, AllowFrom: []string{"ops"}, Time: 7})
	path := filepath.Join(t.TempDir(), "quarantine.json")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	back := NewList(nil)
	if _, err := back.Load(path); err != nil {
		t.Fatal(err)
	}
	if a := back.Active(); len(a) != 1 || a[0].AllowFrom[0] != "ops" || a[0].Since().UnixNano() != 7 {
		t.Fatalf("loaded %+v", a)
	}
}
