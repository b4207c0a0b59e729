package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

func newInit() *cobra.Command {
	var o config.InitOptions
	var tags, join string
	var workloads []string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Write a config file, a WireGuard key and (if absent) a cluster key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Tags, err = config.ParseTags(tags); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--tags: %w", err)}
			}
			for _, j := range strings.Split(join, ",") {
				if j = strings.TrimSpace(j); j == "" {
					continue
				}
				hp, err := config.SplitHostPortDefault(j, config.DefaultGossipPort)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--join: %w", err)}
				}
				o.Join = append(o.Join, hp)
			}
			for _, s := range workloads {
				w, err := config.ParseWorkload(s)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--workload: %w", err)}
				}
				o.Workloads = append(o.Workloads, w)
			}
			if err := config.ValidateWorkloads(o.Tags, o.Workloads); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--workload (workloads[i] is the i-th flag, from 0): %w", err)}
			}
			if err := checkJoinClusterKey(o); err != nil {
				return err
			}
			r, err := config.InitDir(o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s\nwrote %s (0600), public key %s\n", r.ConfigFile, r.KeyFile, r.PublicKey)
			if r.ClusterKeyCreated {
				fmt.Fprintf(out, "wrote %s (0600): a NEW cluster key; copy this file to every node of the mesh\n", r.ClusterKeyFile)
			} else {
				fmt.Fprintf(out, "kept %s (the existing cluster key)\n", r.ClusterKeyFile)
			}
			fmt.Fprintf(out, "\nnext: review %s, then run:\n  segmesh config check -c %s\n  segmesh up -c %s\n",
				r.ConfigFile, r.ConfigFile, r.ConfigFile)
			if err := chownToDaemonUser(out, r.ConfigFile, r.KeyFile, r.ClusterKeyFile); err != nil {
				return err
			}
			printAddNode(out, filepath.Dir(r.ConfigFile), r.ClusterKeyFile, o.Advertise)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "directory to write into (required)")
	f.StringVar(&o.Name, "name", "", "node name (default: hostname)")
	f.StringVar(&tags, "tags", "", "tags as k=v,k=v")
	f.StringVar(&join, "join", "", "gossip seeds as host:port,host:port")
	f.StringArrayVar(&workloads, "workload", nil, "a workload as NAME:UNIT:k=v,k=v (UNIT a systemd unit, or a cgroup v2 path when it starts with /); repeatable, at most 32")
	f.StringVar(&o.Advertise, "advertise", "", "underlay address peers dial")
	f.StringVar(&o.Interface, "interface", "", "WireGuard interface name (default segmesh0)")
	f.BoolVar(&o.Force, "force", false, "overwrite an existing config and private key")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// checkJoinClusterKey refuses `init --join` on a node that has no cluster
// key yet: init would write a new key, and a node with its own key can never
// join the mesh it names. The key must be copied from the mesh first.
func checkJoinClusterKey(o config.InitOptions) error {
	if len(o.Join) == 0 {
		return nil
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--dir: %w", err)}
	}
	path := filepath.Join(dir, "cluster.key")
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // present (or unreadable: InitDir reports that)
	}
	seed, _, _ := net.SplitHostPort(o.Join[0])
	if seed == "" {
		seed = "SEED"
	}
	return &exitError{code: 2, err: fmt.Errorf(`--join: no cluster key at %[1]s, so init would write a NEW key that can never join the mesh; nothing written.
copy the mesh's cluster key to this node FIRST, then run init again:
  install -d -m 0755 %[2]s
  scp -p root@%[3]s:%[1]s %[1]s    # the cluster.key of any node of the mesh, mode 0600`, path, dir, seed)}
}

// printAddNode prints the exact commands that add another node to this
// node's mesh: copy the shared cluster key first (init keeps an existing
// one), then init the new node with this node as its seed.
func printAddNode(out io.Writer, dir, clusterKey, advertise string) {
	seed := "<this node's advertise address>"
	if advertise != "" {
		seed = advertise
	}
	seed = net.JoinHostPort(seed, strconv.Itoa(config.DefaultGossipPort))
	start := "segmesh up -c " + filepath.Join(dir, "segmesh.yaml")
	if filepath.Join(dir, "segmesh.yaml") == config.DefaultPath {
		start = "systemctl enable --now segmesh   # the packaged unit runs: " + start
	}
	fmt.Fprintf(out, `
to add another node (NODE2 below), copy the cluster key FIRST, then init it with this node as seed:
  ssh root@NODE2 install -d -m 0755 %[1]s
  scp -p %[2]s root@NODE2:%[2]s
  ssh root@NODE2 segmesh init --dir %[1]s --join %[3]s --advertise NODE2_ADDRESS --name NAME --tags k=v,...
  ssh root@NODE2 %[4]s
open between the nodes: %[5]d/tcp and %[5]d/udp (gossip), %[6]d/udp (WireGuard)
`, dir, clusterKey, seed, start, config.DefaultGossipPort, config.DefaultListenPort)
}

// daemonUser is the user the packaged unit runs the daemon as (User=segmesh,
// created by the package's sysusers.d/segmesh.conf).
const daemonUser = "segmesh"

// chownToDaemonUser gives files to the daemon's user when init runs as root
// and that user exists (the package is installed), so the daemon, which does
// not run as root, can read its config and its 0600 keys. Otherwise it does
// nothing: the files stay the caller's.
func chownToDaemonUser(out io.Writer, files ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(daemonUser)
	if err != nil {
		return nil
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s: uid %q gid %q", daemonUser, u.Uid, u.Gid)
	}
	for _, f := range files {
		if err := os.Chown(f, uid, gid); err != nil {
			return fmt.Errorf("give %s to the daemon's user %s: %w", f, daemonUser, err)
		}
	}
	fmt.Fprintf(out, "gave %s to user %s (the packaged unit's User=)\n", strings.Join(files, ", "), daemonUser)
	return nil
}
