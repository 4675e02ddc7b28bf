package agent

import (
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
)

// /metrics says which build answers and since when, as Prometheus
// exporters do: a restart or an upgrade shows on a dashboard.
func TestMetricsBuildInfoAndStartTime(t *testing.T) {
	defer func(v string) { cli.Version = v }(cli.Version)
	cli.Version = "v1.2.3"
	body := string(new(Metrics).Write(Input{Now: time.Now()}, Policy{}))

	want := `(?m)^# TYPE vipguard_build_info gauge\nvipguard_build_info\{version="v1\.2\.3",goversion="` + regexp.QuoteMeta(runtime.Version()) + `"\} 1$`
	if !regexp.MustCompile(want).MatchString(body) {
		t.Errorf("no build info line matching %s in:\n%s", want, body)
	}
	m := regexp.MustCompile(`(?m)^# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ([0-9.]+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no process_start_time_seconds in:\n%s", body)
	}
	start, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(time.UnixMilli(int64(start * 1e3))); age < 0 || age > 10*time.Minute {
		t.Fatalf("process_start_time_seconds %s is %s ago", m[1], age)
	}
}
