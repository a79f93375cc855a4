#!/usr/bin/env bash
# The load harness against a cluster on this machine: nats-server with JetStream, ASR asr
# processes (`serve --role asr`) and one edge (`serve --role edge`), then `callguard bench
# live --url` at each call count. Everything runs on loopback in a temporary folder and is
# stopped at the end. Compare with `callguard bench live` (one process) on the same machine.
# With HUB=1 a hub (`serve --role hub`) runs too and the supervisor screen watches it, so the
# lags include the edge -> NATS -> hub hop.
#   scripts/bench-cluster.sh [counts] [asr processes] [seconds]    e.g. 1,4 2 60
set -euo pipefail
cd "$(dirname "$0")/.."
counts=${1:-1,4}
nodes=${2:-1}
seconds=${3:-60}
bin=target/release/callguard
[[ -x $bin ]] || cargo build --release
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; sleep 2; kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$port" -js -sd "$tmp/js" >/dev/null 2>&1 &
pids+=($!)
url="nats://127.0.0.1:$port"
sleep 1
# The asr processes share the machine's cores between them: one thread per worker, since
# whisper.cpp's threads spin while they wait and more threads than cores slow everything.
workers=$(( $(nproc) / nodes )); (( workers >= 1 )) || workers=1
printf '[asr]\nworkers = %d\nthreads_per_worker = 1\n' "$workers" > "$tmp/asr.toml"
for i in $(seq 1 "$nodes"); do
  $bin serve --role asr --nats "$url" --node "asr-$i" --config "$tmp/asr.toml" 2>"$tmp/asr-$i.log" &
  pids+=($!)
done
ingest=$($bin token create --role ingest --name bench-ingest --data-dir "$tmp/edge" | tail -1)
sup=$($bin token create --role supervisor --name bench --data-dir "$tmp/edge" | tail -1)
watch=()
if [[ ${HUB:-0} == 1 ]]; then
  sup=$($bin token create --role supervisor --name bench --data-dir "$tmp/hub" | tail -1)
  hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  $bin serve --role hub --nats "$url" --node hub-1 --listen "127.0.0.1:$hport" --data-dir "$tmp/hub" 2>"$tmp/hub.log" &
  pids+=($!)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null && break; sleep 0.2; done
  watch=(--watch-url "http://127.0.0.1:$hport")
fi
for n in ${counts//,/ }; do
  eport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  $bin serve --role edge --nats "$url" --node edge-1 --listen "127.0.0.1:$eport" --data-dir "$tmp/edge" 2>"$tmp/edge.log" &
  edge=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$eport/healthz" >/dev/null && break; sleep 0.2; done
  echo "== $n calls, $nodes asr process(es) x $workers worker(s)"
  $bin bench live --url "http://127.0.0.1:$eport" --ingest-token "$ingest" --token "$sup" \
    --calls "$n" --duration "$seconds" "${watch[@]}" ${BENCH_FLAGS:-}
  kill "$edge"; for _ in $(seq 50); do kill -0 "$edge" 2>/dev/null || break; sleep 0.2; done; kill -9 "$edge" 2>/dev/null || true
done
