#!/bin/sh
# gen-man.sh BIN_DIR OUT_DIR VERSION DATE: writes vipguard-<tool>.8 for each
# tool from what cannot drift from the code: the command's package comment
# (go doc) and its --help output, top level and per subcommand. Run by
# scripts/package.sh from the repository root; the pages are gzipped there.
set -eu
bin=$1 out=$2 version=$3 date=$4
mkdir -p "$out"

# roff: escape backslashes, and protect lines starting with . or '.
verbatim() { sed -e 's/\\/\\e/g' -e 's/^/\\\&/'; }

for tool in mysqlcheck notify agentcheck; do
	page=$out/vipguard-$tool.8
	summary=$("$bin/$tool" --help | sed -n 3p)
	{
		printf '.TH VIPGUARD-%s 8 "%s" "vipguard %s" "vipguard"\n' \
			"$(echo "$tool" | tr a-z A-Z)" "$date" "$version"
		printf '.SH NAME\nvipguard-%s \\- %s\n' "$tool" "$(printf %s "$summary" | sed 's/\.$//')"
		printf '.SH SYNOPSIS\n.B /usr/libexec/vipguard/%s\n.RI [ options ] " command " [ args ]\n' "$tool"
		printf '.SH DESCRIPTION\n.nf\n'
		go doc "./cmd/$tool" | verbatim
		printf '.fi\n.SH USAGE\n.nf\n'
		"$bin/$tool" --help | verbatim
		for sub in $("$bin/$tool" --help | sed -n '/^Commands:/,/^Run /s/^  \([a-z][a-z-]*\) .*/\1/p'); do
			printf '\n'
			"$bin/$tool" "$sub" --help | verbatim
		done
		printf '.fi\n.SH FILES\n'
		printf '.TP\n.I /etc/vipguard/vipguard.toml\nthe configuration of all three tools\n'
		printf '.TP\n.I /var/lib/vipguard\nstate_dir: maintenance flag, notify'"'"'s last outcome\n'
		printf '.SH SEE ALSO\n.BR vipguard (8),\n.BR vipguard-mysqlcheck (8),\n.BR vipguard-notify (8),\n.BR vipguard-agentcheck (8),\n.BR keepalived.conf (5),\n.BR haproxy (1)\n'
		printf '.PP\n/usr/share/doc/vipguard/README.md and examples/\n'
	} >"$page"
done
