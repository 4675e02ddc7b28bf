package main

import (
	"context"
	"fmt"
	"io"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/doctor"
)

type doctorCmd struct {
	JSON           bool   `help:"Print one JSON document: {\"worst\": ..., \"results\": [...]}."`
	KeepalivedConf string `default:"/etc/keepalived/keepalived.conf" placeholder:"FILE" help:"keepalived's configuration to check (skipped when absent)."`
	HAProxyCfg     string `name:"haproxy-cfg" default:"/etc/haproxy/haproxy.cfg" placeholder:"FILE" help:"HAProxy's configuration to check (skipped when absent)."`
}

func (d *doctorCmd) run(ctx context.Context, g *cli.Globals, stdout io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	rs := doctor.Run(ctx, cfg, doctor.Options{KeepalivedConf: d.KeepalivedConf, HAProxyConf: d.HAProxyCfg})
	if d.JSON {
		b, err := doctor.JSON(rs)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		for _, r := range rs {
			fmt.Fprintln(stdout, cli.Printable(r.String()))
		}
	}
	switch doctor.Worst(rs) {
	case doctor.Fail:
		return errProblem
	case doctor.Warn:
		return errWarning
	}
	return nil
}
