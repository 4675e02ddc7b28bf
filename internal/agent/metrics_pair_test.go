package agent

import (
	"strings"
	"testing"
)

// The pair named in the config labels the node on /metrics, from start
// and after a reload.
func TestMetricsPairFromConfig(t *testing.T) {
	cfg := testConfig(t, `socket = "/nonexistent/mysqld.sock"`, `pair = "orders"`)
	srv, addr := startServer(t, cfg)
	if m := ask(t, addr, "GET /metrics HTTP/1.0\r\n\r\n"); !strings.Contains(m, `vipguard_node_info{pair="orders"`) {
		t.Fatalf("no pair label:\n%s", m)
	}
	cfg2 := testConfig(t, `socket = "/nonexistent/mysqld.sock"`, `pair = "billing"`)
	srv.SetConfig(cfg2)
	if m := ask(t, addr, "GET /metrics HTTP/1.0\r\n\r\n"); !strings.Contains(m, `vipguard_node_info{pair="billing"`) {
		t.Fatalf("pair not reloaded:\n%s", m)
	}
}
