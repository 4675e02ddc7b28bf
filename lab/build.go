package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const modulePath = "github.com/vipguard/vipguard"

// ModuleRoot finds the vipguard source tree from the working directory
// upwards (tests run in lab/, the demo from the root).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 20 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("not inside the vipguard source tree (no go.mod of %s above the working directory)", modulePath)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// HasNotify reports whether cmd/notify exists in the tree.
func HasNotify(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cmd", "notify"))
	return err == nil
}

// build compiles the binaries the lab runs into binDir, static and trimmed
// as they ship: mysqlcheck, agentcheck, the operator's vipguard, the load
// generator, the stale-client reset diagnostic, and notify when asked.
func build(ctx context.Context, root, binDir string, notify bool) error {
	pkgs := []string{"./cmd/mysqlcheck", "./cmd/agentcheck", "./cmd/vipguard", "./tools/vgload", "./tools/vgreset"}
	if notify {
		if !HasNotify(root) {
			return errors.New("notify requested but cmd/notify does not exist yet")
		}
		pkgs = append(pkgs, "./cmd/notify")
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := append([]string{"build", "-trimpath", "-o", binDir + "/"}, pkgs...)
	cmd := exec.CommandContext(bctx, goTool(), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	ents, err := os.ReadDir(binDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Chmod(filepath.Join(binDir, e.Name()), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// naiveNotify is the lab's stand-in for cmd/notify (Options.StandIn):
// today's reality, a notify that only toggles read_only (no fence, no
// promotion gate, no stale-client reset). It retries for a bounded time so a
// frozen mysqld gets the change once thawed. It logs one line per event.
//
// STAND-IN ONLY: so that agentcheck (which trusts a writable node only after
// notify completed a promotion there) can be exercised before cmd/notify is
// used, it also writes the outcome file cmd/notify writes
// (state_dir/outcome.json, internal/state.Outcome): role "writer", phase
// "done" after a MASTER that opened writes, role "standby" otherwise. It
// promises nothing cmd/notify promises; the file says so in its reason.
const naiveNotify = `#!/bin/sh
# Lab STAND-IN for vipguard notify: what most installations run, it only toggles
# read_only, then records the outcome agentcheck reads.
# Args: SOCKET LOGFILE STATEDIR, then keepalived's TYPE NAME STATE PRIORITY.
sock=$1 log=$2 statedir=$3 state=$6
case "$state" in
MASTER) ro=OFF role=writer ;;
*) ro=ON role=standby ;;
esac
i=0
while [ $i -lt 30 ]; do
	if out=$(timeout 5 mariadb --no-defaults -S "$sock" -u root --connect-timeout=2 -e "SET GLOBAL read_only=$ro" 2>&1); then
		tmp="$statedir/.outcome.json.$$"
		printf '{"event":"%s","phase":"done","role":"%s","unfit":false,"reason":"lab stand-in notify: read_only=%s only, no fence, no promotion gate","at":"%s"}\n' \
			"$state" "$role" "$ro" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >"$tmp" && mv -f "$tmp" "$statedir/outcome.json"
		echo "$(date +%s.%N) $state read_only=$ro ok" >>"$log"
		exit 0
	fi
	i=$((i+1))
	sleep 0.5
done
echo "$(date +%s.%N) $state read_only=$ro FAILED: $out" >>"$log"
exit 1
`
