package mesh

import "golang.zx2c4.com/wireguard/wgctrl/wgtypes"

// WGClient is the part of a wgctrl client Mesh uses. *wgctrl.Client
// implements it; meshtest.WireGuard is an in-memory fake.
type WGClient interface {
	// Device returns the current state of the WireGuard device name
	// (an error wrapping os.ErrNotExist when there is none).
	Device(name string) (*wgtypes.Device, error)
	// ConfigureDevice applies cfg to the device name.
	ConfigureDevice(name string, cfg wgtypes.Config) error
	// Close releases the client.
	Close() error
}
