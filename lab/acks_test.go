package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseAcks(t *testing.T) {
	acks, err := parseAcks("a 1 1000000000\n\nb 2 2000000001\n")
	if err != nil || len(acks) != 2 || acks[1] != (Ack{Key: "b", Server: 2, At: time.Unix(2, 1)}) {
		t.Fatalf("got %+v, %v", acks, err)
	}
	for _, bad := range []string{"a 1\n", "a x 1\n", "a 1 y\n", "a 1 2 3\n"} {
		if _, err := parseAcks(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestLateAcks(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(100, int64(ms)*int64(time.Millisecond)) }
	cases := []struct {
		name string
		acks []Ack
		late int
	}{
		{"clean hand-over", []Ack{{"a", 1, at(0)}, {"b", 1, at(10)}, {"c", 2, at(900)}, {"d", 2, at(910)}}, 0},
		{"old writer acknowledged after the new one", []Ack{{"a", 1, at(0)}, {"c", 2, at(900)}, {"x", 1, at(2500)}}, 1},
		{"order in the file does not matter", []Ack{{"c", 2, at(900)}, {"x", 1, at(950)}, {"a", 1, at(0)}, {"b", 2, at(800)}}, 1},
		{"the new writer never answered", []Ack{{"a", 1, at(0)}, {"b", 1, at(3000)}}, 0},
		{"an old ack at the same instant is not late", []Ack{{"a", 1, at(900)}, {"c", 2, at(900)}}, 0},
	}
	for _, c := range cases {
		if got := LateAcks(c.acks, 1, 2); len(got) != c.late {
			t.Errorf("%s: %d late (%+v), want %d", c.name, len(got), got, c.late)
		}
	}
}

func TestPromotionTook(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notify.log")
	log := `time=2026-12-02T09:00:30.000Z level=INFO msg="step done" prog=notify event=MASTER gen=10 step=promote took=2.5s caught_up=true
time=2026-12-02T09:00:34.709Z level=INFO msg="step start" prog=notify event=MASTER gen=11 step=promote policy=reliability
time=2026-12-02T09:00:35.017Z level=INFO msg="step done" prog=notify event=MASTER gen=11 step=promote took=308.46ms caught_up=true
time=2026-12-02T09:00:35.018Z level=INFO msg="step done" prog=notify event=MASTER gen=11 step=gate took=1ms met=true
`
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 12, 2, 9, 0, 32, 0, time.UTC)
	if got := promotionTook(p, since); got != 308460*time.Microsecond {
		t.Errorf("got %s, want 308.46ms (the promotion after since, not the gate step)", got)
	}
	if got := promotionTook(p, since.Add(time.Minute)); got != 0 {
		t.Errorf("no promotion after since: got %s", got)
	}
	if got := promotionTook(filepath.Join(t.TempDir(), "none"), since); got != 0 {
		t.Errorf("missing log: got %s", got)
	}
}
