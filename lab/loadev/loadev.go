// Package loadev is the wire format between the lab and its load generator
// (tools/vgload): one JSON Event per line on vgload's stdout.
package loadev

// Event is one line of vgload's output.
type Event struct {
	Type string  `json:"type"` // tick, slow, summary, error
	T    float64 `json:"t"`    // unix seconds
	// Per path ("vip", "proxy"): cumulative counts and the server that took
	// the last write.
	OK     map[string]int64 `json:"ok,omitempty"`
	Err    map[string]int64 `json:"err,omitempty"`
	Server map[string]int   `json:"server,omitempty"`
	// Gap is how long since the last successful write on any path; MaxGap
	// the longest such window so far, and when it started.
	Gap         float64            `json:"gap"`
	MaxGap      float64            `json:"max_gap"`
	MaxGapStart float64            `json:"max_gap_start,omitempty"`
	PathMaxGap  map[string]float64 `json:"path_max_gap,omitempty"`
	LastErr     map[string]string  `json:"last_err,omitempty"`
	// Slow statement outcome.
	OKSlow bool    `json:"ok_slow,omitempty"`
	Took   float64 `json:"took,omitempty"`
	Msg    string  `json:"msg,omitempty"`
	// A retried slow statement ("slow-retry"): the first attempt's error,
	// how many retries, and the last retry's result ("ok", "duplicate" or
	// its error).
	FirstErr    string `json:"first_err,omitempty"`
	Retries     int    `json:"retries,omitempty"`
	RetryResult string `json:"retry_result,omitempty"`
	// Summary: acknowledged writes, and the idle connections still alive
	// by server_id ("dead" for those that are not).
	Acked int            `json:"acked,omitempty"`
	Idle  map[string]int `json:"idle,omitempty"`
}
