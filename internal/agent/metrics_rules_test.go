package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

// Every series the shipped alert rules and dashboard name is one
// agentcheck emits: a renamed or dropped series would leave an alert that
// never fires, and promtool's rule tests, fed with hand-written series,
// cannot see that.
func TestMetricsCoverRulesAndDashboard(t *testing.T) {
	now := time.Now()
	emitted := map[string]bool{}
	add := func(body string) {
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(body, -1) {
			emitted[m[1]] = true
		}
	}
	// A standby in maintenance with channels and an outcome, and a
	// writer: between them, every series the node can show.
	add(stateMetrics(t, "p", Input{Poll: &State{Snapshot: standbySnapshot(), At: now}, Now: now, LoopAlive: true,
		Maintenance: state.Maintenance{On: true, Since: now},
		Outcome:     &state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby, At: now}}))
	m := new(Metrics)
	m.observePoll(&State{Snapshot: &probe.Snapshot{}, At: now})
	m.keeper.lastSight.Store(now.UnixNano())
	writer := &probe.Snapshot{SemiSync: &probe.SemiSync{Available: true, Source: true, SourceEnabled: true}}
	add(string(m.Write(Input{Poll: &State{Snapshot: writer, At: now}, Now: now,
		Outcome: &state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, SemiSync: state.SemiSyncKept, At: now}},
		Policy{StaleAfter: time.Second})))
	srv := NewServer(benchConfig(t), discardLog())
	add(string(srv.appendLearnMetrics(srv.allowMetrics.appendTo(nil))))

	files := []string{
		filepath.Join("..", "..", "examples", "prometheus", "vipguard-alerts.yml"),
		filepath.Join("..", "..", "examples", "grafana", "vipguard-dashboard.json"),
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := regexp.MustCompile(`\b(?:vipguard|process)_[a-z_]+\b`).FindAllString(string(b), -1)
		if len(used) < 10 {
			t.Fatalf("%s names only %d vipguard series", f, len(used))
		}
		for _, name := range used {
			if !emitted[strings.TrimSuffix(name, "_")] {
				t.Errorf("%s uses %s, which agentcheck's /metrics does not have", f, name)
			}
		}
	}
}
