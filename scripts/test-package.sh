#!/bin/sh
# test-package.sh: builds vipguard's packages and proves them by installing
# the .deb on this machine (root, Debian 12):
#
#   - builds deb and rpm (scripts/package.sh) twice: byte-identical
#   - lintian: no errors (warnings and overrides are listed)
#   - the .rpm's file list (rpm -qlp) against the expected set; its licence
#     tag, %license and %doc files, and Suggests; rpmlint clean (each
#     accepted tag explained in packaging/rpmlint.toml); the .rpm
#     installed, upgraded over an edited config and erased in a scratch root
#   - licences: every module linked into the binaries (go version -m) is in
#     the deb's copyright file and in the rpm's THIRD-PARTY-LICENSES
#   - dpkg -i: paths, owners and modes (enable_script_security), the
#     conffile, nothing enabled, unit files verified by systemd-analyze
#   - the installed binaries from their installed paths: --version,
#     mysqlcheck against a throwaway mariadbd, maintenance via vipguard(8)
#   - agentcheck started with the ExecStart line parsed from the installed
#     unit, under the unit's hardening emulated (read-only /, state_dir
#     writable, no capabilities, no_new_privs) with a NOTIFY_SOCKET: READY,
#     WATCHDOG, RELOADING on SIGHUP, STOPPING; HTTP and agent checks
#   - the same ExecStart under socket activation (systemd-socket-activate)
#   - upgrades over a locally edited conffile with --force-confold: kept,
#     and the new upstream version set aside as .dpkg-dist
#   - dpkg -r and dpkg -P: nothing left behind, admin's unit symlinks gone
#
# systemd is not PID 1 here, so units are never started through systemctl.
# Cleans up after itself (the package is purged, the server stopped, also on
# failure) and refuses to run if vipguard is already installed. Prints
# "package: N passed, M failed" last; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.." || exit 1

pass=0
fail=0
ok() {
	pass=$((pass + 1))
	echo "ok    $*"
}
bad() {
	fail=$((fail + 1))
	echo "FAIL  $*"
}
# check DESC CMD...: one test; the command's output is shown on failure.
check() {
	desc=$1
	shift
	if "$@" >"$tmp/check.out" 2>&1; then
		ok "$desc"
	else
		bad "$desc"
		sed 's/^/      /' "$tmp/check.out" | tail -20
	fi
}
finish() {
	echo "package: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit $?
}
# fatal DESC: a step the rest depends on failed.
fatal() {
	bad "$*"
	finish
}

if [ "$(id -u)" != 0 ]; then
	echo "test-package: error: must run as root (it installs the package)" >&2
	exit 1
fi
for c in dpkg dpkg-deb rpm rpm2cpio cpio rpmlint lintian mariadbd mariadb-install-db mariadb-admin mariadb curl socat \
	unshare setpriv systemd-socket-activate systemd-analyze deb-systemd-helper systemctl go; do
	command -v "$c" >/dev/null 2>&1 || {
		echo "test-package: error: $c is missing (scripts/install-deps.sh installs it)" >&2
		exit 1
	}
done
if dpkg-query -W -f='${db:Status-Status}' vipguard 2>/dev/null | grep -qv '^not-installed$'; then
	echo "test-package: error: vipguard is installed on this machine; this test would purge it" >&2
	echo "test-package: hint: dpkg -P vipguard, then run it again" >&2
	exit 1
fi
for d in /etc/vipguard /var/lib/vipguard /usr/libexec/vipguard; do
	if [ -e "$d" ]; then
		echo "test-package: error: $d exists without the package; purge would delete it" >&2
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/vipguard-pkgtest.XXXXXX)
pids=""
mysqld_pid=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	if [ -n "$mysqld_pid" ]; then
		kill "$mysqld_pid" 2>/dev/null
		i=0
		while kill -0 "$mysqld_pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$mysqld_pid" 2>/dev/null
	fi
	if dpkg-query -W -f='${db:Status-Status}' vipguard 2>/dev/null | grep -qv '^not-installed$'; then
		dpkg --purge vipguard >/dev/null 2>&1 || echo "test-package: warning: dpkg --purge vipguard failed" >&2
	fi
	# An admin-style enablement made by the test, should purge have missed it.
	rm -f /etc/systemd/system/sockets.target.wants/vipguard-agentcheck.socket \
		/etc/systemd/system/multi-user.target.wants/vipguard-agentcheck.service
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'fail=$((fail + 1)); echo "FAIL  interrupted"; echo "package: $pass passed, $fail failed"; exit 130' INT TERM

# Ports for the test instances, away from the default 9200/9201.
base=$((20000 + $$ % 20000))
p_agent=$base p_http=$((base + 1)) p_sa_agent=$((base + 2)) p_sa_http=$((base + 3))

# wait_for SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1"; }
is_http() { [ "$(http_code "$2")" = "$1" ]; }
agent_says() { printf '%s\n' "$2" | socat -t 3 - "TCP:127.0.0.1:$1" 2>/dev/null; }
agent_matches() { agent_says "$1" "$2" | grep -q "$3"; }

# --- build ---------------------------------------------------------------
echo "# building packages"
gomod_before=$(cat go.mod go.sum 2>/dev/null | sha256sum)
out=$tmp/out
OUT=$out PACKAGERS="deb rpm" sh scripts/package.sh >"$tmp/build1.log" 2>&1 || {
	cat "$tmp/build1.log"
	fatal "scripts/package.sh builds deb and rpm"
}
deb=$(ls "$out"/*.deb 2>/dev/null | head -1)
rpmf=$(ls "$out"/*.rpm 2>/dev/null | head -1)
[ -n "$deb" ] && [ -n "$rpmf" ] || fatal "scripts/package.sh builds deb and rpm (got: $(ls "$out"))"
ok "scripts/package.sh builds $(basename "$deb") and $(basename "$rpmf")"
debver=$(dpkg-deb -f "$deb" Version)
ver=${debver%-*}

# Same tree, same version, same SOURCE_DATE_EPOCH: the same bytes.
mkdir -p "$tmp/again"
OUT=$tmp/again PACKAGERS="deb rpm" VERSION=$ver sh scripts/package.sh >"$tmp/build2.log" 2>&1 || cat "$tmp/build2.log"
# On a difference, say which files differ (a tree edited during the build
# differs too).
same_deb() {
	cmp -s "$1" "$2" && return 0
	for d in "$1" "$2"; do dpkg-deb --ctrl-tarfile "$d" | tar -xO ./md5sums; done | sort | uniq -u
	return 1
}
check "the .deb is reproducible (two builds, same sha256)" \
	same_deb "$deb" "$tmp/again/$(basename "$deb")"
same_rpm() {
	cmp -s "$1" "$2" && return 0
	for r in "$1" "$2"; do rpm -qp --dump "$r"; done | sort | uniq -u
	return 1
}
check "the .rpm is reproducible (two builds, same sha256)" \
	same_rpm "$rpmf" "$tmp/again/$(basename "$rpmf")"

check "go.mod and go.sum untouched by the builds (nfpm via go run pkg@version)" \
	sh -c "[ \"\$(cat go.mod go.sum 2>/dev/null | sha256sum)\" = '$gomod_before' ]"

# Upgrade candidates: v2 ships the same conffile, v3 a changed one.
v2=$ver+pkgtest2
v3=$ver+pkgtest3
sed '1a # pkgtest: an upstream change to the conffile' examples/vipguard.toml >"$tmp/upstream.toml"
mkdir -p "$tmp/v2" "$tmp/v3"
OUT=$tmp/v2 PACKAGERS=deb VERSION=$v2 sh scripts/package.sh >"$tmp/build3.log" 2>&1 &&
	OUT=$tmp/v3 PACKAGERS="deb rpm" VERSION=$v3 VIPGUARD_CONFFILE=$tmp/upstream.toml \
		sh scripts/package.sh >"$tmp/build4.log" 2>&1 || {
	cat "$tmp"/build3.log "$tmp"/build4.log 2>/dev/null
	fatal "builds the upgrade packages"
}
deb2=$(ls "$tmp"/v2/*.deb) deb3=$(ls "$tmp"/v3/*.deb)
check "versions sort: $ver < $v2 < $v3" \
	sh -c "dpkg --compare-versions '$debver' lt '$(dpkg-deb -f "$deb2" Version)' &&
		dpkg --compare-versions '$(dpkg-deb -f "$deb2" Version)' lt '$(dpkg-deb -f "$deb3" Version)'"

# --- static checks -------------------------------------------------------
echo "# lintian"
# Exit status 0: ran, and no tag at error level (lintian's default --fail-on).
lintian --info --display-info --pedantic "$deb" >"$tmp/lintian.out" 2>&1
rc=$?
grep -E '^[EWIPX]: ' "$tmp/lintian.out" | sed 's/^/      /'
if [ $rc = 0 ] && ! grep -q '^E: ' "$tmp/lintian.out"; then
	ok "lintian: no errors ($(grep -c '^W: ' "$tmp/lintian.out") warning(s) listed above)"
else
	bad "lintian: exit $rc, $(grep -c '^E: ' "$tmp/lintian.out") error(s)"
	grep -v '^N: ' "$tmp/lintian.out" | grep -Ev '^[EWIPX]: ' | sed 's/^/      /' | head
fi

echo "# rpm contents"
cat >"$tmp/rpm.expected" <<'EOF'
/etc/vipguard
/etc/vipguard/vipguard.toml
/usr/lib/systemd/system/vipguard-agentcheck.service
/usr/lib/systemd/system/vipguard-agentcheck.socket
/usr/libexec/vipguard
/usr/libexec/vipguard/agentcheck
/usr/libexec/vipguard/mysqlcheck
/usr/libexec/vipguard/notify
/usr/sbin/vipguard
/usr/share/bash-completion/completions/vipguard
/usr/share/doc/vipguard/README.agentcheck.md.gz
/usr/share/doc/vipguard/README.md.gz
/usr/share/doc/vipguard/README.packaging.md
/usr/share/doc/vipguard/examples/grafana/vipguard-dashboard.json
/usr/share/doc/vipguard/examples/haproxy/haproxy.cfg
/usr/share/doc/vipguard/examples/keepalived/keepalived.conf
/usr/share/doc/vipguard/examples/prometheus/vipguard-alerts.test.yml
/usr/share/doc/vipguard/examples/prometheus/vipguard-alerts.yml
/usr/share/doc/vipguard/examples/vipguard.toml
/usr/share/licenses/vipguard
/usr/share/licenses/vipguard/LICENSE
/usr/share/licenses/vipguard/THIRD-PARTY-LICENSES
/usr/share/man/man8/vipguard-agentcheck.8.gz
/usr/share/man/man8/vipguard-mysqlcheck.8.gz
/usr/share/man/man8/vipguard-notify.8.gz
/usr/share/man/man8/vipguard.8.gz
/var/lib/vipguard
EOF
rpm -qlp "$rpmf" 2>/dev/null | sort >"$tmp/rpm.actual"
check "rpm -qlp lists exactly the expected files" diff -u "$tmp/rpm.expected" "$tmp/rpm.actual"
check "rpm: vipguard.toml is %config(noreplace), 0640 root:root" sh -c \
	"rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' '$rpmf' |
		grep -qx 'cn -rw-r----- root:root /etc/vipguard/vipguard.toml'"
check "rpm: binaries 0755 root:root" sh -c \
	"[ \$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' '$rpmf' |
		grep -c '^-rwxr-xr-x root:root /usr/libexec/vipguard/') = 3 ]"
check "rpm: scriptlets present (%post, %preun, %postun)" sh -c \
	"rpm -qp --scripts '$rpmf' | grep -q '^postinstall scriptlet' &&
	 rpm -qp --scripts '$rpmf' | grep -q '^preuninstall scriptlet' &&
	 rpm -qp --scripts '$rpmf' | grep -q '^postuninstall scriptlet'"

check "rpm: License: Apache-2.0" sh -c "[ \"\$(rpm -qp --qf '%{LICENSE}' '$rpmf')\" = Apache-2.0 ]"
check "rpm: %license files are LICENSE and THIRD-PARTY-LICENSES" sh -c \
	"[ \"\$(rpm -qLp '$rpmf' | tr '\n' ' ')\" = '/usr/share/licenses/vipguard/LICENSE /usr/share/licenses/vipguard/THIRD-PARTY-LICENSES ' ]"
check "rpm: every man page and file in /usr/share/doc is %doc" sh -c \
	"rpm -qlp '$rpmf' | grep -E '^/usr/share/(man|doc)/.*[^/]\$' | sort >$tmp/docs.want &&
	 rpm -qdp '$rpmf' | sort >$tmp/docs.got && cat $tmp/docs.got && [ -s $tmp/docs.got ] && diff $tmp/docs.want $tmp/docs.got"
check "rpm: no Debian package names or '|' alternatives in Suggests/Recommends" sh -c \
	"rpm -qp --suggests --recommends '$rpmf' | tee /dev/stderr | grep -Eq 'default-mysql|virtual-mysql|\|' && exit 1; exit 0"
# nfpm writes the rpm payload with absolute paths, and rpmlint unpacks it
# with "cpio -id": as root that writes into /. So rpmlint runs as nobody,
# with a cpio that drops the leading "/".
mkdir -p "$tmp/rpmlint/bin"
printf '#!/bin/sh\nexec %s --no-absolute-filenames "$@"\n' "$(command -v cpio)" >"$tmp/rpmlint/bin/cpio"
cp "$rpmf" packaging/rpmlint.toml "$tmp/rpmlint/"
chmod 755 "$tmp/rpmlint/bin/cpio" && chmod -R a+rX "$tmp/rpmlint" && chmod a+x "$tmp"
rpmlint_run() {
	(cd "$tmp/rpmlint" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env HOME="$tmp/rpmlint" PATH="$tmp/rpmlint/bin:/usr/bin:/bin" \
		rpmlint -c rpmlint.toml "$(basename "$rpmf")") >"$tmp/rpmlint.out" 2>&1
	grep -E '^vipguard[^ ]*: [EW]: ' "$tmp/rpmlint.out"
	grep -q ' 0 errors, 0 warnings' "$tmp/rpmlint.out"
}
check "rpmlint: no errors or warnings beyond packaging/rpmlint.toml's explained filters" rpmlint_run

echo "# licences"
# The modules in the built binaries, from the deb's own payload.
dpkg-deb -x "$deb" "$tmp/debroot"
go version -m "$tmp"/debroot/usr/libexec/vipguard/* | awk '$1 == "dep" { print $2, $3 }' | sort -u >"$tmp/deps"
check "the binaries link modules (go version -m lists them)" test -s "$tmp/deps"
copyright=$tmp/debroot/usr/share/doc/vipguard/copyright
check "deb: copyright is machine-readable (DEP-5)" sh -c \
	"head -1 '$copyright' | grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/'"
check "deb: copyright names Go and every linked module (Files: stanza)" sh -c \
	"grep -qx 'Files: go/\\*' '$copyright' || exit 1
	 while read mod ver; do
		grep -qx \"Files: \$(echo \$mod | sed 's,/v[0-9]*\$,,')/\\*\" '$copyright' || { echo \"missing: \$mod\"; exit 1; }
	 done <$tmp/deps"
rpm2cpio "$rpmf" | (mkdir -p "$tmp/rpmx" && cd "$tmp/rpmx" && cpio -id --no-absolute-filenames --quiet 2>/dev/null)
check "rpm: THIRD-PARTY-LICENSES quotes Go's licence and every linked module's" sh -c \
	"f=$tmp/rpmx/usr/share/licenses/vipguard/THIRD-PARTY-LICENSES
	 grep -q '^==== Go go' \$f || exit 1
	 while read mod ver; do
		grep -q \"^==== \$mod@\$ver \" \$f || { echo \"missing: \$mod@\$ver\"; exit 1; }
	 done <$tmp/deps"
check "rpm: LICENSE is the Apache License 2.0" grep -q 'Apache License' "$tmp/rpmx/usr/share/licenses/vipguard/LICENSE"

# The rpm's payload and %config(noreplace) for real, in a scratch root (no
# scriptlets, no dependencies: this is not an RPM system).
rr=$tmp/rpmroot
rpm3=$(ls "$tmp"/v3/*.rpm)
check "rpm -i into a scratch root; rpm -V clean" sh -c \
	"mkdir -p '$rr' && rpm --root '$rr' --initdb 2>/dev/null &&
	 rpm --root '$rr' -i --nodeps --noscripts --notriggers '$rpmf' 2>/dev/null &&
	 [ -x '$rr/usr/libexec/vipguard/agentcheck' ] && rpm --root '$rr' -V vipguard 2>/dev/null"
echo "# pkgtest: a local edit" >>"$rr/etc/vipguard/vipguard.toml"
check "rpm -U over an edited config: kept, upstream's as .rpmnew" sh -c \
	"rpm --root '$rr' -U --nodeps --noscripts --notriggers '$rpm3' 2>/dev/null &&
	 grep -q '^# pkgtest: a local edit' '$rr/etc/vipguard/vipguard.toml' &&
	 grep -q '^# pkgtest: an upstream change' '$rr/etc/vipguard/vipguard.toml.rpmnew'"
check "rpm -e: files gone, the edited config saved as .rpmsave" sh -c \
	"rpm --root '$rr' -e --noscripts --notriggers vipguard 2>/dev/null &&
	 ! [ -e '$rr/usr/libexec/vipguard/agentcheck' ] && ! [ -e '$rr/usr/sbin/vipguard' ] &&
	 grep -q '^# pkgtest: a local edit' '$rr/etc/vipguard/vipguard.toml.rpmsave'"

# --- install -------------------------------------------------------------
echo "# dpkg -i $(basename "$deb")"
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || {
	cat "$tmp/dpkg.log"
	fatal "dpkg -i installs the package"
}
ok "dpkg -i installs the package"
check "dpkg says installed, version $debver" \
	sh -c "[ \"\$(dpkg-query -W -f='\${db:Status-Status} \${Version}' vipguard)\" = 'installed $debver' ]"

# enable_script_security: the file and every directory above it root-owned
# and not writable by group or others.
secure_path() {
	p=$1
	while :; do
		uid=$(stat -L -c %u "$p") && mode=$(stat -L -c %a "$p") || return 1
		[ "$uid" = 0 ] || {
			echo "$p: owner uid $uid"
			return 1
		}
		[ $((0$mode & 022)) = 0 ] || {
			echo "$p: mode $mode"
			return 1
		}
		[ "$p" = / ] && return 0
		p=$(dirname "$p")
	done
}
for b in mysqlcheck notify agentcheck; do
	check "/usr/libexec/vipguard/$b: executable, root-owned path, no group/other write" \
		sh -c "[ -x /usr/libexec/vipguard/$b ] && [ \"\$(stat -c %a /usr/libexec/vipguard/$b)\" = 755 ] && [ \"\$(stat -c %U:%G /usr/libexec/vipguard/$b)\" = root:root ]"
	check "/usr/libexec/vipguard/$b: every path component passes enable_script_security" secure_path "/usr/libexec/vipguard/$b"
done
check "nothing installed in /usr/bin (mysqlcheck is MySQL's name)" \
	sh -c "! dpkg -L vipguard | grep -q '^/usr/bin/'"
check "/etc/vipguard/vipguard.toml: 0640 root:root, the example's contents" \
	sh -c "[ \"\$(stat -c '%a %U:%G' /etc/vipguard/vipguard.toml)\" = '640 root:root' ] &&
		dpkg-deb --fsys-tarfile '$deb' | tar -xO ./etc/vipguard/vipguard.toml | cmp -s - /etc/vipguard/vipguard.toml &&
		cmp -s /etc/vipguard/vipguard.toml /usr/share/doc/vipguard/examples/vipguard.toml"
check "/etc/vipguard/vipguard.toml is a dpkg conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}\n' vipguard | grep -q '^ /etc/vipguard/vipguard.toml '"
check "/var/lib/vipguard exists, root-owned" sh -c "[ \"\$(stat -c '%U %F' /var/lib/vipguard)\" = 'root directory' ]"
check "no unit enabled by the install" sh -c \
	"! ls /etc/systemd/system/*.wants/vipguard-agentcheck.* 2>/dev/null | grep -q ."
unit=/lib/systemd/system/vipguard-agentcheck.service
check "systemd-analyze verify: units and their man pages" sh -c \
	"systemd-analyze verify $unit /lib/systemd/system/vipguard-agentcheck.socket >$tmp/verify.out 2>&1; rc=\$?; cat $tmp/verify.out; [ \$rc = 0 ] && ! [ -s $tmp/verify.out ]"
check "man pages render without warnings" sh -c \
	"for p in vipguard vipguard-mysqlcheck vipguard-notify vipguard-agentcheck; do
		out=\$(MANWIDTH=80 man --warnings -E UTF-8 \$p 2>&1 >/dev/null) || exit 1; [ -z \"\$out\" ] || { echo \"\$p: \$out\"; exit 1; }
	 done"

for b in mysqlcheck notify agentcheck; do
	check "/usr/libexec/vipguard/$b --version prints $ver" \
		sh -c "[ \"\$(/usr/libexec/vipguard/$b --version)\" = '$ver' ]"
	check "/usr/libexec/vipguard/$b --help exits 0" /usr/libexec/vipguard/$b --help
done
check "vipguard version prints $ver" sh -c "[ \"\$(vipguard version)\" = '$ver' ]"
check "vipguard with an unknown command exits 80" sh -c "vipguard frobnicate 2>/dev/null; [ \$? = 80 ]"

# --- a throwaway server ---------------------------------------------------
echo "# throwaway mariadbd"
sock=$tmp/mysqld.sock
mariadb-install-db --no-defaults --user=root --datadir="$tmp/data" \
	--auth-root-authentication-method=socket --skip-test-db >"$tmp/install-db.log" 2>&1 || {
	cat "$tmp/install-db.log"
	fatal "mariadb-install-db"
}
mariadbd --no-defaults --user=root --datadir="$tmp/data" --socket="$sock" --skip-networking \
	--pid-file="$tmp/mysqld.pid" --log-error="$tmp/mysqld.err" --innodb-buffer-pool-size=16M \
	--skip-log-bin >/dev/null 2>&1 &
mysqld_pid=$!
wait_for 60 mariadb-admin --no-defaults -S "$sock" ping || {
	tail "$tmp/mysqld.err"
	fatal "mariadbd starts"
}
ok "mariadbd started on $sock"

# The local edit: point the installed conffile at it and at test ports.
conf=/etc/vipguard/vipguard.toml
sed -i -e "s|^socket = .*|socket = \"$sock\"|" \
	-e "s|^listen = .*|listen = \"127.0.0.1:$p_agent\"|" \
	-e "s|^http_listen = .*|http_listen = \"127.0.0.1:$p_http\"|" "$conf"
echo "# pkgtest: a local edit" >>"$conf"
check "conffile edited locally (socket, listen addresses)" grep -q "^socket = \"$sock\"" "$conf"

check "mysqlcheck (installed, default config): fit, exit 0" sh -c \
	"/usr/libexec/vipguard/mysqlcheck >$tmp/mc.out 2>&1; rc=\$?; cat $tmp/mc.out; [ \$rc = 0 ] && grep -q '^mysqlcheck: fit' $tmp/mc.out"
check "vipguard check: fit" sh -c "vipguard check | grep -q '^mysqlcheck: fit'"
check "vipguard check --help names itself 'vipguard check'" sh -c "vipguard check --help | head -1 | grep -q '^Usage: vipguard check'"
check "vipguard maint on --reason pkgtest" sh -c "vipguard maint on --reason pkgtest | grep -qi 'on'"
check "mysqlcheck under maintenance: unfit, exit 1" sh -c \
	"/usr/libexec/vipguard/mysqlcheck >$tmp/mc.out 2>&1; rc=\$?; cat $tmp/mc.out; [ \$rc = 1 ] && grep -q 'unfit' $tmp/mc.out"
check "vipguard maint off" vipguard -c "$conf" maint off
check "mysqlcheck fit again" /usr/libexec/vipguard/mysqlcheck -q
check "vipguard status shows this node's server" sh -c "vipguard status | grep -q '^  mysql: .*read_only=false'"
check "vipguard status --json: this node, no peer configured" sh -c \
	"vipguard status --json | grep -q '\"peer_error\": \"no peer configured'"
check "vipguard doctor: one line per check, exit 4 by the worst (no binary log here)" sh -c \
	"vipguard doctor >$tmp/doctor.out 2>&1; rc=\$?; cat $tmp/doctor.out; [ \$rc = 4 ] &&
	 grep -q '^OK    local  connect' $tmp/doctor.out && grep -q '^FAIL  local  log_bin' $tmp/doctor.out"
check "vipguard switchover --dry-run without a peer: refused, exit 4, nothing changed" sh -c \
	"vipguard switchover --dry-run >$tmp/so.out 2>&1; rc=\$?; cat $tmp/so.out; [ \$rc = 4 ] &&
	 grep -q '^refused: ' $tmp/so.out && vipguard maint status | grep -q 'maintenance: off'"
check "notify --dry-run INSTANCE VI_MYSQL BACKUP 100 (installed, default config): plans the fence, runs no write" sh -c \
	"/usr/libexec/vipguard/notify --dry-run INSTANCE VI_MYSQL BACKUP 100 >$tmp/notify.out 2>&1; cat $tmp/notify.out;
	 grep -q '^plan for INSTANCE \"VI_MYSQL\" BACKUP' $tmp/notify.out &&
	 grep -q '(not run): SET GLOBAL read_only = ON' $tmp/notify.out &&
	 [ \"\$(mariadb --no-defaults -S $sock -N -e 'select @@global.read_only')\" = 0 ]"
check "mysqlcheck with a missing -c file: configuration error, exit 2" sh -c \
	"/usr/libexec/vipguard/mysqlcheck -c $tmp/none.toml 2>/dev/null; [ \$? = 2 ]"

# --- agentcheck through its unit's ExecStart --------------------------------
echo "# agentcheck via ExecStart of $unit"
execstart=$(sed -n 's/^ExecStart=[-@:+!]*//p' "$unit")
[ -n "$execstart" ] || fatal "ExecStart= found in $unit"
ok "ExecStart: $execstart"
case $execstart in /usr/libexec/vipguard/agentcheck\ serve*) ok "ExecStart runs the installed agentcheck serve" ;;
*) bad "ExecStart runs the installed agentcheck serve" ;; esac
grep -q '^ProtectSystem=strict' "$unit" && grep -q '^CapabilityBoundingSet=$' "$unit" &&
	grep -q '^NoNewPrivileges=yes' "$unit" && grep -q '^StateDirectory=vipguard' "$unit" &&
	grep -q '^Type=notify' "$unit" && grep -q '^WatchdogSec=' "$unit"
check "unit: Type=notify, WatchdogSec, ProtectSystem=strict, StateDirectory, no capabilities" test $? = 0

notify_sock=$tmp/notify.sock
socat -u "UNIX-RECV:$notify_sock" "OPEN:$tmp/notify.log,creat,append" &
pids="$pids $!"
wait_for 5 test -S "$notify_sock" || bad "notify socket listener"
# The unit's hardening as far as it goes without systemd: / read-only but
# the state directory, no capabilities at all, no_new_privs; and the
# unit's notify socket and watchdog. ExecStart is split on purpose.
# shellcheck disable=SC2086
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET="$notify_sock" WATCHDOG_USEC=2000000 \
	unshare --mount --propagation private sh -c '
		mount --bind / / && mount -o remount,bind,ro / &&
		mount --bind /var/lib/vipguard /var/lib/vipguard &&
		exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all "$@"' sh $execstart \
	>"$tmp/agent.log" 2>&1 </dev/null &
agent=$!
pids="$pids $agent"
# Datagrams arrive unseparated: match anywhere.
if wait_for 15 grep -q "READY=1" "$tmp/notify.log"; then
	ok "agentcheck sent READY=1 (Type=notify)"
else
	bad "agentcheck sent READY=1 (Type=notify)"
	sed 's/^/      /' "$tmp/agent.log" | tail
fi
check "agentcheck runs with no capabilities and no_new_privs" sh -c \
	"grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/$agent/status && grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$agent/status"
check "agentcheck's / is read-only" sh -c "grep -q ' / / ro' /proc/$agent/mountinfo"
check "HTTP /health: 200 (node fit)" is_http 200 "http://127.0.0.1:$p_http/health"
check "HTTP /liveness: 200" is_http 200 "http://127.0.0.1:$p_http/liveness"
check "HTTP /readiness: 200" is_http 200 "http://127.0.0.1:$p_http/readiness"
check "agent-check 'health' on :$p_agent: up" agent_matches "$p_agent" health '^up'
check "HTTP /primary: 503 (no promotion recorded by notify)" is_http 503 "http://127.0.0.1:$p_http/primary"
check "HTTP /status.json: 200, the status document vipguard status reads" sh -c \
	"curl -s -m 3 http://127.0.0.1:$p_http/status.json | grep -q '^{\"format\":1,'"
vipguard maint on --reason pkgtest >/dev/null 2>&1
http_body() { curl -s -m 3 "$1"; }
body_has() { http_body "$1" | grep -q "$2"; }
check "maintenance on (read from state_dir): /health 503 within 5 s" wait_for 5 is_http 503 "http://127.0.0.1:$p_http/health"
check "maintenance on: HTTP body says why" body_has "http://127.0.0.1:$p_http/health" "maintenance mode is on.*pkgtest"
check "maintenance on: agent answers down, saying why" agent_matches "$p_agent" health "^down .*maintenance mode is on"
vipguard maint off >/dev/null 2>&1
check "maintenance off: /health 200 again within 5 s" wait_for 5 is_http 200 "http://127.0.0.1:$p_http/health"
check "watchdog pinged (WATCHDOG=1 within 3 s)" wait_for 3 grep -q "WATCHDOG=1" "$tmp/notify.log"
kill -HUP "$agent"
check "SIGHUP (ExecReload): RELOADING=1 then READY=1, still serving" sh -c \
	"sleep 1; grep -q RELOADING=1 $tmp/notify.log && [ \$(grep -o READY=1 $tmp/notify.log | wc -l) -ge 2 ] &&
		kill -0 $agent && [ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$p_http/liveness)\" = 200 ]"
kill -TERM "$agent"
i=0
while kill -0 "$agent" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
wait "$agent"
rc=$?
check "SIGTERM: STOPPING=1 and exit 0 within 10 s" sh -c "[ $rc = 0 ] && grep -q STOPPING=1 $tmp/notify.log"
check "agentcheck logs key=value on stderr" grep -q 'msg="agentcheck ready"' "$tmp/agent.log"

echo "# agentcheck via ExecStart under socket activation"
# shellcheck disable=SC2086
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemd-socket-activate \
	-l "127.0.0.1:$p_sa_agent" -l "127.0.0.1:$p_sa_http" $execstart >"$tmp/sa.log" 2>&1 </dev/null &
sa=$!
pids="$pids $sa"
wait_for 5 sh -c "ss -ltn | grep -q ':$p_sa_http '" || bad "systemd-socket-activate listens"
check "socket-activated: HTTP /liveness 200 on the passed socket" is_http 200 "http://127.0.0.1:$p_sa_http/liveness"
check "socket-activated: agent-check 'health' answered on the other passed socket" agent_matches "$p_sa_agent" health '^up'
check "socket-activated: uses the sockets from systemd, not agent.listen" sh -c \
	"grep -q 'using socket from systemd' $tmp/sa.log && ! ss -ltn | grep -q ':$p_agent '"
kill -TERM "$sa" 2>/dev/null
wait "$sa" 2>/dev/null

# --- upgrades over the edited conffile -----------------------------------
echo "# upgrades with a locally edited conffile"
# An admin's enablement, to be kept by upgrades and removed by purge.
systemctl enable vipguard-agentcheck.socket >/dev/null 2>&1
check "admin enables vipguard-agentcheck.socket (offline systemctl enable)" \
	test -L /etc/systemd/system/sockets.target.wants/vipguard-agentcheck.socket
sha_local=$(sha256sum "$conf" | cut -d' ' -f1)
check "dpkg -i --force-confold $(basename "$deb2") (same upstream conffile)" \
	sh -c "dpkg -i --force-confold '$deb2' </dev/null"
check "conffile kept with its local edits, 0640" sh -c \
	"[ \$(sha256sum $conf | cut -d' ' -f1) = $sha_local ] && [ \$(stat -c %a $conf) = 640 ]"
check "no .dpkg-dist when upstream did not change it" test ! -e "$conf.dpkg-dist"
check "installed binaries are the new version" sh -c "[ \"\$(/usr/libexec/vipguard/agentcheck --version)\" = '$v2' ]"
check "dpkg -i --force-confold $(basename "$deb3") (changed upstream conffile)" \
	sh -c "dpkg -i --force-confold '$deb3' </dev/null"
check "conffile still has the local edits" sh -c \
	"[ \$(sha256sum $conf | cut -d' ' -f1) = $sha_local ] && grep -q '^# pkgtest: a local edit' $conf"
check "upstream's new conffile set aside as vipguard.toml.dpkg-dist" \
	sh -c "grep -q '^# pkgtest: an upstream change' $conf.dpkg-dist"
check "enablement survives the upgrades" \
	test -L /etc/systemd/system/sockets.target.wants/vipguard-agentcheck.socket

# --- a dead server: unfit -------------------------------------------------
kill "$mysqld_pid"
wait "$mysqld_pid" 2>/dev/null
mysqld_pid=""
check "mysqlcheck with mysqld stopped: unfit, exit 1, within 2 s" sh -c \
	"s=\$(date +%s%N); /usr/libexec/vipguard/mysqlcheck 2>$tmp/mc.err; rc=\$?; e=\$(date +%s%N);
	 cat $tmp/mc.err; [ \$rc = 1 ] && [ \$(( (e - s) / 1000000 )) -lt 2000 ]"

# --- remove and purge ------------------------------------------------------
echo "# dpkg -r, dpkg -P"
vipguard maint on --reason "left behind by the test" >/dev/null 2>&1
check "dpkg -r vipguard" sh -c "dpkg -r vipguard </dev/null"
check "after remove: binaries, units, /usr/sbin/vipguard gone" sh -c \
	"! [ -e /usr/libexec/vipguard ] && ! [ -e $unit ] && ! [ -e /lib/systemd/system/vipguard-agentcheck.socket ] && ! [ -e /usr/sbin/vipguard ]"
check "after remove: conffile kept (config-files state)" sh -c \
	"[ -f $conf ] && [ \"\$(dpkg-query -W -f='\${db:Status-Status}' vipguard)\" = config-files ]"
check "dpkg -P vipguard" sh -c "dpkg -P vipguard </dev/null"
check "after purge: /etc/vipguard, /var/lib/vipguard, /usr/libexec/vipguard, /usr/share/doc/vipguard gone" sh -c \
	"for p in /etc/vipguard /var/lib/vipguard /usr/libexec/vipguard /usr/share/doc/vipguard /usr/share/man/man8/vipguard.8.gz; do
		[ -e \$p ] && { echo \"left: \$p\"; ls -la \$p; exit 1; }; done; exit 0"
check "after purge: every file of the package is gone" sh -c \
	"dpkg-deb -c '$deb3' | awk '{print \$6}' | sed 's|^\\.||' | while read -r f; do
		case \$f in */) continue ;; esac; [ -e \"\$f\" ] && echo \"left: \$f\"; done | grep . && exit 1; exit 0"
check "after purge: the admin's enablement symlink is gone" \
	test ! -e /etc/systemd/system/sockets.target.wants/vipguard-agentcheck.socket
check "after purge: dpkg knows no vipguard" sh -c \
	"! dpkg-query -W -f='\${db:Status-Status}' vipguard 2>/dev/null | grep -qv '^not-installed$'"

finish
