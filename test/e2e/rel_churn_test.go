package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// relChurnPolicies are the policies the churn alternates between: ranges
// (interval sets), single ports, a same-segment rule and ping.
var relChurnPolicies = []string{`mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080-8081]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432]}
  - {name: db-repl, from: [db], to: [db], ports: [tcp/7000]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`, `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080, udp/53]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432-5433]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`}

// relChurnBound is how soon after the churn (every node running again)
// every node must see every other up: one RejoinInterval.
const relChurnBound = 30 * time.Second

// relChurnRoles are the roles a tag change picks from (ops is in no
// segment).
var relChurnRoles = []string{"web", "app", "db", "ops"}

// TestRelChurn (make test): 6 nodes, 30 s of random restarts (kill -9 or
// SIGTERM), tag changes (config edit + segmesh reload) and policy applies;
// then every node converges (see relChurn).
func TestRelChurn(t *testing.T) {
	relChurn(t, 6, 30*time.Second)
}

// TestRelSoakChurn (soak): the same with 12 nodes for two minutes.
func TestRelSoakChurn(t *testing.T) {
	relRequireSoak(t)
	relChurn(t, 12, 2*time.Minute)
}

// relChurnRand returns the churn's random source, seeded from REL_SEED
// when set (to replay a run) and logged.
func relChurnRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("churn random seed %d (REL_SEED=%d replays it)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x5e9e5))
}

// relChurn runs size nodes (each joining through the first three), churns
// them for dur, then requires (times logged as TIMING): every node sees
// every other up within relChurnBound, and then, once, in status and `wg
// show`; every node has the last applied policy version and hash; every
// node's nftables sets are exactly those the model computes from the final
// tags and that policy; every table has one layout.
func relChurn(t *testing.T, size int, dur time.Duration) {
	f := newRelFixture(t, grace)
	tc := f.tc
	rng := relChurnRand(t)
	for i := range size {
		var seeds []*harness.Node
		for j := 0; j < 3 && j < i; j++ {
			seeds = append(seeds, f.nodes[j])
		}
		spec := harness.NodeSpec{Name: fmt.Sprintf("n%02d", i), Tags: relChurnTags(relChurnRoles[i%3])}
		for _, s := range seeds {
			spec.Join = append(spec.Join, s.GossipAddr())
		}
		n := tc.AddNode(spec)
		f.mu.Lock()
		f.nodes = append(f.nodes, n)
		f.byName[n.Name], f.tags[n] = n, spec.Tags
		f.mu.Unlock()
	}
	tc.Start(f.nodes...)
	tc.WaitMesh(meshTimeout*2, f.nodes...)
	for _, n := range f.nodes {
		f.self[n] = tc.Status(n)
	}
	// The churn's policies replace the policy_file's.
	last := relApply(t, f, f.nodes[0], relChurnPolicies[0], f.nodes...)

	ch := &relChurner{busy: map[*harness.Node]bool{}, counts: map[string]int{}}
	// Runs before the cluster's cleanup: no restart may start a daemon in
	// a namespace being deleted.
	t.Cleanup(ch.wg.Wait)
	policyIdx := 0
	start := time.Now()
	for time.Since(start) < dur {
		n := ch.pick(rng, f.nodes)
		if n == nil {
			time.Sleep(100 * time.Millisecond) // every node busy: pacing
			continue
		}
		switch r := rng.IntN(100); {
		case r < 45:
			// A restart in the background, so that restarts overlap:
			// kill -9 or SIGTERM, down for 0 s or 1-8 s (past the 5 s
			// grace at times), then start.
			graceful := r < 15
			var down time.Duration
			if rng.IntN(2) == 0 {
				down = time.Duration(1000+rng.IntN(7000)) * time.Millisecond
			}
			if ch.busyCount() >= len(f.nodes)/3 {
				ch.release(n)
				continue
			}
			ch.restart(n, graceful, down)
		case r < 90:
			tags := relChurnTags(relChurnRoles[rng.IntN(len(relChurnRoles))])
			if err := harness.EditConfig(n.ConfigPath, map[string]any{"tags": relTagsAny(tags)}); err != nil {
				t.Fatal(err)
			}
			f.setTags(n, tags)
			reloadNode(t, n)
			ch.count("tag change + reload")
			ch.release(n)
		default:
			// An operator applies on a node that has the active version.
			tc.WaitFor(n.Name+" has the active policy", 30*time.Second, func() error { return hasPolicy(last.version, last.hash)(n) })
			policyIdx = (policyIdx + 1) % len(relChurnPolicies)
			content := relChurnPolicies[policyIdx]
			f.setPolicy(t, content)
			last = applyPolicy(t, n, content, "--expect-version", strconv.FormatInt(last.version, 10))
			ch.count("policy apply")
			ch.release(n)
		}
		// Pacing between actions, 0.2-1 s: not a wait for a condition.
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
	}
	stopped := time.Now()
	ch.wg.Wait() // the restarts in flight finish: every node runs again
	if err := ch.err(); err != nil {
		t.Fatalf("churn: %v", err)
	}
	counts := ch.counts
	var done []string
	for k, v := range counts {
		done = append(done, fmt.Sprintf("%d %s", v, k))
	}
	t.Logf("churn: %d nodes for %v: %s; final policy v%d", size, dur, strings.Join(done, ", "), last.version)
	ended := time.Now()
	t.Logf("the restarts in flight finished %v after the last action", relMS(ended.Sub(stopped)))
	whole := relWaitMesh(t, tc, 90*time.Second, f.nodes...)
	if whole > relChurnBound {
		t.Errorf("the mesh was whole only %v after the last restart answered, want <= %v (see TestRelRejoinThroughRestartedSeed)", relMS(whole), relChurnBound)
	}
	at, err := waitNodes(f.nodes, ended, 30*time.Second,
		both(hasPolicy(last.version, last.hash), both(relSetsMatch(f), relPeersExactly(f, f.nodes))))
	if err != nil {
		t.Errorf("after the churn: %v", err)
	}
	var worst time.Duration
	for _, d := range at {
		worst = max(worst, d)
	}
	relTiming(t, "churn %d nodes %v: every node sees all others up %v after the last restart answered; same membership, policy v%d and the model's nftables elements everywhere after %v",
		size, dur, relMS(whole), last.version, relMS(worst))
	// Exactly one table on every node, with one layout.
	for _, n := range f.nodes[1:] {
		relCheckTable(t, n, f.nodes[0], "after the churn")
	}
}

// relChurnTags is {role: r}.
func relChurnTags(r string) map[string]string { return map[string]string{"role": r} }

// relTagsAny converts tags for EditConfig.
func relTagsAny(tags map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range tags {
		out[k] = v
	}
	return out
}

// relChurner runs the churn's background restarts: a node is busy while
// it restarts or while the churn acts on it.
type relChurner struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	busy   map[*harness.Node]bool
	counts map[string]int
	errs   []error
}

// pick marks a random idle node busy and returns it (nil: none idle).
func (c *relChurner) pick(rng *rand.Rand, nodes []*harness.Node) *harness.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idle []*harness.Node
	for _, n := range nodes {
		if !c.busy[n] {
			idle = append(idle, n)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	n := idle[rng.IntN(len(idle))]
	c.busy[n] = true
	return n
}

func (c *relChurner) release(n *harness.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.busy, n)
}

// busyCount counts the busy nodes other than the one just picked.
func (c *relChurner) busyCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.busy) - 1
}

func (c *relChurner) count(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[what]++
}

func (c *relChurner) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.errs...)
}

// restart stops n (SIGTERM when graceful, else SIGKILL), keeps it down
// for down, starts it and waits until it answers status; then n is idle.
func (c *relChurner) restart(n *harness.Node, graceful bool, down time.Duration) {
	what := "kill -9"
	if graceful {
		what = "SIGTERM"
	}
	if down > 0 {
		what += " + down 1-8s"
	}
	c.count(what + " + start")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.release(n)
		var err error
		if graceful {
			err = n.Stop()
		} else {
			err = n.Kill()
		}
		if err == nil {
			<-time.After(down)
			err = n.Start()
		}
		if err == nil {
			err = harness.WaitFor(20*time.Second, func() error {
				if e := n.ExitError(); e != nil {
					return harness.Abort(e)
				}
				_, e := n.Status()
				return e
			})
		}
		if err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("%s %s: %w", what, n.Name, err))
			c.mu.Unlock()
		}
	}()
}
