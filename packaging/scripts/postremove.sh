#!/bin/sh
# segmesh postremove: forget the removed unit. /var/lib/segmesh (address claim, peer
# cache, policies) and /etc/segmesh (keys) are kept; deb "purge" removes the state dir,
# never the keys in /etc/segmesh that dpkg does not own.
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/segmesh
fi
exit 0
