package fence

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
)

func TestParseFIFOLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		ev   Event
		bad  bool
	}{
		{`INSTANCE "VI_1" MASTER 100`, true, Event{"INSTANCE", "VI_1", "MASTER", 100}, false},
		{`GROUP "my group" BACKUP 0`, true, Event{"GROUP", "my group", "BACKUP", 0}, false},
		{`INSTANCE VI_2 FAULT 90`, true, Event{"INSTANCE", "VI_2", "FAULT", 90}, false},
		{`INSTANCE "VI_1" STOP`, true, Event{"INSTANCE", "VI_1", "STOP", 0}, false},
		{`VS "10.0.0.1:80" UP`, false, Event{}, false},
		{`RS "10.0.0.2:80" "10.0.0.1:80" DOWN`, false, Event{}, false},
		{``, false, Event{}, false},
		{`INSTANCE "VI_1 MASTER 100`, false, Event{}, true},
		{`INSTANCE "VI_1" MASTER 100 extra`, false, Event{}, true},
		{`INSTANCE "VI_1" MASTER x`, false, Event{}, true},
	} {
		ev, ok, err := ParseFIFOLine(tc.line)
		if ok != tc.ok || ev != tc.ev || (err != nil) != tc.bad {
			t.Errorf("%q: %+v %v %v", tc.line, ev, ok, err)
		}
	}
}

func FuzzParseFIFOLine(f *testing.F) {
	f.Add(`INSTANCE "VI_1" MASTER 100`)
	f.Add(`GROUP "G" BACKUP 0`)
	f.Fuzz(func(t *testing.T, line string) {
		ev, ok, err := ParseFIFOLine(line)
		if ok && (err != nil || ev.Name == "" || (ev.Type != "INSTANCE" && ev.Type != "GROUP")) {
			t.Fatalf("%q: %+v %v", line, ev, err)
		}
	})
}

func TestReadLineSurvivesGarbage(t *testing.T) {
	in := strings.Repeat("x", 200000) + "\nINSTANCE \"VI_1\" BACKUP 100\r\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 4096)
	var got []string
	for {
		l, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if strings.Join(got, "|") != `|INSTANCE "VI_1" BACKUP 100|last` {
		t.Fatalf("%q", got)
	}
}

// The FIFO reader keeps going past garbage and events of other instances,
// records each event's generation as it arrives, and handles it. No server
// is running: the fence fails to connect, which is recorded as such.
func TestServeFIFO(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.MySQL.Socket = filepath.Join(t.TempDir(), "none.sock")
	cfg.Notify.Instance = "VI_1"
	e := &Engine{Cfg: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r, w := io.Pipe()
	go func() {
		io.WriteString(w, strings.Repeat("#", 100000)+"\n")
		io.WriteString(w, "INSTANCE \"OTHER\" MASTER 100\n")
		io.WriteString(w, "INSTANCE \"VI_1\" FAULT 100\n")
		w.Close()
	}()
	if err := e.ServeFIFO(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	d := state.Dir(cfg.StateDir)
	g, err := d.Generation()
	if err != nil || g.N != 1 || g.Event != "FAULT" {
		t.Fatalf("generation %+v %v", g, err)
	}
	o, err := d.Outcome()
	if err != nil || o == nil || o.Event != "FAULT" || o.Phase != "failed" || o.Unfit {
		t.Fatalf("outcome %+v %v", o, err)
	}
}
