package main

import (
	"io"
	"log/syslog"
	"os"
	"syscall"
)

// logDestination is where the step log goes. keepalived runs notify scripts
// with stdin, stdout and stderr on /dev/null, so logging to stderr alone
// would lose every line exactly in production: then the lines go to syslog
// (/dev/log, which journald collects) instead.
func logDestination(stderr io.Writer) io.Writer {
	f, ok := stderr.(*os.File)
	if !ok || !isDevNull(f) {
		return stderr
	}
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "vipguard-notify")
	if err != nil {
		return stderr
	}
	return w
}

// isDevNull reports whether f is /dev/null (same device and inode).
func isDevNull(f *os.File) bool {
	var a, b syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &a) != nil || syscall.Stat(os.DevNull, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Rdev == b.Rdev
}
