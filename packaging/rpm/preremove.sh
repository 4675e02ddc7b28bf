#!/bin/sh
# %preun for the vipguard rpm ($1: 0 erase, 1 upgrade). On erase, disable and
# stop agentcheck as %systemd_preun does; on upgrade keep it running.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now vipguard-agentcheck.socket vipguard-agentcheck.service >/dev/null 2>&1 || :
fi
exit 0
