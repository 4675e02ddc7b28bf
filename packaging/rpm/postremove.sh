#!/bin/sh
# %postun for the vipguard rpm ($1: 0 erase, 1 upgrade). Reload unit files;
# after an upgrade restart agentcheck on the new binary if it was running
# (try-restart starts nothing that was stopped), as
# %systemd_postun_with_restart does.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart vipguard-agentcheck.service >/dev/null 2>&1 || :
	fi
fi
exit 0
