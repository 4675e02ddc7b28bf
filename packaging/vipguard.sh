#!/bin/sh
# vipguard: the operator's short command for the vipguard tools, which live
# under /usr/libexec/vipguard/ where keepalived and HAProxy's agent point.
# Options (-c FILE, --reason TEXT, ...) pass through to the tool unchanged.
set -eu
libexec=/usr/libexec/vipguard

usage() {
	cat <<'USAGE'
Usage: vipguard [-c FILE] COMMAND [ARGS...]

Commands:
  maint on|off|status [--reason TEXT]
                 maintenance switch of this node: on makes it unfit for the
                 VIP (keepalived moves the VIP away) and drains it in HAProxy
  status         what agentcheck would answer HAProxy now, and why
  check [--nagios] [-q]
                 mysqlcheck's verdict: is this node fit to hold the VIP?
  version        the installed version
  help           this text

The tools themselves (mysqlcheck, notify, agentcheck): /usr/libexec/vipguard/.
Configuration: /etc/vipguard/vipguard.toml (or -c FILE). See vipguard(8).
USAGE
}

# Find the command word; everything else (flags before or after it) is
# handed to the tool as given.
cmd=""
n=$#
i=0
while [ "$i" -lt "$n" ]; do
	a=$1
	shift
	i=$((i + 1))
	if [ -z "$cmd" ]; then
		case $a in
		-c | --config)
			set -- "$@" "$a"
			if [ "$i" -lt "$n" ]; then
				set -- "$@" "$1"
				shift
				i=$((i + 1))
			fi
			continue
			;;
		-h | --help) a=help ;;
		--version) a=version ;;
		esac
		case $a in
		-*) ;;
		*)
			cmd=$a
			continue
			;;
		esac
	fi
	set -- "$@" "$a"
done

case $cmd in
maint) exec "$libexec/agentcheck" maint "$@" ;;
status) exec "$libexec/agentcheck" status "$@" ;;
check)
	# Help and usage errors then say "vipguard check", as typed.
	export VIPGUARD_AS=vipguard
	exec "$libexec/mysqlcheck" check "$@"
	;;
version) exec "$libexec/agentcheck" --version ;;
help)
	usage
	exit 0
	;;
"")
	usage >&2
	exit 80
	;;
*)
	echo "vipguard: error: unknown command \"$cmd\"" >&2
	echo "vipguard: hint: vipguard help" >&2
	exit 80
	;;
esac
