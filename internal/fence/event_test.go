package fence

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
)

// An event that asks nothing is never recorded: recording it would
// supersede a fence or promotion in progress.
func TestBumpSkipsUnknownState(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	e := &Engine{Cfg: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if g, err := e.Bump(ctx, Event{Type: "INSTANCE", Name: "VI_1", State: "BACKUP"}); err != nil || g != 1 {
		t.Fatalf("BACKUP: %d %v", g, err)
	}
	if g, err := e.Bump(ctx, Event{Type: "INSTANCE", Name: "VI_1", State: "BOGUS"}); err != nil || g != 0 {
		t.Fatalf("BOGUS: %d %v", g, err)
	}
	if ok, err := state.Dir(cfg.StateDir).Current(1); !ok || err != nil {
		t.Fatalf("the BACKUP run was superseded: %v %v", ok, err)
	}
}
