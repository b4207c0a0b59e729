package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/segmesh/segmesh/mesh"
)

// InitOptions are the inputs of `segmesh init`.
type InitOptions struct {
	Dir       string
	Name      string
	Tags      map[string]string
	Join      []string
	Advertise string
	Interface string
	Workloads []Workload
	Force     bool
}

// InitResult says what InitDir wrote.
type InitResult struct {
	ConfigFile, KeyFile, ClusterKeyFile string
	ClusterKeyCreated                   bool
	PublicKey                           mesh.Key
}

// InitDir writes DIR/segmesh.yaml, DIR/private.key (0600) and, when absent,
// DIR/cluster.key (0600). Without Force it refuses to overwrite the config or
// the private key; the cluster key is never overwritten (it is shared).
func InitDir(o InitOptions) (InitResult, error) {
	r := InitResult{
		ConfigFile:     filepath.Join(o.Dir, "segmesh.yaml"),
		KeyFile:        filepath.Join(o.Dir, "private.key"),
		ClusterKeyFile: filepath.Join(o.Dir, "cluster.key"),
	}
	if !filepath.IsAbs(o.Dir) {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			return r, fmt.Errorf("--dir: %w", err)
		}
		return InitDir(InitOptions{Dir: abs, Name: o.Name, Tags: o.Tags, Join: o.Join, Advertise: o.Advertise, Interface: o.Interface, Workloads: o.Workloads, Force: o.Force})
	}
	if err := ValidateWorkloads(o.Tags, o.Workloads); err != nil {
		return r, fmt.Errorf("nothing written to %s: %w", o.Dir, err)
	}
	if !o.Force {
		for _, p := range []string{r.ConfigFile, r.KeyFile} {
			if _, err := os.Stat(p); err == nil {
				return r, fmt.Errorf("%s exists; use --force to overwrite", p)
			}
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return r, fmt.Errorf("create %s: %w", o.Dir, err)
	}
	key, err := mesh.GenerateKey()
	if err != nil {
		return r, err
	}
	r.PublicKey = key.PublicKey()
	if err := mesh.WriteSecretFile(r.KeyFile, []byte(key.String()+"\n"), o.Force); err != nil {
		return r, err
	}
	if _, err := os.Stat(r.ClusterKeyFile); errors.Is(err, fs.ErrNotExist) {
		ck := make([]byte, 32)
		if _, err := rand.Read(ck); err != nil {
			return r, fmt.Errorf("generate cluster key: %w", err)
		}
		if err := mesh.WriteSecretFile(r.ClusterKeyFile, []byte(base64.StdEncoding.EncodeToString(ck)+"\n"), false); err != nil {
			return r, err
		}
		r.ClusterKeyCreated = true
	} else if err != nil {
		return r, fmt.Errorf("%s: %w", r.ClusterKeyFile, err)
	}
	name := o.Name
	if name == "" {
		name = hostname()
	}
	ifname := o.Interface
	if ifname == "" {
		ifname = DefaultInterface
	}
	text := Render(InitValues{
		Name: name, Interface: ifname, PrivateKeyFile: r.KeyFile, SecretFile: r.ClusterKeyFile,
		Advertise: o.Advertise, Join: o.Join, Tags: o.Tags, Workloads: o.Workloads,
	})
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !o.Force {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(r.ConfigFile, flags, 0o644)
	if err != nil {
		return r, fmt.Errorf("write %s: %w", r.ConfigFile, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return r, fmt.Errorf("write %s: %w", r.ConfigFile, err)
	}
	if err := f.Close(); err != nil {
		return r, fmt.Errorf("write %s: %w", r.ConfigFile, err)
	}
	return r, nil
}
