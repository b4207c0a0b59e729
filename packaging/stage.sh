#!/usr/bin/env bash
# stage.sh DIR: build everything `make package` and `make install` ship into DIR
# (which must exist and be empty): the stripped static binary, the man pages
# (gzipped), shell completions, the example config and copies of packaging/*.
# The Makefile passes GO, LDFLAGS and ARCH, makes DIR a fresh temporary
# directory and removes it afterwards, on success or failure.
set -euo pipefail

stage=${1:?usage: stage.sh DIR}
: "${GO:=go}" "${LDFLAGS:=}" "${ARCH:=$("$GO" env GOARCH)}"
src=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$stage/completions" "$stage/man" "$stage/scripts"
cd "$src"
CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$stage/segmesh" ./cmd/segmesh
# The host helper carries the hidden `segmesh man` (build tag mangen) and runs
# here, so it is built for this machine, not for $ARCH.
"$GO" build -trimpath -tags mangen -ldflags "$LDFLAGS" -o "$stage/segmesh-host" ./cmd/segmesh

host="$stage/segmesh-host"
"$host" config example >"$stage/segmesh.yaml"
"$host" man --dir "$stage/man"
gzip -n -9 "$stage"/man/*.1
"$host" completion bash >"$stage/completions/segmesh.bash"
"$host" completion zsh >"$stage/completions/_segmesh"
"$host" completion fish >"$stage/completions/segmesh.fish"
rm -f "$host"

cp packaging/nfpm.yaml packaging/segmesh.service packaging/segmesh.sysusers \
	packaging/policy.example.yaml packaging/alerts.yaml LICENSE "$stage/"
cp packaging/scripts/*.sh "$stage/scripts/"
