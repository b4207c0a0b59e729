#!/usr/bin/env bash
# Side-by-side TCP throughput: segmesh vs standalone upstream wireguard-go
# (pinned version) vs raw veth, between the same two network namespaces, both
# tunnels up at once, runs alternated, medians reported. Root required.
# Usage: test/bench/throughput.sh [runs] [seconds]
set -euo pipefail
RUNS=${1:-5}; SECS=${2:-5}
WGGO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/segmesh-bench.XXXX)
ID=$$
A=smbA$ID B=smbB$ID
cleanup() {
  set +e
  pkill -TERM -f "$W/segmesh up" ; pkill -f "$W/wireguard-go" ; for n in $A $B; do ip netns pids $n 2>/dev/null | xargs -r kill; done; sleep 1
  pkill -KILL -f "$W/" 2>/dev/null
  ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
  rm -f /var/run/wireguard/smb?$ID.sock /var/run/wireguard/wgb?$ID.sock
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3; }

echo "building segmesh and upstream wireguard-go $WGGO_VERSION" >&2
if [ -n "${SEGMESH_BIN:-}" ]; then cp "$SEGMESH_BIN" "$W/segmesh"; else (cd "$ROOT" && go build -o "$W/segmesh" ./cmd/segmesh); fi
GOBIN="$W" GOFLAGS=-mod=mod go install "golang.zx2c4.com/wireguard@$WGGO_VERSION"
mv "$W/wireguard" "$W/wireguard-go"

ip netns add $A; ip netns add $B
ip link add va netns $A type veth peer name vb netns $B
ip -n $A addr add 192.0.2.1/24 dev va; ip -n $B addr add 192.0.2.2/24 dev vb
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set va up; ip -n $B link set vb up

# segmesh pair, enforcing a policy that admits the benchmark ports
cat >"$W/policy.yaml" <<'POLICY'
mode: enforce
segments:
  bench: {role: bench}
rules:
  - name: bench
    from: ["*"]
    to: [bench]
    ports: [tcp/5201-5210, icmp]
POLICY
for i in A B; do
  ns=$([ $i = A ] && echo $A || echo $B); ip=$([ $i = A ] && echo 192.0.2.1 || echo 192.0.2.2)
  [ $i = B ] && cp "$W/A/cluster.key" "$W/B.cluster" 2>/dev/null || true
  mkdir -p "$W/$i"; [ $i = B ] && cp "$W/A/cluster.key" "$W/B/cluster.key"
  join=""; [ $i = B ] && join="--join 192.0.2.1:7946"   # A is the first node: init --join needs a copied cluster key
  "$W/segmesh" init --dir "$W/$i" --name $i --advertise $ip $join --interface smb$i$ID >/dev/null
  sed -i "s#state_dir: .*#state_dir: $W/$i/state#; s#control_socket: .*#control_socket: $W/$i/s.sock#; s#metrics_listen: .*#metrics_listen: \"\"#; s#^tags: .*#tags: {role: bench}#; s#^policy_file: .*#policy_file: $W/policy.yaml#" "$W/$i/segmesh.yaml"
  ip netns exec $ns env ${SEGMESH_ENV:-} "$W/segmesh" up -c "$W/$i/segmesh.yaml" >"$W/$i.log" 2>&1 &
done
# standalone wireguard-go pair on 10.99.0.0/24, port 51900
ka=$(wg genkey); kb=$(wg genkey)
for i in A B; do
  ns=$([ $i = A ] && echo $A || echo $B)
  ip netns exec $ns env WG_PROCESS_FOREGROUND=1 "$W/wireguard-go" -f wgb$i$ID >"$W/wg$i.log" 2>&1 &
done
for _ in $(seq 50); do [ -S /var/run/wireguard/wgbA$ID.sock ] && [ -S /var/run/wireguard/wgbB$ID.sock ] && break; sleep 0.1; done
ip netns exec $A wg set wgbA$ID private-key <(echo $ka) listen-port 51900 peer $(echo $kb | wg pubkey) endpoint 192.0.2.2:51900 allowed-ips 10.99.0.2/32
ip netns exec $B wg set wgbB$ID private-key <(echo $kb) listen-port 51900 peer $(echo $ka | wg pubkey) endpoint 192.0.2.1:51900 allowed-ips 10.99.0.1/32
ip -n $A addr add 10.99.0.1/24 dev wgbA$ID; ip -n $B addr add 10.99.0.2/24 dev wgbB$ID
ip -n $A link set wgbA$ID mtu 1420 up; ip -n $B link set wgbB$ID mtu 1420 up

# wait for the segmesh pair to be up and learn B's overlay address
for _ in $(seq 100); do
  SB=$("$W/segmesh" status --json --socket "$W/A/s.sock" 2>/dev/null | python3 -c 'import json,sys; p=[x for x in json.load(sys.stdin)["peers"] if x["state"]=="up"]; print(p[0]["address"] if p else "")' || true)
  [ -n "$SB" ] && break; sleep 0.2
done
[ -n "$SB" ] || { echo "segmesh mesh did not form"; cat "$W"/A.log; exit 1; }
reach() { for _ in $(seq 20); do ip netns exec $A ping -c1 -W1 "$1" >/dev/null && return 0; done; echo "$1 unreachable" >&2; return 1; }
reach "$SB"; reach 10.99.0.2

ip netns exec $B iperf3 -s -D -B 192.0.2.2 -p 5201 >/dev/null
ip netns exec $B iperf3 -s -D -B "$SB" -p 5202 >/dev/null
ip netns exec $B iperf3 -s -D -B 10.99.0.2 -p 5203 >/dev/null
sleep 0.5
gbps() { ip netns exec $A iperf3 -c "$1" -p "$2" -t "$SECS" -J 2>/dev/null | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'; }
# ticks: user+system clock ticks of the processes matching $1 (both tunnel ends).
ticks() { local t=0; for p in $(pgrep -f "$1"); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
HZ=$(getconf CLK_TCK)
# measure: Gbit/s of one run and the CPU seconds per GB the two tunnel processes spent on it.
measure() { # addr port pattern -> "gbps cpu_s_per_GB"
  local t0 t1 g; t0=$(ticks "$3"); g=$(gbps "$1" "$2"); t1=$(ticks "$3")
  python3 -c "g=$g; print('%.3f %.3f' % (g, ($t1-$t0)/$HZ / (g*$SECS/8) if g>0 else 0))"
}
if [ -n "${PPROF_OUT:-}" ]; then
  # CPU profiles of both daemons (built with a pprof listener on SEGMESH_PPROF) under one 25 s stream
  ip netns exec $A iperf3 -c "$SB" -p 5202 -t 25 >/dev/null & ipid=$!; sleep 2
  ip netns exec $A curl -s -o "$PPROF_OUT.A" "http://${SEGMESH_PPROF_ADDR}/debug/pprof/profile?seconds=20" &
  ip netns exec $B curl -s -o "$PPROF_OUT.B" "http://${SEGMESH_PPROF_ADDR}/debug/pprof/profile?seconds=20"
  wait $ipid
fi
declare -a RAW SM WG SMC WGC
for r in $(seq "$RUNS"); do
  RAW+=("$(gbps 192.0.2.2 5201)")
  read -r g c < <(measure "$SB" 5202 "$W/segmesh up"); SM+=("$g"); SMC+=("$c")
  read -r g c < <(measure 10.99.0.2 5203 "$W/wireguard-go"); WG+=("$g"); WGC+=("$c")
  echo "run $r: raw ${RAW[-1]}  segmesh ${SM[-1]} (${SMC[-1]} CPU s/GB)  wireguard-go ${WG[-1]} (${WGC[-1]} CPU s/GB) Gbit/s" >&2
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
mr=$(med "${RAW[@]}"); ms=$(med "${SM[@]}"); mw=$(med "${WG[@]}")
msc=$(med "${SMC[@]}"); mwc=$(med "${WGC[@]}")
echo "median Gbit/s over $RUNS runs of ${SECS}s, 1 TCP stream: raw veth $mr | wireguard-go $WGGO_VERSION $mw | segmesh $ms | segmesh/wireguard-go ratio $(python3 -c "print('%.3f' % ($ms/$mw))")"
echo "median CPU seconds per GB in the two tunnel processes: wireguard-go $mwc | segmesh $msc | segmesh/wireguard-go $(python3 -c "print('%.3f' % ($msc/$mwc))")"
