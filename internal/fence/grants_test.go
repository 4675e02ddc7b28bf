package fence

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// readmeGrants returns the GRANT statements of the README's grant block
// whose heading comment starts with heading, for account.
func readmeGrants(t *testing.T, heading, account string) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "-- "+heading)
	if i < 0 {
		t.Fatalf("README has no grant block %q", heading)
	}
	block := text[i:]
	if j := strings.Index(block, "\n\n"); j >= 0 {
		block = block[:j]
	}
	var out []string
	for _, st := range strings.Split(block, ";") {
		st = strings.Join(strings.Fields(regexp.MustCompile(`(?m)--.*$`).ReplaceAllString(st, "")), " ")
		if strings.HasPrefix(st, "GRANT ") {
			out = append(out, strings.ReplaceAll(st, "'vipguard'@'localhost'", account))
		}
	}
	if len(out) < 2 {
		t.Fatalf("README block %q: grants %q", heading, out)
	}
	return out
}

// The README's MariaDB grants are exactly enough: with an account holding
// only them, the check reads the standby, a fence ends a client session
// and a promotion fences the peer and opens writes.
func TestRealREADMEGrantsMariaDB(t *testing.T) {
	const user, pass = "vgreadme", "vgreadme-pass"
	grants := readmeGrants(t, "MariaDB 10.5.9 and later", fmt.Sprintf("'%s'@'%%'", user))
	// Semi-sync on both sides of both nodes, as my.cnf would: the fence
	// and the promotion switch the source side by role with these grants.
	ss := mariadbtest.Options{Args: []string{"--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON"}}
	a, b := pair(t, mariadbtest.PairOptions{A: ss, B: ss})
	ctx := context.Background()
	for _, n := range []*node{a, b} {
		stmts := append([]string{"SET SESSION sql_log_bin=0", fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, pass)}, grants...)
		if err := n.s.Exec(ctx, stmts...); err != nil {
			t.Fatal(err)
		}
		n.cfg.MySQL.Host, n.cfg.MySQL.Port, n.cfg.MySQL.User, n.cfg.MySQL.Password = n.s.Host, n.s.Port, user, pass
		n.cfg.Peer.User, n.cfg.Peer.Password = user, pass
	}
	if err := b.s.SyncWith(ctx, a.s, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// mysqlcheck's read of the standby.
	if v := check.Run(ctx, b.cfg); !v.Fit {
		t.Fatalf("check with the README grants: %s", v.Reason)
	}
	idleSession(t, a.s)
	if err := a.event(ctx, "BACKUP"); err != nil {
		t.Fatalf("fence with the README grants: %v", err)
	}
	if n := count(t, a.s, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"); n != 0 {
		t.Fatalf("%d app sessions left", n)
	}
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promotion with the README grants: %v", err)
	}
	if b.readOnly(t) || !a.readOnly(t) {
		t.Fatalf("after promotion: a read_only=%v, b read_only=%v", a.readOnly(t), b.readOnly(t))
	}
	if count(t, a.s, "SELECT @@global.rpl_semi_sync_master_enabled") != 0 || count(t, b.s, "SELECT @@global.rpl_semi_sync_master_enabled") != 1 {
		t.Fatalf("semi-sync source side after promotion: a %d, b %d (want 0, 1)",
			count(t, a.s, "SELECT @@global.rpl_semi_sync_master_enabled"), count(t, b.s, "SELECT @@global.rpl_semi_sync_master_enabled"))
	}
}
