#!/bin/sh
# segmesh postinstall (deb: "configure" [old-version]; rpm: $1 = number of installed copies).
# Creates the state directory and tells systemd about the unit. It enables and starts
# NOTHING: an unconfigured node must not join anything. Configure /etc/segmesh
# (segmesh init), then: systemctl enable --now segmesh.
# On upgrade a running daemon is restarted so it runs the new binary.
set -e

install -d -m 0700 -o root -g root /var/lib/segmesh

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
	upgrade=no
	case "$1" in
	configure) [ -n "$2" ] && upgrade=yes ;;
	[0-9]*) [ "$1" -gt 1 ] && upgrade=yes ;;
	esac
	if [ "$upgrade" = yes ] && systemctl is-active --quiet segmesh.service; then
		systemctl try-restart segmesh.service || true
	fi
fi
exit 0
