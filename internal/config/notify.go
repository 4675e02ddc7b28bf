package config

import "time"

// applyDefaults fills the notify settings the file left empty.
func (n *Notify) applyDefaults() {
	if n.Policy == "" {
		n.Policy = PolicyReliability
	}
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{
		{&n.PromotionTimeout, 30 * time.Second},
		{&n.FenceTimeout, 5 * time.Second},
		{&n.StopTimeout, 800 * time.Millisecond},
		{&n.PeerTimeout, 3 * time.Second},
		{&n.PeerConnectTimeout, 300 * time.Millisecond},
		{&n.StableWindow, 200 * time.Millisecond},
		{&n.ReplicationTimeout, 5 * time.Second},
	} {
		if d.v.Duration == 0 {
			d.v.Duration = d.def
		}
	}
	if n.ResetClients == nil {
		n.ResetClients = boolPtr(true)
	}
}
