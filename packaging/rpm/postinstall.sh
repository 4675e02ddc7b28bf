#!/bin/sh
# %post for the vipguard rpm ($1: 1 install, 2 upgrade). Tells systemd about
# the units; enables and starts nothing (agentcheck opens TCP ports, so the
# admin enables it: systemctl enable --now vipguard-agentcheck.socket).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
