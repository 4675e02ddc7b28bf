// Package clitest builds a vipguard command once per test binary and runs
// it the way keepalived, HAProxy or an operator does, so that the CLI
// contract (exit codes, one-line messages) is tested on the real binary.
package clitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Main builds the package in the current directory as name, stores its path
// in *bin, runs the tests and removes the build. Call it from TestMain.
func Main(m *testing.M, name string, bin *string) {
	dir, err := os.MkdirTemp("", "vgbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	*bin = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", *bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Result is what one run of a command left behind.
type Result struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// Run runs bin with args (and stdin, when not empty) under ctx.
func Run(t testing.TB, ctx context.Context, stdin, bin string, args ...string) Result {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: o.String(), Stderr: e.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}
