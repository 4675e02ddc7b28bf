package agent

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
)

// processStart stands in for the process's start time: package variables
// are set before main runs.
var processStart = time.Now()

// Metrics counts what the agent did, for /metrics. Counters are atomics
// indexed by small enums, so counting a check costs nothing measurable and
// no label ever comes from client input.
type Metrics struct {
	polls    [2]atomic.Uint64 // ok, error
	pollSum  atomic.Int64     // nanoseconds
	pollBkts [len(pollBuckets)]atomic.Uint64
	checks   [numRoles][numVerdicts]atomic.Uint64
	kinds    [2]atomic.Uint64
	rejected [numRejects]atomic.Uint64
	slow     [numSlowReasons]atomic.Uint64
	open     atomic.Int64
	lastOK   atomic.Int64 // unix ns of the last successful poll
	node     atomic.Pointer[nodeLabels]
	keeper   keeperMetrics
	promos   promotionCount
}

// Reasons a connection ends without an answer.
type reject int

const (
	rejectLimit   reject = iota // over max_conns, or out of descriptors
	rejectBad                   // oversized, truncated or garbage request
	rejectTimeout               // io_timeout passed
	numRejects
)

var rejectNames = [numRejects]string{"limit", "bad_request", "timeout"}

var pollBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

func (m *Metrics) observePoll(st *State) {
	if st.Err == nil {
		m.polls[0].Add(1)
	} else {
		m.polls[1].Add(1)
	}
	if st.Err == nil && st.Snapshot != nil {
		m.lastOK.Store(st.At.UnixNano())
	}
	m.pollSum.Add(int64(st.Took))
	for i, b := range pollBuckets {
		if st.Took.Seconds() <= b {
			m.pollBkts[i].Add(1)
		}
	}
}

func (m *Metrics) countCheck(k Kind, a Answer) {
	m.checks[a.Role][a.Verdict].Add(1)
	m.kinds[k].Add(1)
}

// Polls returns the number of polls so far (ok and failed).
func (m *Metrics) Polls() uint64 { return m.polls[0].Load() + m.polls[1].Load() }

// Write renders the Prometheus text exposition format.
func (m *Metrics) Write(in Input, pol Policy) []byte {
	var b bytes.Buffer
	help := func(name, typ, text string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
	}
	help("vipguard_build_info", "gauge", "Always 1; the labels say which build answers.")
	fmt.Fprintf(&b, "vipguard_build_info{version=%q,goversion=%q} 1\n", cli.VersionString(), runtime.Version())
	help("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.")
	fmt.Fprintf(&b, "process_start_time_seconds %s\n", strconv.FormatFloat(float64(processStart.UnixMilli())/1e3, 'f', 3, 64))

	help("vipguard_agent_polls_total", "counter", "MySQL polls by result.")
	fmt.Fprintf(&b, "vipguard_agent_polls_total{result=\"ok\"} %d\n", m.polls[0].Load())
	fmt.Fprintf(&b, "vipguard_agent_polls_total{result=\"error\"} %d\n", m.polls[1].Load())

	help("vipguard_agent_poll_duration_seconds", "histogram", "Duration of MySQL polls.")
	for i, le := range pollBuckets {
		fmt.Fprintf(&b, "vipguard_agent_poll_duration_seconds_bucket{le=\"%s\"} %d\n", ftoa(le), m.pollBkts[i].Load())
	}
	n := m.Polls()
	fmt.Fprintf(&b, "vipguard_agent_poll_duration_seconds_bucket{le=\"+Inf\"} %d\n", n)
	fmt.Fprintf(&b, "vipguard_agent_poll_duration_seconds_sum %s\n", ftoa(time.Duration(m.pollSum.Load()).Seconds()))
	fmt.Fprintf(&b, "vipguard_agent_poll_duration_seconds_count %d\n", n)

	help("vipguard_agent_checks_total", "counter", "Checks answered by role and verdict.")
	for r := RoleWriter; r < numRoles; r++ {
		for v := Down; v < numVerdicts; v++ {
			if c := m.checks[r][v].Load(); c > 0 || (r <= RoleReadOnly && v <= Up) {
				fmt.Fprintf(&b, "vipguard_agent_checks_total{role=%q,verdict=%q} %d\n", r.String(), v.String(), c)
			}
		}
	}
	help("vipguard_agent_requests_total", "counter", "Checks answered by protocol.")
	fmt.Fprintf(&b, "vipguard_agent_requests_total{protocol=\"agent\"} %d\n", m.kinds[KindAgent].Load())
	fmt.Fprintf(&b, "vipguard_agent_requests_total{protocol=\"http\"} %d\n", m.kinds[KindHTTP].Load())
	help("vipguard_agent_connections_dropped_total", "counter", "Connections closed without an answer, by reason.")
	for i := reject(0); i < numRejects; i++ {
		fmt.Fprintf(&b, "vipguard_agent_connections_dropped_total{reason=%q} %d\n", rejectNames[i], m.rejected[i].Load())
	}
	help("vipguard_agent_slow_path_total", "counter", "Checks handed from the fast path to the general one, by reason.")
	for i := range m.slow {
		fmt.Fprintf(&b, "vipguard_agent_slow_path_total{reason=%q} %d\n", slowNames[i], m.slow[i].Load())
	}
	help("vipguard_agent_open_connections", "gauge", "Check connections being served.")
	fmt.Fprintf(&b, "vipguard_agent_open_connections %d\n", m.open.Load())

	st := in.Poll
	fresh := st != nil && in.Now.Sub(st.At) <= pol.StaleAfter
	ok := fresh && st.Err == nil && st.Snapshot != nil
	help("vipguard_agent_mysql_up", "gauge", "1 when the last poll succeeded and is fresh.")
	fmt.Fprintf(&b, "vipguard_agent_mysql_up %d\n", b2i(ok))
	if st != nil {
		help("vipguard_agent_state_age_seconds", "gauge", "Age of the cached state.")
		fmt.Fprintf(&b, "vipguard_agent_state_age_seconds %s\n", ftoa(in.Now.Sub(st.At).Seconds()))
	}
	help("vipguard_agent_maintenance", "gauge", "1 when the maintenance flag is on.")
	fmt.Fprintf(&b, "vipguard_agent_maintenance %d\n", b2i(in.Maintenance.On))
	if ok {
		s := st.Snapshot
		help("vipguard_agent_writable", "gauge", "1 when read_only is OFF.")
		fmt.Fprintf(&b, "vipguard_agent_writable %d\n", b2i(s.Writable()))
		r := Decide(pol, RoleReader, in, 0)
		if r.Lag != nil {
			help("vipguard_agent_replication_lag_seconds", "gauge", "Replication lag the reader answer used.")
			fmt.Fprintf(&b, "vipguard_agent_replication_lag_seconds %s\n", ftoa(r.Lag.Seconds()))
		}
	}
	m.writeState(&b, in, pol, ok)
	help("vipguard_agent_up", "gauge", "1 when the role would be answered up (drain counts as up).")
	for _, r := range []Role{RoleWriter, RoleReader, RoleReadOnly, RoleHealth, RoleLiveness, RoleReadiness} {
		a := Decide(pol, r, in, 0)
		fmt.Fprintf(&b, "vipguard_agent_up{role=%q} %d\n", r.String(), b2i(a.Verdict == Up || a.Verdict == Drain))
	}
	return b.Bytes()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ftoa(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
