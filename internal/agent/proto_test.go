package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func read(s string) (Request, error) {
	return ReadRequest(bufio.NewReader(strings.NewReader(s)))
}

func TestReadAgentRequest(t *testing.T) {
	tests := []struct {
		in      string
		role    Role
		maxLag  time.Duration
		problem string
	}{
		{"writer\n", RoleWriter, 0, ""},
		{"WRITER\r\n", RoleWriter, 0, ""},
		{"  primary \n", RoleWriter, 0, ""},
		{"reader\n", RoleReader, 0, ""},
		{"reader max_lag=5\n", RoleReader, 5 * time.Second, ""},
		{"reader,max_lag=0.5\n", RoleReader, 500 * time.Millisecond, ""},
		{"reader max_lag=-1\n", RoleUnknown, 0, "max_lag"},
		{"reader max_lag=30s\n", RoleReader, 30 * time.Second, ""},
		{"reader max_lag=1m30s\n", RoleReader, 90 * time.Second, ""},
		{"reader max_lag=250ms\n", RoleReader, 250 * time.Millisecond, ""},
		{"reader max_lag=-5s\n", RoleUnknown, 0, "max_lag"},
		{"reader max_lag=0s\n", RoleUnknown, 0, "max_lag"},
		{"reader max_lag=1e-300\n", RoleUnknown, 0, "max_lag"}, // would round to 0, the default
		{"reader max_lag=999999999h\n", RoleUnknown, 0, "max_lag"},
		{"reader max_lag=NaN\n", RoleUnknown, 0, "max_lag"},
		{"reader color=red\n", RoleUnknown, 0, "unknown option"},
		{"read-only\n", RoleReadOnly, 0, ""},
		{"health\n", RoleHealth, 0, ""},
		{"writer", RoleWriter, 0, ""}, // no line ending, then EOF (half-close)
		{"\n", RoleUnknown, 0, "no role"},
		{"bogus\n", RoleUnknown, 0, "unknown role"},
		{"\x00\xff\n", RoleUnknown, 0, "unknown role"},
	}
	for _, tt := range tests {
		r, err := read(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if r.Kind != KindAgent || r.Role != tt.role || r.MaxLag != tt.maxLag || !strings.Contains(r.Problem, tt.problem) || (tt.problem == "" && r.Problem != "") {
			t.Fatalf("%q: got %+v, want role %v max_lag %v problem %q", tt.in, r, tt.role, tt.maxLag, tt.problem)
		}
	}
	for _, bad := range []string{"", strings.Repeat("w", MaxAgentLine+1) + "\n", strings.Repeat("x", 20000)} {
		if r, err := read(bad); err == nil {
			t.Fatalf("%.20q...: no error, got %+v", bad, r)
		}
	}
}

func TestReadHTTPRequest(t *testing.T) {
	tests := []struct {
		in     string
		method string
		role   Role
		status int
		maxLag time.Duration
	}{
		{"GET /primary HTTP/1.1\r\nHost: x\r\n\r\n", "GET", RoleWriter, 0, 0},
		{"HEAD /master HTTP/1.0\r\n\r\n", "HEAD", RoleWriter, 0, 0},
		{"OPTIONS /read-write HTTP/1.0\r\n\r\n", "OPTIONS", RoleWriter, 0, 0},
		{"GET /replica?max_lag=10 HTTP/1.1\r\n\r\n", "GET", RoleReader, 0, 10 * time.Second},
		{"GET /replica?max_lag=x HTTP/1.1\r\n\r\n", "GET", RoleUnknown, 400, 0},
		{"GET /replica?max_lag=30s HTTP/1.1\r\n\r\n", "GET", RoleReader, 0, 30 * time.Second},
		{"GET /reader?max_lag=1m HTTP/1.1\r\n\r\n", "GET", RoleReader, 0, time.Minute},
		{"GET /reader HTTP/1.1\r\n\r\n", "GET", RoleReader, 0, 0},
		{"GET /writer HTTP/1.1\r\n\r\n", "GET", RoleWriter, 0, 0},
		{"GET /writer?max_lag=1m HTTP/1.1\r\n\r\n", "GET", RoleUnknown, 400, 0},
		{"GET /primary?max_lag=1 HTTP/1.1\r\n\r\n", "GET", RoleUnknown, 400, 0},
		{"GET /read-only HTTP/1.1\n\n", "GET", RoleReadOnly, 0, 0},
		{"GET /health HTTP/1.1\r\n\r\n", "GET", RoleHealth, 0, 0},
		{"GET /liveness HTTP/1.1\r\n\r\n", "GET", RoleLiveness, 0, 0},
		{"GET /readiness HTTP/1.1\r\n\r\n", "GET", RoleReadiness, 0, 0},
		{"GET /metrics HTTP/1.1\r\n\r\n", "GET", RoleMetrics, 0, 0},
		{"OPTIONS / HTTP/1.0\r\n\r\n", "OPTIONS", RoleUnknown, 404, 0},
		{"POST /primary HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "POST", RoleUnknown, 405, 0},
		{"DELETE /maintenance HTTP/1.1\r\n\r\n", "DELETE", RoleUnknown, 405, 0},
		{"GET /" + strings.Repeat("a", 1000) + " HTTP/1.1\r\n\r\n", "GET", RoleUnknown, 404, 0},
	}
	for _, tt := range tests {
		r, err := read(tt.in)
		if err != nil {
			t.Fatalf("%.40q: %v", tt.in, err)
		}
		if r.Kind != KindHTTP || r.Method != tt.method || r.Role != tt.role || r.Status != tt.status || r.MaxLag != tt.maxLag {
			t.Fatalf("%.40q: got %+v", tt.in, r)
		}
	}
	for _, bad := range []string{
		"GET /primary HTTP/1.1\r\nHost: x\r\n",                                 // no end of head
		"GET /primary HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 100) + "\r\n", // too many headers
		"GET /primary HTTP/1.1\r\nX: " + strings.Repeat("y", MaxHTTPHead) + "\r\n\r\n",
		"GET /" + strings.Repeat("a", MaxHTTPHead) + " HTTP/1.1\r\n\r\n",
		"GET  /primary HTTP/1.1\r\n\r\n",
		"get /primary HTTP/1.1\r\n\r\n",
		"GET /primary HTTP/2.0\r\n\r\n",
	} {
		if r, err := read(bad); err == nil && r.Kind == KindHTTP {
			t.Fatalf("%.40q: accepted as %+v", bad, r)
		}
	}
}

func TestHTTPResponse(t *testing.T) {
	a := Answer{Role: RoleReader, Verdict: Up, Weight: 80, Reason: "lag \"5s\"\n\x01", Age: time.Second}
	var b bytes.Buffer
	if err := WriteHTTP(&b, Request{Kind: KindHTTP, Method: "GET"}, a.HTTPStatus(), "application/json", a.JSON()); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	body := `{"check":"reader","status":"up","weight":80,"state_age_seconds":1.000,"reason":"lag \"5s\""}` + "\n"
	want := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", len(body)) + body
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	b.Reset()
	_ = WriteHTTP(&b, Request{Kind: KindHTTP, Method: "HEAD"}, 503, "application/json", []byte("{}"))
	if !strings.HasPrefix(b.String(), "HTTP/1.1 503 Service Unavailable\r\n") || !strings.HasSuffix(b.String(), "\r\n\r\n") {
		t.Fatalf("HEAD: %q", b.String())
	}
}

// checkRequest holds the invariants of any parsed request.
func checkRequest(t *testing.T, data []byte, r Request, err error) {
	if err != nil {
		return
	}
	if r.Role < 0 || r.Role >= numRoles || r.MaxLag < 0 {
		t.Fatalf("%q: out of range %+v", data, r)
	}
	if r.Kind == KindHTTP && r.Status == 0 && httpPaths[r.Path] != r.Role {
		t.Fatalf("%q: path %q answered as %v", data, r.Path, r.Role)
	}
	if r.Kind == KindAgent && r.Role == RoleUnknown && r.Problem == "" {
		t.Fatalf("%q: unknown role without a problem", data)
	}
	// Whatever was asked, the answer must stay one clean line.
	a := Answer{Role: r.Role, Verdict: Down, Weight: -1, Reason: r.Problem}
	line := a.AgentLine()
	if strings.Count(line, "\n") != 1 || strings.ContainsAny(strings.TrimSuffix(line, "\n"), "\r\x00") {
		t.Fatalf("%q: reply %q", data, line)
	}
	var b bytes.Buffer
	_ = WriteHTTP(&b, r, 400, "application/json", errorBody(r.Problem))
	if bytes.Count(b.Bytes(), []byte("\r\n\r\n")) != 1 {
		t.Fatalf("%q: response %q has a forged header", data, b.Bytes())
	}
}

func FuzzAgentRequest(f *testing.F) {
	for _, s := range []string{"writer\n", "reader max_lag=3\n", "READ-ONLY\r\n", "reader", "\n", "x,y,z\n", "reader max_lag=1e300\n", "\xff\xfe\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		checkRequest(t, data, r, err)
		p := ParseAgentLine(data)
		checkRequest(t, data, p, nil)
	})
}

func FuzzHTTPRequest(f *testing.F) {
	for _, s := range []string{
		"GET /primary HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS / HTTP/1.0\r\n\r\n", "HEAD /replica?max_lag=2.5 HTTP/1.1\r\n\r\n",
		"GET /replica?max_lag=1&max_lag=2 HTTP/1.1\r\n\r\n", "GET /replica?%zz HTTP/1.1\r\n\r\n", "POST /health HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.0\n\n", "GET /primary HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		checkRequest(t, data, r, err)
		if err == nil && r.Kind == KindHTTP && len(data) > MaxHTTPHead+MaxAgentLine {
			head, _, _ := bytes.Cut(data, []byte("\n\n"))
			if h2, _, _ := bytes.Cut(data, []byte("\r\n\r\n")); len(h2) < len(head) {
				head = h2
			}
			if len(head) > MaxHTTPHead+2 {
				t.Fatalf("accepted a %d-byte head", len(head))
			}
		}
	})
}

// FuzzJSONString: whatever a reason holds (quotes, backslashes, control
// and non-ASCII bytes), the JSON rendering is valid JSON that decodes to
// the cleaned reason, and leaves what came before it alone.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", `a"b\c`, "x\x00\ny\t", "\\\"\\", "é€\xff", strings.Repeat(`"`, 50)} {
		f.Add(s, 20)
	}
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = 1 + abs(limit)%500
		prefix := []byte(`{"k":"\"",`)
		b := appendJSONString(bytes.Clone(prefix), s, limit)
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("prefix overwritten: %q", b)
		}
		var got string
		if err := json.Unmarshal(b[len(prefix):], &got); err != nil {
			t.Fatalf("%q -> %q: %v", s, b[len(prefix):], err)
		}
		if want := clean(s, limit); got != want {
			t.Fatalf("%q: decoded %q, want %q", s, got, want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
