#!/usr/bin/env bash
# install.sh install STAGE | install.sh uninstall
#
# `make install` / `make uninstall`: copy what stage.sh built in STAGE under
# $DESTDIR$PREFIX (binary, systemd unit, sysusers.d entry, man pages,
# completions, examples), or remove exactly those files again.
#   PREFIX   default /usr/local; the unit's ExecStart names $PREFIX/bin/segmesh
#   DESTDIR  default empty; set, nothing outside it is touched (for packagers)
# The config lives in /etc/segmesh whatever PREFIX is (the unit and every
# command default to /etc/segmesh/segmesh.yaml). The example config is
# installed there only when no config exists, and uninstall keeps it, the
# keys, /var/lib/segmesh and the segmesh user.
# Without DESTDIR, install then does what the packages' postinstall does:
# creates the segmesh user and /var/lib/segmesh and reloads systemd. Like
# the packages it enables and starts nothing.
set -euo pipefail

mode=${1:?usage: install.sh install STAGE | uninstall}
: "${PREFIX:=/usr/local}"
DESTDIR=${DESTDIR:-}
case $PREFIX in /*) ;; *) echo "install.sh: PREFIX must be an absolute path, not $PREFIX" >&2; exit 2 ;; esac
PREFIX=${PREFIX%/}

bindir=$PREFIX/bin
unitdir=$PREFIX/lib/systemd/system
sysusersdir=$PREFIX/lib/sysusers.d
mandir=$PREFIX/share/man/man1
bashdir=$PREFIX/share/bash-completion/completions
zshdir=$PREFIX/share/zsh/site-functions
fishdir=$PREFIX/share/fish/vendor_completions.d
docdir=$PREFIX/share/doc/segmesh
confdir=/etc/segmesh

# Every file install writes, as "source destination mode" (the man pages are
# added below): uninstall removes the same list.
files() {
	cat <<EOF
segmesh $bindir/segmesh 0755
segmesh.service $unitdir/segmesh.service 0644
segmesh.sysusers $sysusersdir/segmesh.conf 0644
completions/segmesh.bash $bashdir/segmesh 0644
completions/_segmesh $zshdir/_segmesh 0644
completions/segmesh.fish $fishdir/segmesh.fish 0644
policy.example.yaml $docdir/examples/policy.yaml 0644
alerts.yaml $docdir/examples/alerts.yaml 0644
LICENSE $docdir/LICENSE 0644
EOF
}

reload_systemd() {
	if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
	fi
}

case $mode in
install)
	stage=${2:?usage: install.sh install STAGE}
	while read -r src dst perm; do
		if [ "$src" = segmesh.service ]; then
			# The unit names the binary by its installed path.
			sed "s|^ExecStart=/usr/bin/segmesh |ExecStart=$bindir/segmesh |" "$stage/$src" >"$stage/$src.installed"
			src=$src.installed
		fi
		install -D -m "$perm" "$stage/$src" "$DESTDIR$dst"
	done < <(files)
	install -d -m 0755 "$DESTDIR$mandir"
	install -m 0644 "$stage"/man/*.1.gz "$DESTDIR$mandir/"
	install -d -m 0755 "$DESTDIR$confdir"
	if [ -e "$DESTDIR$confdir/segmesh.yaml" ]; then
		echo "kept the existing $DESTDIR$confdir/segmesh.yaml"
	else
		install -m 0644 "$stage/segmesh.yaml" "$DESTDIR$confdir/segmesh.yaml"
	fi
	if [ -z "$DESTDIR" ]; then
		# The packages' postinstall: user segmesh, /var/lib/segmesh, keys
		# made by a root-run init handed to it, systemd told of the unit.
		sh "$stage/scripts/postinstall.sh" configure
	fi
	echo "installed segmesh under ${DESTDIR}${PREFIX} (unit: $DESTDIR$unitdir/segmesh.service)"
	[ -n "$DESTDIR" ] || echo "next: segmesh init --dir /etc/segmesh ... (see README), then: systemctl enable --now segmesh"
	;;
uninstall)
	while read -r _ dst _; do
		rm -f "$DESTDIR$dst"
	done < <(files)
	rm -f "$DESTDIR$mandir"/segmesh.1.gz "$DESTDIR$mandir"/segmesh-*.1.gz
	rmdir "$DESTDIR$docdir/examples" "$DESTDIR$docdir" 2>/dev/null || true
	reload_systemd
	echo "removed segmesh from ${DESTDIR}${PREFIX}; kept $DESTDIR$confdir, /var/lib/segmesh and the segmesh user"
	;;
*)
	echo "install.sh: unknown mode $mode (want install or uninstall)" >&2
	exit 2
	;;
esac
