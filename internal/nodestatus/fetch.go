package nodestatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// maxDocument bounds what Fetch reads: a document is a few KiB.
const maxDocument = 256 << 10

// Fetch reads the document agentcheck serves at addr ("host:port"), within
// timeout. An error says why in the operator's terms (nothing listens, the
// peer's allow-list closed the connection, an agentcheck too old to serve
// it); a peer that cannot be read is never a healthy one.
func Fetch(ctx context.Context, addr string, timeout time.Duration) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+Path, nil)
	if err != nil {
		return nil, fmt.Errorf("agentcheck %q: %w", addr, err)
	}
	// No proxy from the environment, no keep-alive: one request, to the
	// peer itself.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: (&net.Dialer{}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("agentcheck %s: %s", addr, describeFetchError(err, timeout))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, fmt.Errorf("agentcheck %s: reading the answer: %w", addr, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("agentcheck %s has no %s: upgrade vipguard there", addr, Path)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("agentcheck %s answered %s", addr, resp.Status)
	case len(body) > maxDocument:
		return nil, fmt.Errorf("agentcheck %s: answer larger than %d bytes", addr, maxDocument)
	}
	return Decode(body)
}

// Decode parses a document.
func Decode(body []byte) (*Status, error) {
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("unreadable status document: %w", err)
	}
	if st.Format != Format {
		return nil, fmt.Errorf("status document format %d, this vipguard reads %d: run the same version on both nodes", st.Format, Format)
	}
	return &st, nil
}

func describeFetchError(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: agentcheck does not run there (systemctl status vipguard-agentcheck), or the port is wrong ([peer] agent, [agent] http_listen)"
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return "closed the connection without answering: is this host's address in that agentcheck's [agent] allow?"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Sprintf("no answer within %s (peer down, or a firewall drops the port)", timeout)
	}
	return err.Error()
}
