package harness

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// EditConfig loads the YAML file at path as a map, merges set into it
// (nested maps are merged key by key, everything else replaced) and writes
// it back with the same mode.
func EditConfig(path string, set map[string]any) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("edit config: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("edit config: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("edit config %s: %w", path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	mergeMaps(m, set)
	out, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Errorf("edit config %s: %w", path, err)
	}
	if err := os.WriteFile(path, out, st.Mode().Perm()); err != nil {
		return fmt.Errorf("edit config: %w", err)
	}
	return nil
}

// ReadConfig loads the YAML file at path as a map.
func ReadConfig(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return m, nil
}

// mergeMaps merges src into dst: where both hold a map the maps are merged,
// otherwise src's value replaces dst's.
func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		sv, sok := v.(map[string]any)
		dv, dok := dst[k].(map[string]any)
		if sok && dok {
			mergeMaps(dv, sv)
			continue
		}
		dst[k] = v
	}
}
