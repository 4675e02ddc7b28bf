// Command vgreset is a failover-lab diagnostic: run in a node's namespace
// (ip netns exec), it does what notify's fence does for stale VIP clients
// (internal/tcpreset.Reset: one out-of-window segment from VIP:port per
// connection still in the node's socket table, then the local sockets
// closed), at a moment the lab chooses, and logs what it did on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/vipguard/vipguard/internal/tcpreset"
)

func main() {
	vip := flag.String("vip", "", "the VIP whose stale clients to reset")
	flag.Parse()
	if *vip == "" {
		fmt.Fprintln(os.Stderr, "vgreset: error: give --vip")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := tcpreset.Reset(ctx, *vip, log); err != nil {
		fmt.Fprintf(os.Stderr, "vgreset: error: %v\n", err)
		os.Exit(1)
	}
}
