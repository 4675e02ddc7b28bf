// Command vglab runs vipguard's failover lab for people: "demo" builds the
// lab, kills mysqld on the VIP holder under write load and prints a live
// timeline (who holds the VIP, writes per second, the current gap, what
// keepalived, notify and mysqlcheck on each node decided and why), then a
// summary; "bench-failover" prints the write-unavailability window of each
// fault scenario (median and worst of several runs, and the kill scenario
// on a semi-sync pair with --semi-sync-kill); "clean" removes labs left behind
// by killed runs. Both runners also draw each run as an SVG timeline
// (writes/s per path, the VIP holder, keepalived and read_only per node, the
// fault and the promotion). Everything is torn down on exit, also on Ctrl-C.
//
// It must run as root from inside the source tree (it builds the binaries
// it runs), e.g. go run ./tools/vglab demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/vipguard/vipguard/lab"
)

const prog = "vglab"

type cmdline struct {
	Demo  demoCmd  `cmd:"" help:"Run one failover (kill -9 of the VIP holder's mysqld under writes) with a live timeline."`
	Bench benchCmd `cmd:"" name:"bench-failover" help:"Print the write-unavailability window of each fault scenario (median and worst of N runs)."`
	Clean cleanCmd `cmd:"" help:"Remove labs left behind by killed runs."`
}

type common struct {
	StandIn  bool `name:"stand-in" help:"Run the lab's stand-in notify (only toggles read_only: today's reality) from keepalived instead of cmd/notify."`
	SemiSync bool `name:"semi-sync" help:"Start db1 and db2 with MariaDB's semi-synchronous replication enabled both ways."`
	Replica  bool `help:"Add the read replica db3, replicating from the VIP by GTID, in HAProxy's reader backend."`
	FastVRRP bool `name:"fast-vrrp" help:"Run keepalived from examples/keepalived/keepalived-fast.conf (VRRPv3, sub-second advert_int)."`
}

type demoCmd struct {
	common
	Fault string `default:"kill" enum:"kill,freeze,maintenance,keepalived-stop,link-cut,partition" help:"Fault to inject (${enum})."`
	// A pointer: unset means the default name, "" means no picture.
	SVG *string `name:"svg" placeholder:"FILE" help:"Write the run's timeline picture to FILE (default vglab-demo-<fault>.svg; \"\" for none)."`
}

type benchCmd struct {
	common
	Runs   int      `default:"3" help:"Runs per scenario."`
	Faults []string `default:"kill,freeze,maintenance,keepalived-stop,link-cut,partition" help:"Scenarios to run."`
	// The semi-sync crash needs a pair started with semi-sync: a second
	// lab, after the first, its rows printed beside the first's.
	SemiSyncKill bool   `name:"semi-sync-kill" help:"Also run the kill scenario on a second lab whose pair runs semi-sync both ways."`
	Writers      int    `default:"2" help:"Writers per path (VIP and HAProxy)."`
	SVGDir       string `name:"svg-dir" default:"vglab-bench" placeholder:"DIR" help:"Write each run's timeline picture to DIR/<fault>-<run>.svg (\"\" for none)."`
}

type cleanCmd struct{}

func main() {
	var c cmdline
	parser := kong.Must(&c, kong.Name(prog), kong.Description("vipguard's failover lab: demo and failover benchmark."), kong.UsageOnError())
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.Errorf("%s", err)
		os.Exit(80)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch kctx.Command() {
	case "demo":
		err = demo(ctx, &c.Demo, os.Stdout)
	case "bench-failover":
		err = bench(ctx, &c.Bench, os.Stdout)
	case "clean":
		var cleaned []string
		cleaned, err = lab.CleanStale()
		fmt.Printf("cleaned %d stale lab(s) %v\n", len(cleaned), cleaned)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", prog, err)
		os.Exit(1)
	}
}

// startLab starts the lab and tears it down when ctx ends (Ctrl-C) even
// while a step that does not watch ctx is running.
func startLab(ctx context.Context, o common, w io.Writer, t0 time.Time) (*lab.Lab, func(), error) {
	var mu sync.Mutex
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, a...))
	}
	logf("starting the lab (build, namespaces, mariadb pair, keepalived, haproxy)")
	l, err := lab.Start(ctx, lab.Options{StandIn: o.StandIn, SemiSync: o.SemiSync, Replica: o.Replica, FastVRRP: o.FastVRRP, Logf: logf})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			logf("interrupted: tearing down")
			l.Close()
		case <-done:
		}
	}()
	return l, func() {
		close(done)
		if err := l.Close(); err != nil {
			logf("teardown: %v", err)
		} else {
			logf("lab torn down")
		}
	}, nil
}

func demo(ctx context.Context, c *demoCmd, w io.Writer) error {
	t0 := time.Now()
	f, _ := lab.FaultByName(c.Fault)
	l, closeLab, err := startLab(ctx, c.common, w, t0)
	if err != nil {
		return err
	}
	defer closeLab()

	var mu sync.Mutex
	var load *lab.Load
	printf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, a...))
	}
	fmt.Fprintf(w, "\nTimeline: VIP holder, writes/s through VIP+HAProxy, current gap without a successful write,\n"+
		"then per node: keepalived state, read_only, mysqlcheck's verdict, then HAProxy's view of each server\n"+
		"(W = writer backend, R = reader backend with weight, as agentcheck on each node tells it). Events (!) as they happen.\n\n")
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watch(wctx, l, printf, func() *lab.Load { mu.Lock(); defer mu.Unlock(); return load })
	}()
	rec := newRecorder(l)
	res, err := l.RunFailover(ctx, f, rec.hooks(ctx, lab.Hooks{
		Phase:       func(m string) { printf("! %s", m) },
		LoadStarted: func(ld *lab.Load) { mu.Lock(); load = ld; mu.Unlock() },
	}))
	stopWatch()
	<-watched
	rec.finish()
	svg := "vglab-demo-" + f.Name + ".svg"
	if c.SVG != nil {
		svg = *c.SVG
	}
	var perr error
	if svg != "" && res.From != "" {
		perr = writePicture(svg, rec.timeline(f, res, err, ""))
	}

	fmt.Fprintf(w, "\nSummary (%s, notify: %s):\n", f.Desc, map[bool]string{false: "cmd/notify", true: "stand-in that only toggles read_only"}[c.StandIn])
	if res.From != "" {
		fmt.Fprintf(w, "  VIP moved %s → %s %.2fs after the fault; writes succeeded on %s %.2fs after it\n",
			res.From, res.To, res.VIPMoved.Seconds(), res.To, res.WritesBack.Seconds())
		fmt.Fprintf(w, "  write-unavailability window: %.2fs (through the VIP %.2fs, through HAProxy %.2fs)\n",
			res.MaxGap.Seconds(), res.VIPGap.Seconds(), res.ProxyGap.Seconds())
		fmt.Fprintf(w, "  acknowledged writes: %d; idle connections at the end: %v\n", res.Acked, res.Idle)
		fmt.Fprintf(w, "  samples with both nodes writable: %d of %d (recovery %d of %d)\n",
			len(res.Sampler.BothWritable), res.Sampler.Samples, len(res.RecoverySampler.BothWritable), res.RecoverySampler.Samples)
	}
	if svg != "" && res.From != "" && perr == nil {
		fmt.Fprintf(w, "  timeline picture: %s\n", svg)
	}
	if err != nil {
		fmt.Fprintf(w, "  VERIFICATION FAILED: %v\n", err)
		return errors.Join(err, perr)
	}
	fmt.Fprintf(w, "  verified: every acknowledged write is on both nodes, tables identical, replication running both ways, one VIP\n\n")
	return perr
}

// notifyEvent picks cmd/notify's main steps, warnings and errors from its
// step log (and every line of the stand-in's).
var notifyEvent = regexp.MustCompile(`level=(WARN|ERROR)|msg="step done".*step=(fence|promote|fence\.local|fence\.peer|gate|open_writes|reset_clients) |msg="stale TCP clients reset"|read_only=(ON|OFF) (ok|FAILED)`)

// notifyNoise is what a timeline line of notify's log does not need.
var notifyNoise = regexp.MustCompile(`^time=\S+ (level=INFO )?| prog=notify| instance=\S+`)

var kaEvent = regexp.MustCompile(`Entering \w+ STATE|removing VIPs|setting VIPs|Script .* now returning \d+|received priority 0`)

// watch prints a status line about twice a second and every new
// keepalived/notify event, until ctx ends.
func watch(ctx context.Context, l *lab.Lab, printf func(string, ...any), load func() *lab.Load) {
	tails := map[string]*tailer{}
	for _, n := range []string{"db1", "db2"} {
		node := l.Node(n)
		tails[n+" keepalived"] = &tailer{path: filepath.Join(node.Dir, "keepalived.log"), match: kaEvent}
		tails[n+" notify"] = &tailer{path: node.NotifyLog, match: notifyEvent}
	}
	for _, t := range tails {
		t.skip() // only what happens from now on
	}
	var lastOK int64
	lastT := time.Now()
	lastVerdict := map[string]string{}
	lastView := ""
	for range 10000 { // bounded: ~80 minutes at the slowest
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		st := l.Snapshot(ctx)
		if ctx.Err() != nil {
			return
		}
		rate, gap := "-", "-"
		if ld := load(); ld != nil && time.Since(time.Unix(0, int64(ld.Last().T*1e9))) < time.Second {
			e := ld.Last()
			ok := e.OK["vip"] + e.OK["proxy"]
			if lastOK > 0 {
				rate = strconv.Itoa(int(float64(ok-lastOK) / time.Since(lastT).Seconds()))
			}
			lastOK, lastT = ok, time.Now()
			gap = fmt.Sprintf("%.2fs", e.Gap)
		}
		names := []string{"db1 keepalived", "db1 notify", "db2 keepalived", "db2 notify"}
		for _, k := range names {
			for _, line := range tails[k].next() {
				printf("! %s: %s", k, line)
			}
		}
		for _, n := range []string{"db1", "db2"} {
			c := st.Check[n]
			v := verdictKey(c)
			if v != lastVerdict[n] {
				printf("! %s mysqlcheck: %s", n, c)
				lastVerdict[n] = v
			}
		}
		holder := st.Holder
		if holder == "" {
			holder = "none"
		}
		view := l.HAProxyView()
		if view != lastView {
			printf("! haproxy (via agentcheck): %s", view)
			lastView = view
		}
		printf("VIP=%-4s writes/s=%-5s gap=%-6s | db1 %-7s ro=%-3s %s | db2 %-7s ro=%-3s %s | haproxy %s",
			holder, rate, gap,
			st.Keepalived["db1"], st.ReadOnly["db1"], short(st.Check["db1"]),
			st.Keepalived["db2"], st.ReadOnly["db2"], short(st.Check["db2"]), view)
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(0, 500*time.Millisecond-time.Since(start))):
		}
	}
}

var digits = regexp.MustCompile(`[0-9.]+(ms|µs|s)\b`)

// verdictKey ignores numbers that change every run (lag, durations).
func verdictKey(c lab.CheckResult) string {
	return strconv.Itoa(c.Exit) + digits.ReplaceAllString(c.Line, "")
}

func short(c lab.CheckResult) string {
	s := strings.TrimPrefix(c.Line, "mysqlcheck: ")
	if i := strings.IndexByte(s, ':'); i > 0 && c.Exit != 0 {
		s = "UNFIT" + s[i:]
	}
	if len(s) > 38 {
		s = s[:38] + "…"
	}
	return s
}

// tailer returns the lines appended to a file since the last call.
type tailer struct {
	path  string
	off   int64
	match *regexp.Regexp
}

func (t *tailer) skip() {
	if fi, err := os.Stat(t.path); err == nil {
		t.off = fi.Size()
	}
}

func (t *tailer) next() []string {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil
	}
	end := strings.LastIndexByte(string(b), '\n')
	if end < 0 {
		return nil
	}
	t.off += int64(end + 1)
	var out []string
	for _, line := range strings.Split(string(b[:end]), "\n") {
		if t.match != nil && !t.match.MatchString(line) {
			continue
		}
		out = append(out, notifyNoise.ReplaceAllString(kaTime.ReplaceAllString(notifyTime(line), ""), ""))
	}
	return out
}

// kaTime is keepalived's own timestamp on console log lines.
var kaTime = regexp.MustCompile(`^\w{3} \w{3} +\d+ [\d:]+ \d{4}: `)

// notifyTime drops the stand-in notify's epoch timestamp (the timeline has
// its own clock).
func notifyTime(line string) string {
	if i := strings.IndexByte(line, ' '); i > 0 {
		if _, err := strconv.ParseFloat(line[:i], 64); err == nil {
			return line[i+1:]
		}
	}
	return line
}

func bench(ctx context.Context, c *benchCmd, w io.Writer) error {
	if c.Runs < 1 || c.Runs > 50 {
		return fmt.Errorf("--runs %d: want 1-50", c.Runs)
	}
	if c.Writers < 1 || c.Writers > 16 {
		return fmt.Errorf("--writers %d: want 1-16", c.Writers)
	}
	var faults []lab.Fault
	for _, name := range c.Faults {
		f, ok := lab.FaultByName(name)
		if !ok {
			return fmt.Errorf("unknown scenario %q", name)
		}
		faults = append(faults, f)
	}
	if c.SVGDir != "" {
		if err := os.MkdirAll(c.SVGDir, 0o755); err != nil {
			return fmt.Errorf("--svg-dir: %w", err)
		}
	}
	t0 := time.Now()
	label := ""
	if c.SemiSync {
		label = " (semi-sync)"
	}
	rows, err := benchLab(ctx, c, c.common, faults, label, w, t0)
	if err != nil {
		return err
	}
	if c.SemiSyncKill && !c.SemiSync {
		kill, _ := lab.FaultByName("kill")
		o := c.common
		o.SemiSync = true
		more, err := benchLab(ctx, c, o, []lab.Fault{kill}, " (semi-sync)", w, t0)
		if err != nil {
			return err
		}
		rows = append(rows, more...)
	}
	vrrp := "keepalived.conf: advert_int 1"
	if c.FastVRRP {
		vrrp = "keepalived-fast.conf: VRRPv3, advert_int 0.25"
	}
	fmt.Fprintf(w, "\nWrite-unavailability window per fault over %d run(s), %d writers per path (%s, track file,\n"+
		"vrrp_script interval 1 fall 2 rise 2; notify: %s). Figures, not assertions.\n\n", c.Runs, c.Writers, vrrp,
		map[bool]string{true: "lab stand-in toggling read_only", false: "cmd/notify"}[c.StandIn])
	fmt.Fprintf(w, "%-24s %15s %15s %15s %9s %9s %5s %5s %14s %10s %6s\n", "fault", "window med/worst", "via VIP",
		"via proxy", "VIP moved", "promotion", "lost", "late", "both writable", "(recovery)", "failed")
	for _, r := range rows {
		fmt.Fprintf(w, "%-24s %6.2fs/%6.2fs %6.2fs/%6.2fs %6.2fs/%6.2fs %8.2fs %8.2fs %5d %5d %10d/%d run %8d/%d %4d/%d\n", r.name,
			median(r.gap).Seconds(), worst(r.gap).Seconds(), median(r.vipGap).Seconds(), worst(r.vipGap).Seconds(),
			median(r.proxyGap).Seconds(), worst(r.proxyGap).Seconds(), median(r.vipMove).Seconds(), median(r.promotion).Seconds(),
			r.lost, r.late, r.both, len(r.gap), r.bothRecovery, len(r.gap), r.failed, c.Runs)
	}
	fmt.Fprintf(w, "\n(window = longest time without any successful write, both paths merged; via VIP / via proxy per path;\n"+
		"median/worst of the runs. VIP moved = fault until the VIP is on the peer (detection and VRRP hand-over), median;\n"+
		"promotion = notify's MASTER run there (fence the peer, catch-up gate, open writes), median. lost = acknowledged\n"+
		"writes missing on a node after recovery, late = writes the old writer acknowledged after the new one had\n"+
		"acknowledged one, both summed over the runs; both writable = runs in which the sampler saw two nodes with\n"+
		"read_only=OFF during the failover, or while the fault was undone)\n")
	return nil
}

// benchRow is one fault's figures over the runs.
type benchRow struct {
	name                                      string
	gap, vipGap, proxyGap, vipMove, promotion []time.Duration
	both, bothRecovery, failed, lost, late    int
}

// benchLab starts a lab with o and runs each fault c.Runs times on it.
func benchLab(ctx context.Context, c *benchCmd, o common, faults []lab.Fault, label string, w io.Writer, t0 time.Time) ([]*benchRow, error) {
	l, closeLab, err := startLab(ctx, o, w, t0)
	if err != nil {
		return nil, err
	}
	defer closeLab()
	var rows []*benchRow
	for _, f := range faults {
		r := &benchRow{name: f.Name + label}
		rows = append(rows, r)
		for i := range c.Runs {
			rec := newRecorder(l)
			res, err := l.RunFailover(ctx, f, rec.hooks(ctx, lab.Hooks{Writers: c.Writers}))
			rec.finish()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fmt.Fprintf(w, "[%6.1fs] run %d/%d%s %s\n", time.Since(t0).Seconds(), i+1, c.Runs, label, res)
			if c.SVGDir != "" && res.From != "" {
				svg := filepath.Join(c.SVGDir, fmt.Sprintf("%s-%d.svg", slug(r.name), i+1))
				tl := rec.timeline(f, res, err, fmt.Sprintf("run %d of %d%s", i+1, c.Runs, label))
				if perr := writePicture(svg, tl); perr != nil {
					fmt.Fprintf(w, "           %v\n", perr)
				} else {
					fmt.Fprintf(w, "           picture: %s\n", svg)
				}
			}
			if err != nil {
				r.failed++
				fmt.Fprintf(w, "           verification failed: %v\n%s\n", err, l.Diagnostics())
				if rerr := l.Recover(ctx, 90*time.Second); rerr != nil {
					return nil, errors.Join(err, rerr)
				}
				if res.MaxGap == 0 {
					continue
				}
			}
			r.gap = append(r.gap, res.MaxGap)
			r.vipGap = append(r.vipGap, res.VIPGap)
			r.proxyGap = append(r.proxyGap, res.ProxyGap)
			r.vipMove = append(r.vipMove, res.VIPMoved)
			r.promotion = append(r.promotion, res.Promotion)
			r.lost += res.Lost
			r.late += res.LateAcks
			if len(res.Sampler.BothWritable) > 0 {
				r.both++
			}
			if len(res.RecoverySampler.BothWritable) > 0 {
				r.bothRecovery++
			}
		}
	}
	return rows, nil
}

// slug makes a scenario's name a file name: "kill (semi-sync)" is
// "kill-semi-sync".
func slug(name string) string {
	return strings.Trim(nonName.ReplaceAllString(name, "-"), "-")
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9_.]+`)

func worst(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
