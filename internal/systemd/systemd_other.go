//go:build !linux

// Package systemd is the little of systemd agentcheck uses; outside linux
// there is no systemd and every call is a no-op.
package systemd

import (
	"net"
	"time"
)

func Listeners() (map[string][]net.Listener, []net.Listener, error) { return nil, nil, nil }
func Ready() error                                                  { return nil }
func Stopping() error                                               { return nil }
func Reloading() error                                              { return nil }
func Status(string) error                                           { return nil }
func WatchdogInterval() time.Duration                               { return 0 }
func Watchdog() error                                               { return nil }
func Available() bool                                               { return false }
