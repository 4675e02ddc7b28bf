package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
)

// Limits on what a client may send. HAProxy's agent-send is one short word
// and its httpchk request a few hundred bytes; anything near these limits is
// not a health check.
const (
	MaxAgentLine   = 256
	MaxHTTPHead    = 8 << 10
	maxHTTPHeaders = 64
	// maxLagLimit bounds ?max_lag= so that its conversion cannot overflow.
	maxLagLimit = 1e7
)

// Kind tells the two protocols apart.
type Kind int

const (
	KindAgent Kind = iota
	KindHTTP
)

// Request is one parsed check.
type Request struct {
	Kind Kind
	Role Role
	// MaxLag overrides the reader lag limit when positive.
	MaxLag time.Duration
	// HTTP only.
	Method, Path, Proto string
	// Status, when non-zero, is the HTTP error to answer instead of a
	// check (400, 404, 405); Problem says why.
	Status  int
	Problem string
	// StatusDoc asks for the node's status document (status_json.go).
	StatusDoc bool
}

// Errors that end a connection without an answer.
var (
	ErrTooLong    = errors.New("request too long")
	ErrIncomplete = errors.New("connection closed before a complete request")
)

// ReadRequest reads one check: an agent line ("writer\n") or an HTTP
// request head. Requests that cannot be answered sensibly (oversized,
// truncated, binary garbage) return an error and get no answer.
func ReadRequest(r *bufio.Reader) (Request, error) {
	line, err := readLine(r, MaxAgentLine)
	if errors.Is(err, ErrTooLong) {
		// Long first lines are still acceptable HTTP request lines.
		line, err = readRest(r, line, MaxHTTPHead)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 && !looksHTTP(line) {
			// agent-send without a line ending, then a half-close.
			return ParseAgentLine(line), nil
		}
		return Request{}, err
	}
	if looksHTTP(line) {
		return readHTTP(r, line)
	}
	if len(line) > MaxAgentLine {
		return Request{}, ErrTooLong
	}
	return ParseAgentLine(line), nil
}

// readLine reads up to and excluding "\n" (and a "\r" before it). It
// returns the bytes read so far with ErrTooLong past limit, or with io.EOF
// when the peer closed first.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				return nil, ErrIncomplete
			}
			return line, err
		}
		if b == '\n' {
			return bytes.TrimSuffix(line, []byte{'\r'}), nil
		}
		line = append(line, b)
		if len(line) > limit {
			return line, ErrTooLong
		}
	}
}

func readRest(r *bufio.Reader, prefix []byte, limit int) ([]byte, error) {
	rest, err := readLine(r, limit-len(prefix))
	line := append(prefix, rest...)
	if err != nil && !errors.Is(err, ErrIncomplete) {
		return line, err
	}
	if errors.Is(err, ErrIncomplete) {
		return line, io.EOF
	}
	return line, nil
}

// looksHTTP reports whether line is an HTTP/1.x request line.
func looksHTTP(line []byte) bool {
	i := bytes.LastIndexByte(line, ' ')
	return i > 0 && bytes.HasPrefix(line[i+1:], []byte("HTTP/1."))
}

// ParseAgentLine parses what HAProxy's agent-send sent: a role word,
// optionally followed by "max_lag=LIMIT" (reader only, see parseLag). Words are
// separated by spaces, tabs or commas, case-insensitively, like the
// agent's own reply grammar.
func ParseAgentLine(line []byte) Request {
	req := Request{Kind: KindAgent}
	words := strings.FieldsFunc(strings.ToLower(string(line)), func(r rune) bool {
		return r == ' ' || r == '\t' || r == ',' || r == '\r'
	})
	if len(words) == 0 {
		req.Problem = errNoRole.Error() + " (set agent-send, e.g. \"writer\\n\")"
		return req
	}
	req.Role = agentRoles[words[0]]
	if req.Role == RoleUnknown {
		req.Problem = fmt.Sprintf("unknown role %q", clean(words[0], 32))
		return req
	}
	for _, w := range words[1:] {
		v, ok := strings.CutPrefix(w, "max_lag=")
		if !ok {
			req.Role, req.Problem = RoleUnknown, fmt.Sprintf("unknown option %q", clean(w, 32))
			return req
		}
		d, err := parseLag(v)
		if err != nil {
			req.Role, req.Problem = RoleUnknown, err.Error()
			return req
		}
		req.MaxLag = d
	}
	return req
}

var agentRoles = map[string]Role{
	"writer": RoleWriter, "primary": RoleWriter, "master": RoleWriter, "read-write": RoleWriter,
	"reader": RoleReader, "replica": RoleReader, "slave": RoleReader,
	"read-only": RoleReadOnly, "readonly": RoleReadOnly,
	"health": RoleHealth, "liveness": RoleLiveness, "readiness": RoleReadiness,
}

// httpPaths are the agent's role words as paths, so that one name works in
// both checks.
var httpPaths = map[string]Role{
	"/writer": RoleWriter, "/primary": RoleWriter, "/master": RoleWriter, "/read-write": RoleWriter,
	"/reader": RoleReader, "/replica": RoleReader, "/read-only": RoleReadOnly,
	"/health": RoleHealth, "/liveness": RoleLiveness, "/readiness": RoleReadiness,
	"/metrics": RoleMetrics,
}

// parseLag reads a lag limit written as in the configuration ("30s",
// "1m30s") or, as it always was, as a bare number of seconds ("30").
// A limit that rounds to zero is refused: zero means "the default".
func parseLag(v string) (time.Duration, error) {
	bad := fmt.Errorf("max_lag %q must be a duration above 0 (\"30s\", \"1m\") or a number of seconds", clean(v, 32))
	var d time.Duration
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || f <= 0 || f > maxLagLimit {
			return 0, bad
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var cd config.Duration
		if cd.UnmarshalText([]byte(v)) != nil || cd.Seconds() > maxLagLimit {
			return 0, bad
		}
		d = cd.Duration
	}
	if d <= 0 {
		return 0, bad
	}
	return d, nil
}

// readHTTP parses the request line and skips the headers, bounded in size
// and count. Bodies are never read: checks have none, and the connection
// is closed after the answer.
func readHTTP(r *bufio.Reader, line []byte) (Request, error) {
	req := Request{Kind: KindHTTP}
	parts := strings.Split(string(line), " ")
	if len(parts) != 3 {
		return req, fmt.Errorf("malformed request line")
	}
	req.Method, req.Proto = parts[0], parts[2]
	if req.Proto != "HTTP/1.0" && req.Proto != "HTTP/1.1" {
		return req, fmt.Errorf("unsupported protocol")
	}
	if !validMethod(req.Method) {
		return req, fmt.Errorf("malformed method")
	}
	size := len(line)
	for n := 0; ; n++ {
		h, err := readLine(r, MaxHTTPHead-size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = ErrIncomplete
			}
			return req, err
		}
		size += len(h) + 2
		if len(h) == 0 {
			break
		}
		if n >= maxHTTPHeaders || size > MaxHTTPHead {
			return req, ErrTooLong
		}
	}
	parseTarget(&req, parts[1])
	return req, nil
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func parseTarget(req *Request, target string) {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS":
	default:
		req.Status, req.Problem = 405, "method not allowed (GET, HEAD, OPTIONS)"
		return
	}
	path, rawQuery, _ := strings.Cut(target, "?")
	req.Path = path
	if path == nodestatus.Path {
		req.StatusDoc = true
		if rawQuery != "" {
			req.Status, req.Problem = 400, "the status document takes no query parameters"
		}
		return
	}
	role, ok := httpPaths[path]
	if !ok {
		req.Status, req.Problem = 404, "no such check (try /writer, /reader, /read-only, /health, /liveness, /readiness, /metrics)"
		return
	}
	req.Role = role
	if rawQuery == "" {
		return
	}
	defer func() {
		if req.Status != 0 {
			req.Role = RoleUnknown
		}
	}()
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		req.Status, req.Problem = 400, "malformed query string"
		return
	}
	for k, vs := range q {
		if k != "max_lag" || role != RoleReader || len(vs) != 1 {
			req.Status, req.Problem = 400, fmt.Sprintf("unknown query parameter %q", clean(k, 32))
			return
		}
		d, err := parseLag(vs[0])
		if err != nil {
			req.Status, req.Problem = 400, err.Error()
			return
		}
		req.MaxLag = d
	}
}

// AgentLine renders an answer in HAProxy's agent-check grammar: health
// and weight words only (never ready/drain/maint, see the package doc),
// then a "#" description HAProxy shows in its logs and stats.
func (a Answer) AgentLine() string { return string(a.appendAgentLine(nil)) }

// The append forms below build answers without fmt: the fast path renders
// one per check into a reused buffer.

func (a Answer) appendAgentLine(b []byte) []byte {
	switch a.Verdict {
	case Up, Drain:
		b = append(b, "up"...)
		if a.Weight >= 0 {
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(a.Weight), 10)
			b = append(b, '%')
		}
	default:
		b = append(b, "down"...)
	}
	if a.Reason != "" {
		n := len(b)
		b = append(b, " #"...)
		b = append(b, a.Verdict.String()...)
		b = append(b, ": "...)
		m := len(b)
		if b = appendClean(b, a.Reason, 160); len(b) == m {
			b = b[:n] // nothing printable in the reason
		}
	}
	return append(b, '\n')
}

// HTTPStatus is the status an HTTP check gets: 200 up; 404 drain, which
// HAProxy's "http-check disable-on-404" turns into a drain (without it, a
// failed check); 503 down and maint.
func (a Answer) HTTPStatus() int {
	switch a.Verdict {
	case Up:
		return 200
	case Drain:
		return 404
	}
	return 503
}

// JSON renders the short body of an HTTP answer.
func (a Answer) JSON() []byte { return a.appendJSON(nil) }

func (a Answer) appendJSON(b []byte) []byte {
	b = append(b, `{"check":"`...)
	b = append(b, a.Role.String()...)
	b = append(b, `","status":"`...)
	b = append(b, a.Verdict.String()...)
	b = append(b, '"')
	if a.Weight >= 0 {
		b = append(b, `,"weight":`...)
		b = strconv.AppendInt(b, int64(a.Weight), 10)
	}
	if a.Lag != nil {
		b = append(b, `,"lag_seconds":`...)
		b = strconv.AppendFloat(b, a.Lag.Seconds(), 'f', -1, 64)
	}
	if a.Age >= 0 {
		b = append(b, `,"state_age_seconds":`...)
		b = strconv.AppendFloat(b, a.Age.Seconds(), 'f', 3, 64)
	}
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, a.Reason, 400)
	return append(b, "}\n"...)
}

// appendJSONString quotes s, cleaned (printable ASCII, see appendClean),
// as a JSON string.
func appendJSONString(b []byte, s string, limit int) []byte {
	b = append(b, '"')
	start := len(b)
	b = appendClean(b, s, limit)
	// Escape in place from the end: only '"' and '\\' need it.
	for i := len(b) - 1; i >= start; i-- {
		if c := b[i]; c == '"' || c == '\\' {
			b = append(b, 0)
			copy(b[i+1:], b[i:])
			b[i] = '\\'
		}
	}
	return append(b, '"')
}

var statusText = map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

// WriteHTTP writes one complete response and announces the close.
func WriteHTTP(w io.Writer, req Request, status int, contentType string, body []byte) error {
	_, err := w.Write(appendHTTP(nil, req, status, contentType, body))
	return err
}

func appendHTTP(b []byte, req Request, status int, contentType string, body []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, statusText[status]...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nCache-Control: no-store\r\nConnection: close\r\n"...)
	if status == 405 || req.Method == "OPTIONS" {
		b = append(b, "Allow: GET, HEAD, OPTIONS\r\n"...)
	}
	b = append(b, "\r\n"...)
	if req.Method != "HEAD" {
		b = append(b, body...)
	}
	return b
}

// errorBody is the JSON of a request that was not a check.
func errorBody(problem string) []byte { return appendErrorBody(nil, problem) }

func appendErrorBody(b []byte, problem string) []byte {
	b = append(b, `{"status":"error","reason":`...)
	b = appendJSONString(b, problem, 200)
	return append(b, "}\n"...)
}
