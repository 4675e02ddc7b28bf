package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses of the lab network. Only 192.0.2.0/24 (TEST-NET-1) is ever used,
// and the same addresses appear in the example files, so templating them is
// a no-op except for db2's swapped unicast addresses.
const (
	Subnet  = "192.0.2.0/24"
	VIP     = "192.0.2.100"
	DB1Addr = "192.0.2.11"
	DB2Addr = "192.0.2.12"
	// DB3Addr is the read replica's, in a lab started with Replica.
	DB3Addr   = "192.0.2.13"
	ProxyAddr = "192.0.2.20"
	ClientIP  = "192.0.2.30"
	MySQLPort = 3306
	// WriterPort and ReaderPort are HAProxy's frontends (examples/haproxy).
	WriterPort = 3306
	ReaderPort = 3307
	// AgentPort and AgentHTTPPort are agentcheck's listeners on each node
	// (examples/haproxy agent-port, [agent] listen and http_listen).
	AgentPort     = 9201
	AgentHTTPPort = 9200
)

// RunRoot holds one directory per lab run. It and everything below it are
// root-owned 0755, as keepalived's enable_script_security demands of the
// scripts it runs (/tmp, mode 1777, would be refused).
const RunRoot = "/run/vglab"

// hosts are the lab's namespaces besides the switch; ReplicaHost joins
// them in a lab with the read replica.
var hosts = []string{"db1", "db2", "proxy", "client"}

// ReplicaHost is the read replica's host (Options.Replica, AddReplica).
const ReplicaHost = "db3"

var hostAddr = map[string]string{"db1": DB1Addr, "db2": DB2Addr, ReplicaHost: DB3Addr, "proxy": ProxyAddr, "client": ClientIP}

// nsPattern matches every namespace a lab creates: <prefix>-<host>, where
// the prefix is "vg" and four digits.
var nsPattern = regexp.MustCompile(`^(vg[0-9]{4})-(db1|db2|db3|proxy|client|sw)$`)

var prefixPattern = regexp.MustCompile(`^vg[0-9]{4}$`)

// Net is the lab's network: one namespace per host plus a switch namespace
// holding the bridge, so the root namespace's network is never touched.
type Net struct {
	Prefix string
}

// NS returns the namespace name of host ("db1", ..., "sw").
func (n *Net) NS(host string) string { return n.Prefix + "-" + host }

// IfName is the interface of host inside its own namespace.
func (n *Net) IfName(host string) string { return n.Prefix + "-" + host }

// swIf is the switch-side end of host's veth pair.
func (n *Net) swIf(host string) string { return n.Prefix + "s" + host }

func (n *Net) bridge() string { return n.Prefix + "br" }

// Exec runs argv inside host's namespace and returns its combined output.
func (n *Net) Exec(ctx context.Context, host string, argv ...string) ([]byte, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", n.NS(host)}, argv...)...)
}

// Wrap is the command prefix that runs a program inside host's namespace.
func (n *Net) Wrap(host string) []string { return []string{"ip", "netns", "exec", n.NS(host)} }

// run executes argv with a 20 s bound and returns its combined output.
func run(ctx context.Context, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Setup creates the namespaces, the bridge and one veth pair per host.
func (n *Net) Setup(ctx context.Context) error {
	sw := n.NS("sw")
	cmds := [][]string{{"ip", "netns", "add", sw}}
	for _, h := range hosts {
		cmds = append(cmds, []string{"ip", "netns", "add", n.NS(h)})
	}
	cmds = append(cmds,
		[]string{"ip", "-n", sw, "link", "set", "lo", "up"},
		[]string{"ip", "-n", sw, "link", "add", n.bridge(), "type", "bridge"},
		[]string{"ip", "-n", sw, "link", "set", n.bridge(), "up"},
	)
	for _, h := range hosts {
		cmds = append(cmds, n.plugCmds(h)...)
	}
	return runAll(ctx, cmds)
}

// AddHost creates one more host namespace on the running network.
func (n *Net) AddHost(ctx context.Context, host string) error {
	if hostAddr[host] == "" {
		return fmt.Errorf("unknown lab host %q", host)
	}
	return runAll(ctx, append([][]string{{"ip", "netns", "add", n.NS(host)}}, n.plugCmds(host)...))
}

// RemoveHost kills what runs in a host's namespace and deletes it (its
// veth goes with it).
func (n *Net) RemoveHost(ctx context.Context, host string) error {
	killNamespace(ctx, n.NS(host))
	_, err := run(ctx, "ip", "netns", "del", n.NS(host))
	return err
}

// plugCmds give an existing host namespace its veth into the bridge and
// its address.
func (n *Net) plugCmds(h string) [][]string {
	sw, ns := n.NS("sw"), n.NS(h)
	return [][]string{
		// Created inside the switch namespace, peer moved straight into
		// the host's: no interface ever appears in the root namespace.
		{"ip", "-n", sw, "link", "add", n.swIf(h), "type", "veth", "peer", "name", n.IfName(h), "netns", ns},
		{"ip", "-n", sw, "link", "set", n.swIf(h), "master", n.bridge()},
		{"ip", "-n", sw, "link", "set", n.swIf(h), "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "add", hostAddr[h] + "/24", "dev", n.IfName(h)},
		{"ip", "-n", ns, "link", "set", n.IfName(h), "up"},
	}
}

func runAll(ctx context.Context, cmds [][]string) error {
	for _, c := range cmds {
		if _, err := run(ctx, c...); err != nil {
			return fmt.Errorf("setting up lab network: %w", err)
		}
	}
	return nil
}

// Cut takes host's link down on the switch side: the host sees its carrier
// drop, exactly like a pulled cable or a dead switch port.
func (n *Net) Cut(ctx context.Context, host string) error {
	_, err := run(ctx, "ip", "-n", n.NS("sw"), "link", "set", n.swIf(host), "down")
	return err
}

// Partition detaches host's port from the bridge: its link stays up (no
// carrier loss for keepalived to notice) but nothing gets through, like a
// failure further into the network.
func (n *Net) Partition(ctx context.Context, host string) error {
	_, err := run(ctx, "ip", "-n", n.NS("sw"), "link", "set", n.swIf(host), "nomaster")
	return err
}

// Heal undoes Cut and Partition: the port is in the bridge and up.
func (n *Net) Heal(ctx context.Context, host string) error {
	if _, err := run(ctx, "ip", "-n", n.NS("sw"), "link", "set", n.swIf(host), "master", n.bridge()); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "-n", n.NS("sw"), "link", "set", n.swIf(host), "up")
	return err
}

// HasAddr reports whether host currently holds addr.
func (n *Net) HasAddr(ctx context.Context, host, addr string) (bool, error) {
	out, err := run(ctx, "ip", "-n", n.NS(host), "-o", "-4", "addr", "show")
	if err != nil {
		return false, err
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, addr+"/") {
			return true, nil
		}
	}
	return false, nil
}

// Teardown kills every process left in the lab's namespaces and deletes
// them. It keeps going past errors and returns them all.
func (n *Net) Teardown() error {
	return teardownPrefix(n.Prefix)
}

func teardownPrefix(prefix string) error {
	ctx := context.Background()
	var errs []error
	names := append(append([]string{}, hosts...), ReplicaHost, "sw")
	for _, h := range names {
		ns := prefix + "-" + h
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			continue
		}
		killNamespace(ctx, ns)
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespace SIGKILLs every process in ns, and waits (bounded) for them
// to go so the namespace can be deleted cleanly.
func killNamespace(ctx context.Context, ns string) {
	for range 50 {
		out, err := run(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGCONT)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ownerFile records the pid of the process that owns a lab run.
func ownerFile(prefix string) string { return filepath.Join(RunRoot, prefix, "owner") }

// owner identifies a process by pid and start time, so a recycled pid is
// not taken for the lab's owner.
func owner(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// Field 22 (starttime) counted after the ")" that ends the command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return strconv.Itoa(pid) + " " + f[19]
		}
	}
	return ""
}

// ownerAlive reports whether the process that created prefix's lab still runs.
func ownerAlive(prefix string) bool {
	b, err := os.ReadFile(ownerFile(prefix))
	if err != nil {
		return false
	}
	want := strings.TrimSpace(string(b))
	pidText, _, _ := strings.Cut(want, " ")
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// Alive: still the same process unless the start time differs.
	return !strings.Contains(want, " ") || owner(pid) == want
}

// CleanStale removes labs left behind by runs that died without tearing
// down (SIGKILL, a crashed test binary): namespaces matching the lab's name
// pattern and run directories whose owning process is gone. Labs of live
// runs are left alone. It returns the prefixes it cleaned.
func CleanStale() ([]string, error) {
	prefixes := map[string]bool{}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if m := nsPattern.FindStringSubmatch(e.Name()); m != nil {
				prefixes[m[1]] = true
			}
		}
	}
	if ents, err := os.ReadDir(RunRoot); err == nil {
		for _, e := range ents {
			if e.IsDir() && prefixPattern.MatchString(e.Name()) {
				prefixes[e.Name()] = true
			}
		}
	}
	var cleaned []string
	var errs []error
	for p := range prefixes {
		if ownerAlive(p) {
			continue
		}
		if err := teardownPrefix(p); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join(RunRoot, p)); err != nil {
			errs = append(errs, err)
		}
		cleaned = append(cleaned, p)
	}
	return cleaned, errors.Join(errs...)
}

// pickPrefix chooses a prefix from our pid that no live lab uses, and
// claims it by writing the owner file.
func pickPrefix() (string, error) {
	base := os.Getpid() % 10000
	for i := range 100 {
		p := fmt.Sprintf("vg%04d", (base+i)%10000)
		dir := filepath.Join(RunRoot, p)
		if _, err := os.Stat(filepath.Join("/run/netns", p+"-sw")); err == nil {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue // taken (or stale and owned by a live process)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(ownerFile(p), []byte(owner(os.Getpid())+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("claiming lab prefix: %w", err)
		}
		return p, nil
	}
	return "", errors.New("no free lab prefix (100 tried): clean up " + RunRoot)
}
