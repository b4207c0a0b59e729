#!/bin/sh
# segmesh postinstall (deb: "configure" [old-version]; rpm: $1 = number of installed copies).
# Creates the system user segmesh (the unit's User=) and its state directory, gives it
# the keys of a node set up before the daemon ran as that user, and tells systemd
# about the unit. It enables and starts
# NOTHING: an unconfigured node must not join anything. Configure /etc/segmesh
# (segmesh init), then: systemctl enable --now segmesh.
# On upgrade a running daemon is restarted so it runs the new binary.
set -e

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers segmesh.conf
elif ! getent passwd segmesh >/dev/null; then
	useradd --system --user-group --home-dir /var/lib/segmesh --no-create-home \
		--shell /usr/sbin/nologin --comment "segmesh daemon" segmesh
fi

install -d -m 0700 -o segmesh -g segmesh /var/lib/segmesh
# State and keys written while the daemon ran as root (systemd's StateDirectory=
# chowns /var/lib/segmesh itself at start; the keys in /etc/segmesh it does not).
chown -R segmesh:segmesh /var/lib/segmesh
for f in /etc/segmesh/private.key /etc/segmesh/cluster.key; do
	if [ -f "$f" ] && [ "$(stat -c %u "$f")" = 0 ]; then
		chown segmesh:segmesh "$f"
	fi
done

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
