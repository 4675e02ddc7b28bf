package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kernel update", "kernel update"},
		{"disk – swap ✓", "disk – swap ✓"},
		{"\x1b[2J\x1b[31mred", `\x1b[2J\x1b[31mred`},
		{"a\r\nb\tc\x00", `a\x0d\x0ab\x09c\x00`},
		{"\x7f\xff", `\x7f\xff`},
		{"\u202eevil", `\u202eevil`}, // right-to-left override
		{"\u009b31m", `\u009b31m`},   // C1 control sequence introducer
	} {
		if got := Printable(tc.in); got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A reason (or a "by") written into state_dir reaches the operator's
// terminal escaped: it cannot clear the screen or fake a line.
func TestDescribeMaintenanceEscapes(t *testing.T) {
	got := DescribeMaintenance(state.Maintenance{On: true, Since: time.Unix(0, 0), By: "eve\x1b]0;x\x07",
		Reason: "ok\rmaintenance: off\x1b[K"})
	if strings.ContainsAny(got, "\x1b\r\x07") {
		t.Fatalf("control bytes reach the terminal: %q", got)
	}
	if want := `maintenance: on since 1970-01-01T00:00:00Z by eve\x1b]0;x\x07 (ok\x0dmaintenance: off\x1b[K)`; got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
