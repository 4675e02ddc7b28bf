//go:build linux

// Package systemd is the little of systemd agentcheck uses: sockets handed
// over by socket activation, and sd_notify (READY, STOPPING, RELOADING,
// WATCHDOG). Outside systemd every call is a harmless no-op. Only linux
// has an implementation; elsewhere there are no sockets and no notify.
package systemd

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

var (
	once      sync.Once
	listeners map[string][]net.Listener
	order     []net.Listener
	lnErr     error
)

// Listeners returns the sockets systemd passed, by FileDescriptorName= and
// in order. It reads (and unsets) LISTEN_FDS once: later calls return the
// same sockets, and child processes never inherit them by mistake.
func Listeners() (byName map[string][]net.Listener, inOrder []net.Listener, err error) {
	once.Do(func() {
		files := activation.Files(true)
		listeners = map[string][]net.Listener{}
		for _, f := range files {
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				lnErr = fmt.Errorf("socket %q passed by systemd is not a stream listener: %w", f.Name(), err)
				continue
			}
			listeners[f.Name()] = append(listeners[f.Name()], l)
			order = append(order, l)
		}
	})
	return listeners, order, lnErr
}

func notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// Ready tells systemd the service is up (Type=notify). Call it only after
// every listener is bound.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping tells systemd a clean shutdown began.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// Reloading tells systemd a configuration reload began; it must be followed
// by Ready.
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + daemon.SdNotifyMonotonicUsec())
}

// Status sets the one-line status systemctl shows.
func Status(s string) error { return notify("STATUS=" + s) }

// WatchdogInterval returns how often to ping (half of WatchdogSec), or 0
// when the watchdog is off for this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// Watchdog pings the watchdog.
func Watchdog() error { return notify(daemon.SdNotifyWatchdog) }

// Available reports whether a notify socket is set.
func Available() bool { return os.Getenv("NOTIFY_SOCKET") != "" }
