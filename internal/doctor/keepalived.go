package doctor

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/config"
)

// KeepalivedPath is where keepalived reads its configuration.
const KeepalivedPath = "/etc/keepalived/keepalived.conf"

// Block is one statement of keepalived.conf: its keyword, the words after
// it, and, for a block, what is inside the braces.
type Block struct {
	Key      string
	Args     []string
	Children []*Block
}

// child returns the first child with key.
func (b *Block) child(key string) *Block {
	for _, c := range b.Children {
		if c.Key == key {
			return c
		}
	}
	return nil
}

func (b *Block) children(key string) []*Block {
	var out []*Block
	for _, c := range b.Children {
		if c.Key == key {
			out = append(out, c)
		}
	}
	return out
}

// ParseKeepalived reads keepalived.conf into a tree: statements end at a
// line end, "{" opens a block and "}" closes it, "#" and "!" start
// comments, double quotes group words. include is not followed.
func ParseKeepalived(data []byte) (*Block, error) {
	root := &Block{Key: "(root)"}
	stack := []*Block{root}
	var cur *Block // the statement being read on this line
	for n, line := range strings.Split(string(data), "\n") {
		toks, err := tokens(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		cur = nil
		for _, t := range toks {
			top := stack[len(stack)-1]
			switch t {
			case "{":
				if cur == nil {
					cur = &Block{}
					top.Children = append(top.Children, cur)
				}
				stack = append(stack, cur)
				cur = nil
			case "}":
				if len(stack) == 1 {
					return nil, fmt.Errorf("line %d: unbalanced }", n+1)
				}
				stack = stack[:len(stack)-1]
				cur = nil
			default:
				if cur == nil {
					cur = &Block{Key: t}
					top.Children = append(top.Children, cur)
				} else {
					cur.Args = append(cur.Args, t)
				}
			}
		}
	}
	if len(stack) != 1 {
		return nil, fmt.Errorf("%d unclosed block(s)", len(stack)-1)
	}
	return root, nil
}

func tokens(line string) ([]string, error) {
	var out []string
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || c == '!':
			return out, nil
		case c == '{' || c == '}':
			out = append(out, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unclosed quote")
			}
			out = append(out, line[i+1:i+1+j])
			i += j + 2
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t\r{}\"", rune(line[j])) {
				j++
			}
			out = append(out, line[i:j])
			i = j
		}
	}
	return out, nil
}

// PathOwner is one component of a script's path as stat saw it.
type PathOwner struct {
	Path string
	UID  uint32
	Mode fs.FileMode
	Err  error
}

// StatPath stats every component of path, from / down.
func StatPath(path string) []PathOwner {
	var out []PathOwner
	p := filepath.Clean(path)
	for {
		po := PathOwner{Path: p}
		fi, err := os.Stat(p)
		if err != nil {
			po.Err = err
		} else if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			po.UID, po.Mode = st.Uid, fi.Mode()
		}
		out = append([]PathOwner{po}, out...)
		if p == "/" || p == "." {
			return out
		}
		p = filepath.Dir(p)
	}
}

// KeepalivedInput is what the keepalived checks look at.
type KeepalivedInput struct {
	Path string
	// Conf is the parsed file; Err why there is none (fs.ErrNotExist:
	// keepalived is configured elsewhere, the checks are skipped).
	Conf *Block
	Err  error
	// ConfigPath is the vipguard configuration the scripts must name.
	ConfigPath   string
	CheckTimeout time.Duration
	// Owners stats a script's path (StatPath; tests give their own).
	Owners func(path string) []PathOwner
}

// CheckKeepalived checks keepalived.conf against what vipguard needs.
func CheckKeepalived(in KeepalivedInput) []Result {
	const n = "host"
	if in.Err != nil {
		if os.IsNotExist(in.Err) {
			return []Result{bad(Skip, n, "keepalived.conf", "run vipguard doctor on each keepalived node, or name the file with --keepalived-conf", "%s does not exist here", in.Path)}
		}
		return []Result{bad(Fail, n, "keepalived.conf", "", "cannot read %s: %v", in.Path, in.Err)}
	}
	var rs []Result
	gd := in.Conf.child("global_defs")
	if gd != nil && gd.child("enable_script_security") != nil {
		rs = append(rs, ok(n, "keepalived.script_security", "enable_script_security on"))
	} else {
		rs = append(rs, bad(Fail, n, "keepalived.script_security", "add enable_script_security to global_defs",
			"enable_script_security is off: a script path others can write is a root shell"))
	}
	// The vrrp_script that runs mysqlcheck.
	var script *Block
	var name string
	for _, s := range in.Conf.children("vrrp_script") {
		if sc := s.child("script"); sc != nil && len(sc.Args) > 0 && strings.Contains(sc.Args[0], "mysqlcheck") {
			script = s
			if len(s.Args) > 0 {
				name = s.Args[0]
			}
			break
		}
	}
	if script == nil {
		return append(rs, bad(Fail, n, "keepalived.vrrp_script", "add a vrrp_script running /usr/libexec/vipguard/mysqlcheck (examples/keepalived/keepalived.conf)",
			"no vrrp_script runs mysqlcheck: nothing moves the VIP off an unfit node"))
	}
	argv := strings.Fields(script.child("script").Args[0])
	rs = append(rs, checkScriptConfig(n, "keepalived.vrrp_script", argv, in.ConfigPath))
	if t := script.child("timeout"); t == nil || len(t.Args) == 0 {
		rs = append(rs, bad(Warn, n, "keepalived.timeout", fmt.Sprintf("set timeout in vrrp_script %s above [check] timeout (%s)", name, in.CheckTimeout),
			"vrrp_script %s sets no timeout", name))
	} else if secs, err := strconv.ParseFloat(t.Args[0], 64); err != nil || time.Duration(secs*float64(time.Second)) <= in.CheckTimeout {
		rs = append(rs, bad(Fail, n, "keepalived.timeout", fmt.Sprintf("raise timeout in vrrp_script %s above %s, or lower [check] timeout", name, in.CheckTimeout),
			"vrrp_script %s timeout %s is not above [check] timeout %s: keepalived kills the check before it answers", name, t.Args[0], in.CheckTimeout))
	} else {
		rs = append(rs, ok(n, "keepalived.timeout", "%ss, above [check] timeout %s", t.Args[0], in.CheckTimeout))
	}
	weightFix := "weight 0 in vrrp_script " + name + ": a failing check must put the node in FAULT"
	weightAt := len(rs)
	if w := script.child("weight"); w != nil && len(w.Args) > 0 && w.Args[0] != "0" {
		rs = append(rs, bad(Fail, n, "keepalived.weight", weightFix, "vrrp_script %s weight %s: an unfit holder only loses priority, and with nopreempt keeps the VIP", name, w.Args[0]))
	} else {
		rs = append(rs, ok(n, "keepalived.weight", "weight 0"))
	}
	if script.child("init_fail") != nil {
		rs = append(rs, ok(n, "keepalived.init_fail", "init_fail"))
	} else {
		rs = append(rs, bad(Warn, n, "keepalived.init_fail", "add init_fail to vrrp_script "+name,
			"no init_fail: a node counts as fit before its first check"))
	}
	// The instance that tracks it.
	var inst *Block
	for _, vi := range in.Conf.children("vrrp_instance") {
		if ts := vi.child("track_script"); ts != nil {
			for _, c := range ts.Children {
				if c.Key == name {
					inst = vi
					if i := slices.Index(c.Args, "weight"); i >= 0 && i+1 < len(c.Args) && c.Args[i+1] != "0" {
						rs[weightAt] = bad(Fail, n, "keepalived.weight", weightFix, "track_script overrides the weight of %s with %s", name, c.Args[i+1])
					}
				}
			}
		}
	}
	if inst == nil {
		return append(rs, bad(Fail, n, "keepalived.track_script", "list "+name+" in the vrrp_instance's track_script",
			"no vrrp_instance tracks %s: its verdict moves nothing", name))
	}
	iname := strings.Join(inst.Args, " ")
	rs = append(rs, ok(n, "keepalived.track_script", "vrrp_instance %s tracks %s", iname, name))
	st := inst.child("state")
	switch {
	case inst.child("nopreempt") == nil:
		rs = append(rs, bad(Warn, n, "keepalived.nopreempt", "add nopreempt (and state BACKUP) to vrrp_instance "+iname,
			"vrrp_instance %s preempts: a node that comes back takes the VIP from a healthy writer", iname))
	case st == nil || len(st.Args) == 0 || !strings.EqualFold(st.Args[0], "BACKUP"):
		rs = append(rs, bad(Warn, n, "keepalived.nopreempt", "state BACKUP in vrrp_instance "+iname,
			"nopreempt without state BACKUP is ignored by keepalived"))
	default:
		rs = append(rs, ok(n, "keepalived.nopreempt", "nopreempt, state BACKUP"))
	}
	// notify: the instance's notify line, or global_defs' FIFO script.
	var notify []string
	for _, key := range []string{"notify", "notify_master"} {
		if c := inst.child(key); c != nil && len(c.Args) > 0 && strings.Contains(c.Args[0], "notify") {
			notify = strings.Fields(c.Args[0])
			break
		}
	}
	if notify == nil && gd != nil {
		if c := gd.child("vrrp_notify_fifo_script"); c != nil && len(c.Args) > 0 && strings.Contains(c.Args[0], "notify") {
			notify = strings.Fields(c.Args[0])
		}
	}
	if notify == nil {
		rs = append(rs, bad(Fail, n, "keepalived.notify", "add notify \"/usr/libexec/vipguard/notify -c "+in.ConfigPath+"\" to vrrp_instance "+iname,
			"no notify runs vipguard's notify: nothing fences the old writer or gates the promotion"))
	} else {
		rs = append(rs, checkScriptConfig(n, "keepalived.notify", notify, in.ConfigPath))
	}
	// Script paths: enable_script_security refuses what others could replace.
	for _, a := range [][]string{argv, notify} {
		if len(a) == 0 {
			continue
		}
		rs = append(rs, checkScriptPath(n, a[0], in.Owners))
	}
	return rs
}

// checkScriptConfig: a script must run with this configuration.
func checkScriptConfig(n, check string, argv []string, configPath string) Result {
	got := ""
	for i, a := range argv {
		switch {
		case (a == "-c" || a == "--config") && i+1 < len(argv):
			got = argv[i+1]
		case strings.HasPrefix(a, "--config="):
			got = strings.TrimPrefix(a, "--config=")
		}
	}
	want := configPath
	shown := got
	if got == "" {
		shown = "(default " + config.DefaultPath + ")"
		got = config.DefaultPath
	}
	if filepath.Clean(got) != filepath.Clean(want) {
		return bad(Fail, n, check, "run it with -c "+want,
			"%s runs with config %s, not %s", argv[0], shown, want)
	}
	return ok(n, check, "%s -c %s", argv[0], want)
}

func checkScriptPath(n, path string, owners func(string) []PathOwner) Result {
	const check = "keepalived.script_path"
	if !filepath.IsAbs(path) {
		return bad(Fail, n, check, "name the script by its absolute path", "%s is not an absolute path", path)
	}
	for _, po := range owners(path) {
		switch {
		case po.Err != nil:
			return bad(Fail, n, check, "install vipguard's package, or fix the path", "%s: %v", po.Path, po.Err)
		case po.UID != 0:
			return bad(Fail, n, check, "chown root "+po.Path, "%s is owned by uid %d: keepalived's enable_script_security refuses the script", po.Path, po.UID)
		case po.Mode.Perm()&0o022 != 0 && po.Mode&fs.ModeSticky == 0:
			return bad(Fail, n, check, "chmod go-w "+po.Path, "%s is writable by group or others (mode %04o)", po.Path, po.Mode.Perm())
		}
	}
	return ok(n, check, "%s: root-owned all the way down", path)
}
