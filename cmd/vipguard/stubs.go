package main

import (
	"context"
	"io"

	"github.com/vipguard/vipguard/internal/cli"
)

type switchoverCmd struct{}

func (switchoverCmd) run(ctx context.Context, g *cli.Globals, w io.Writer) error { return nil }
