package check

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Misconfig is a probe error that comes from the setup rather than from the
// server's state: a wrong socket path, wrong credentials, a missing grant.
// Both nodes usually share the mistake, so it must not read as a dead
// server; the check still cannot vouch for the node, so it stays unfit.
type Misconfig struct {
	// Problem says what is wrong, Key which setting to look at, Fix what
	// to do.
	Problem, Key, Fix string
	Err               error
}

func (m *Misconfig) Error() string {
	return fmt.Sprintf("configuration problem: %s (%s): %s; %v", m.Problem, m.Key, m.Fix, m.Err)
}

func (m *Misconfig) Unwrap() error { return m.Err }

// Setting names as the operator writes them.
const (
	keySocket      = "[mysql] socket"
	keyCredentials = "[mysql] user, password or defaults_file"
	keyUser        = "[mysql] user"
	keyHeartbeat   = "[heartbeat] table"
	keyStateDir    = "state_dir"
)

// socketFacts is what the file system says about a unix socket path.
type socketFacts struct {
	// Err is lstat's error; Mode is valid when it is nil.
	Err  error
	Mode fs.FileMode
	// Elsewhere lists sockets that look like a MySQL server's and are
	// listening at other paths.
	Elsewhere []string
}

// classify returns a *Misconfig wrapping err when err shows a setup mistake,
// or nil when it is (or may be) the server's own state. facts is consulted
// only for errors on a unix socket.
func classify(err error, facts func(path string) socketFacts) *Misconfig {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return classifyServerError(me, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Net != "unix" || oe.Addr == nil {
		return nil
	}
	path := oe.Addr.String()
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return &Misconfig{Problem: fmt.Sprintf("no permission to open the socket %q", path), Key: keySocket,
			Fix: "run the check as a user that may (keepalived's script_user), or connect over TCP with [mysql] host", Err: err}
	case errors.Is(err, syscall.ENOTSOCK):
		return notASocket(path, "", err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		// Refused on a real socket means mysqld stopped; on anything
		// else it means the path is wrong.
	default:
		return nil
	}
	f := facts(path)
	if f.Err == nil && f.Mode.Type() != fs.ModeSocket {
		return notASocket(path, describeMode(f.Mode), err)
	}
	if f.Err != nil && len(f.Elsewhere) > 0 {
		return &Misconfig{Problem: fmt.Sprintf("no socket at %q, but a MySQL server listens at %q", path, f.Elsewhere[0]), Key: keySocket,
			Fix: fmt.Sprintf("set it to the socket= path of mysqld's my.cnf (perhaps %q)", f.Elsewhere[0]), Err: err}
	}
	return nil
}

func notASocket(path, what string, err error) *Misconfig {
	if what == "" {
		what = "not a socket"
	} else {
		what = "a " + what + ", not a socket"
	}
	return &Misconfig{Problem: fmt.Sprintf("%q is %s", path, what), Key: keySocket,
		Fix: "set it to the socket= path of mysqld's my.cnf", Err: err}
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m.Type()&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}

// classifyServerError sorts the server's refusals: login and privilege
// errors are the setup's, everything else (too many connections, a
// shutdown in progress, …) is the server's state.
func classifyServerError(me *mysql.MySQLError, err error) *Misconfig {
	switch me.Number {
	case 1045, 1698: // ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
		return &Misconfig{Problem: "the server refused the login", Key: keyCredentials,
			Fix: `check the account and its password; the README's "Required grants" shows how to create it`, Err: err}
	case 1044, 1142, 1143, 1227, 1370: // database, table, column, global privilege, routine
		return &Misconfig{Problem: "the account lacks a privilege", Key: keyUser,
			Fix: `grant what the README's "Required grants" lists`, Err: err}
	case 1049, 1146: // ER_BAD_DB_ERROR, ER_NO_SUCH_TABLE: only the heartbeat table is named by the config
		return &Misconfig{Problem: "a configured database or table does not exist", Key: keyHeartbeat,
			Fix: "name pt-heartbeat's table as database.table, or leave it empty to use Seconds_Behind_Master", Err: err}
	}
	return nil
}

// inspectSocket gathers socketFacts for path from the file system and the
// kernel's table of unix sockets.
func inspectSocket(path string) socketFacts {
	fi, err := os.Lstat(path)
	f := socketFacts{Err: err}
	if err != nil {
		f.Elsewhere = listeningMySQLSockets(path)
		// One beside the configured path is the likeliest meant.
		slices.SortStableFunc(f.Elsewhere, func(a, b string) int {
			return cmp.Compare(b2i(filepath.Dir(b) == filepath.Dir(path)), b2i(filepath.Dir(a) == filepath.Dir(path)))
		})
		return f
	}
	f.Mode = fi.Mode()
	return f
}

// listeningMySQLSockets lists listening unix sockets whose name looks like a
// MySQL or MariaDB server's (mysqld.sock, mysql.sock, mariadb.sock), except
// skip.
func listeningMySQLSockets(skip string) []string {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil
	}
	return parseListeningMySQLSockets(data, skip)
}

// parseListeningMySQLSockets reads /proc/net/unix: "Num RefCount Protocol
// Flags Type St Inode Path", Flags 00010000 marking a listening socket.
func parseListeningMySQLSockets(data []byte, skip string) []string {
	var out []string
	seen := map[string]bool{skip: true}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[3] != "00010000" || !strings.HasPrefix(f[7], "/") || seen[f[7]] {
			continue
		}
		base := filepath.Base(f[7])
		if !strings.HasSuffix(base, ".sock") || !(strings.Contains(base, "mysql") || strings.Contains(base, "mariadb")) {
			continue
		}
		seen[f[7]] = true
		out = append(out, f[7])
	}
	return out
}

// errorVerdict is the verdict on a server that could not be read.
func errorVerdict(err error, timeout time.Duration) Verdict {
	var mc *Misconfig
	if errors.As(err, &mc) {
		v := verdict(Unknown, "", "%s", describeError(err, timeout))
		v.Misconfigured = true
		return v
	}
	return verdict(Critical, "", "%s", describeError(err, timeout))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
