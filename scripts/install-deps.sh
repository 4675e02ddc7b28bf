#!/bin/sh
# Installs what vipguard's tests, lab and demo need on a Debian host, and
# nothing when it is all there already. Needs root for apt-get.
set -eu
pkgs="mariadb-server mariadb-client haproxy keepalived percona-toolkit iproute2 procps socat rpm lintian rpmlint python3-magic curl systemd init-system-helpers man-db prometheus"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: error: missing packages:$missing (run as root, or apt-get install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages' own services from starting: the tests
# start their own servers in temp dirs and namespaces.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.vipguard
chmod 0755 /usr/sbin/policy-rc.d.vipguard
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.vipguard /usr/sbin/policy-rc.d
apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
rm -f /usr/sbin/policy-rc.d.vipguard
