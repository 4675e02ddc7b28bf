package check

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// The example keepalived configurations, run by a real keepalived in a
// throwaway network namespace (addresses from 192.0.2.0/24 only), must
// follow the track file written by WriteTrack: FAULT (VIP released) when it
// says 1, out of FAULT when it says 0.

var examplesDir = filepath.Join("..", "..", "examples", "keepalived")

func TestKeepalivedFollowsTrackFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	kbin := lookSbin(t, "keepalived")
	lookSbin(t, "ip")
	for i, name := range []string{"keepalived.conf", "keepalived-fast.conf"} {
		t.Run(name, func(t *testing.T) { keepalivedFollows(t, kbin, name, i) })
	}
}

// lookSbin finds a program, also in sbin directories root's PATH may lack.
// Missing, it skips the test, unless the servers are required.
func lookSbin(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	if os.Getenv(mariadbtest.RequireEnv) != "" {
		t.Fatalf("%s not found (and %s is set): apt-get install %s", name, mariadbtest.RequireEnv, map[string]string{"ip": "iproute2", "keepalived": "keepalived"}[name])
	}
	t.Skipf("%s not found", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", args, err, out)
	}
	return string(out)
}

// exampleForTest is the example with what cannot run here replaced: the
// scripts by /bin/true (keepalived's own script security still applies)
// and the track file's path by trackPath. Each replaced text must be
// there, so that the example keeps its track_file.
func exampleForTest(t *testing.T, name, trackPath string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{`"/usr/libexec/vipguard/mysqlcheck -c /etc/vipguard/vipguard.toml"`, `"/bin/true"`},
		{`notify "/usr/libexec/vipguard/notify -c /etc/vipguard/vipguard.toml"`, `notify "/bin/true"`},
		{`file "/var/lib/vipguard/mysql.track"`, fmt.Sprintf("file %q", trackPath)},
		// Kept as it is, but it must be there: the instance tracks the file.
		{"track_file {\n        mysql_fast\n    }", "track_file {\n        mysql_fast\n    }"},
	} {
		if strings.Count(s, r[0]) != 1 {
			t.Fatalf("%s: %q not found exactly once", name, r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	return s
}

type logLine struct {
	at   time.Time
	text string
}

func keepalivedFollows(t *testing.T, kbin, name string, idx int) {
	ns := fmt.Sprintf("vgtf%d-%d", os.Getpid(), idx)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	run(t, "ip", "-n", ns, "addr", "add", "192.0.2.11/24", "dev", "eth0")
	for _, l := range []string{"lo", "eth0", "eth1"} {
		run(t, "ip", "-n", ns, "link", "set", l, "up")
	}

	dir := t.TempDir()
	track := filepath.Join(dir, "mysql.track")
	if err := WriteTrack(track, Track{Writer: WriterAgent, Reason: "test start"}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(exampleForTest(t, name, track)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, kbin, "--dont-fork", "--log-console", "--log-detail",
		"--vrrp", "--use-file", conf, "--pid", filepath.Join(dir, "k.pid"), "--vrrp_pid", filepath.Join(dir, "v.pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan logLine, 1024)
	var logged []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- logLine{time.Now(), sc.Text()}
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("keepalived said:\n%s", strings.Join(logged, "\n"))
		}
	})
	// wait returns when keepalived logs a line matching re.
	wait := func(re *regexp.Regexp, limit time.Duration) time.Time {
		t.Helper()
		deadline := time.After(limit)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("keepalived exited waiting for %q", re)
				}
				logged = append(logged, l.text)
				if strings.Contains(l.text, "Configuration error") || strings.Contains(l.text, "does not exist - removing") {
					t.Fatalf("keepalived: %s", l.text)
				}
				if re.MatchString(l.text) {
					return l.at
				}
			case <-deadline:
				t.Fatalf("no %q from keepalived within %s", re, limit)
			}
		}
	}
	drain := func() {
		for {
			select {
			case l := <-lines:
				logged = append(logged, l.text)
			default:
				return
			}
		}
	}
	vipHere := func() bool {
		return strings.Contains(run(t, "ip", "-n", ns, "-4", "addr", "show", "dev", "eth0"), "192.0.2.100/")
	}

	// No peer answers: once chk_mysql passed, the node takes the VIP.
	wait(regexp.MustCompile(`\(VI_MYSQL\) Entering MASTER STATE`), 20*time.Second)
	time.Sleep(50 * time.Millisecond)
	if !vipHere() {
		t.Fatal("MASTER without the VIP")
	}

	var toFault, fromFault []time.Duration
	faultRe := regexp.MustCompile(`\(VI_MYSQL\) Entering FAULT STATE`)
	leaveRe := regexp.MustCompile(`\(VI_MYSQL\): tracked file mysql_fast leaving FAULT state`)
	for i := range 7 {
		drain()
		start := time.Now()
		if err := WriteTrack(track, Track{Unfit: true, Writer: WriterAgent, Reason: fmt.Sprintf("round %d", i)}); err != nil {
			t.Fatal(err)
		}
		toFault = append(toFault, wait(faultRe, 5*time.Second).Sub(start))
		if i == 0 {
			// The VIP goes right after the state line.
			wait(regexp.MustCompile(`\(VI_MYSQL\) removing VIPs`), 5*time.Second)
			for deadline := time.Now().Add(2 * time.Second); vipHere(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("FAULT and the VIP is still here")
				}
			}
		}
		// The same value again (agentcheck's refresh) changes nothing.
		if err := WriteTrack(track, Track{Unfit: true, Writer: WriterAgent, Reason: "refresh"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		drain()
		start = time.Now()
		if err := WriteTrack(track, Track{Writer: WriterAgent, Reason: "fit"}); err != nil {
			t.Fatal(err)
		}
		fromFault = append(fromFault, wait(leaveRe, 5*time.Second).Sub(start))
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("keepalived %s reacting to the track file over %d rounds: to FAULT median %s worst %s; out of FAULT median %s worst %s",
		name, len(toFault), median(toFault), worst(toFault), median(fromFault), worst(fromFault))
}

func worst(d []time.Duration) time.Duration { return slices.Max(d).Round(10 * time.Microsecond) }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

// TestFastVariantMatchesDefault: the fast-VRRP example is the default one
// with VRRPv3 and a sub-second advert_int, nothing else, so that a fix to
// one cannot be forgotten in the other.
func TestFastVariantMatchesDefault(t *testing.T) {
	settings := func(name string) (kept []string, timing map[string]string) {
		b, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		timing = map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if f := strings.Fields(l); f[0] == "vrrp_version" || f[0] == "advert_int" {
				timing[f[0]] = f[1]
				continue
			}
			kept = append(kept, l)
		}
		return kept, timing
	}
	def, defTiming := settings("keepalived.conf")
	fast, fastTiming := settings("keepalived-fast.conf")
	if !slices.Equal(def, fast) {
		t.Errorf("keepalived-fast.conf differs from keepalived.conf beyond vrrp_version and advert_int:\n%q\n%q", def, fast)
	}
	if defTiming["advert_int"] != "1" || defTiming["vrrp_version"] != "" {
		t.Errorf("the default example must stay conservative: %v", defTiming)
	}
	if fastTiming["vrrp_version"] != "3" || !strings.HasPrefix(fastTiming["advert_int"], "0.") {
		t.Errorf("the fast variant must use VRRPv3 and a sub-second advert_int: %v", fastTiming)
	}
}
