package gossip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Peer cache: the names and gossip addresses of known peers, so a restart
// finds the mesh when its seeds are gone. It lists members alive, suspect or
// dead (not left, not forgotten), never this node; until the first
// successful join it also keeps the entries it was loaded with.

type cachedPeer struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // ip:port
}

type cacheFile struct {
	Peers []cachedPeer `json:"peers"`
}

// loadCache reads the peer cache. A missing file is an empty cache.
func loadCache(path, self string) ([]cachedPeer, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read peer cache: %w", err)
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse peer cache %s: %w", path, err)
	}
	var out []cachedPeer
	for _, p := range f.Peers {
		if p.Name == "" || p.Name == self {
			continue
		}
		if _, err := netip.ParseAddrPort(p.Addr); err != nil {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// writeCacheFile replaces path atomically (temp file, fsync, rename), mode 0600.
func writeCacheFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write peer cache: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write peer cache: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write peer cache: %w", err)
	}
	return nil
}

// cacheContentLocked renders the cache as it should be now.
func (g *Gossip) cacheContentLocked() []byte {
	seen := map[string]bool{}
	var peers []cachedPeer
	for name, e := range g.members {
		if e.state == StateLeft || !e.addr.IsValid() {
			continue
		}
		seen[name] = true
		peers = append(peers, cachedPeer{Name: name, Addr: e.addr.String()})
	}
	if !g.joinedOnce {
		for _, p := range g.cacheLoaded {
			if !seen[p.Name] {
				seen[p.Name] = true
				peers = append(peers, p)
			}
		}
	}
	slices.SortFunc(peers, func(a, b cachedPeer) int { return strings.Compare(a.Name, b.Name) })
	if peers == nil {
		peers = []cachedPeer{}
	}
	b, _ := json.MarshalIndent(cacheFile{Peers: peers}, "", "  ") // cannot fail: strings only
	return append(b, '\n')
}

// flushCache writes the cache when it changed. force ignores the debounce.
// Only the watcher goroutine (and Shutdown after it stopped) calls it.
func (g *Gossip) flushCache(now time.Time, force bool) {
	if g.cfg.CachePath == "" {
		return
	}
	g.mu.Lock()
	if !g.cacheDirty || (!force && now.Sub(g.cacheWritten) < g.cfg.CacheWriteInterval) {
		g.mu.Unlock()
		return
	}
	g.cacheDirty = false
	g.cacheWritten = now
	data := g.cacheContentLocked()
	g.mu.Unlock()
	if bytes.Equal(data, g.cacheLast) {
		return
	}
	if err := writeCacheFile(g.cfg.CachePath, data); err != nil {
		g.log.Warn("peer cache not written", "err", err)
		g.mu.Lock()
		g.cacheDirty = true // retry later
		g.mu.Unlock()
		return
	}
	g.cacheLast = data
}
