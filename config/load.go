package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/viper"
)

// Load reads the file at path, applies SEGMESH_* environment overrides and
// validates the result. Every problem found is reported (joined), each as an
// *Error naming the file and the key.
func Load(path string) (*Config, error) {
	v := viper.New()
	for _, k := range Keys {
		v.SetDefault(k.Key, k.Default)
	}
	v.SetEnvPrefix("SEGMESH")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Err: fmt.Errorf("invalid YAML: %w", err)}
		}
		return nil, &Error{File: path, Err: err}
	}
	if err := unknownKeys(path, v); err != nil {
		return nil, err
	}
	return validate(path, v)
}

// unknownKeys reports keys in the file that the contract does not define.
func unknownKeys(path string, v *viper.Viper) error {
	known := map[string]bool{}
	for _, k := range Keys {
		known[k.Key] = true
	}
	var errs []error
	var unknown []string
	for _, k := range v.AllKeys() {
		// tags.* are the node's tags; workloads.* is a map where a list
		// belongs, which validate reports as such.
		if known[k] || strings.HasPrefix(k, "tags.") || strings.HasPrefix(k, "workloads.") {
			continue
		}
		unknown = append(unknown, k)
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, &Error{File: path, Key: k, Err: errors.New("unknown key")})
	}
	return errors.Join(errs...)
}

// hostname is the default node name.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "segmesh"
	}
	return h
}

// ControlSocketOf returns the control_socket a config file names (with its
// SEGMESH_CONTROL_SOCKET override), or the default when the file is absent,
// unreadable or does not set it. Client commands use it; they must work
// without a fully valid config.
func ControlSocketOf(path string) string {
	if s := os.Getenv("SEGMESH_CONTROL_SOCKET"); s != "" {
		return s
	}
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return DefaultControlSocket
	}
	if s := strings.TrimSpace(v.GetString("control_socket")); s != "" {
		return s
	}
	return DefaultControlSocket
}
