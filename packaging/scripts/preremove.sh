#!/bin/sh
# segmesh preremove (deb: "remove" | "upgrade" ...; rpm: $1 = copies left after, 0 = erase).
# On removal (not upgrade) stop and disable the daemon: SIGTERM leaves the mesh
# gracefully and removes its nftables table. State and config are kept.
set -e
remove=no
case "$1" in
remove | purge | 0) remove=yes ;;
esac
if [ "$remove" = yes ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now segmesh.service >/dev/null 2>&1 || true
fi
exit 0
