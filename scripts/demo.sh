#!/usr/bin/env bash
# `make demo`: the daemon replaying sample calls in a loop as live calls, a fresh supervisor
# token, and the live view of every call in this terminal (`callguard watch`). Ctrl-C stops
# both. The daemon's log goes to $DATA/demo-serve.log.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./target/release/callguard
DATA=${DATA:-data}
ADDR=${ADDR:-127.0.0.1:8686}
FIX=tests/scenarios/audio
CALLS=("$FIX/demo-call.wav" "$FIX/en-media-threat.wav" "$FIX/mandarin-call.wav")

mkdir -p "$DATA"
"$BIN" token revoke demo-supervisor --data-dir "$DATA" >/dev/null 2>&1 || true
TOKEN=$("$BIN" token create --role supervisor --name demo-supervisor --data-dir "$DATA" | tail -n 1)

REPLAYS=()
for c in "${CALLS[@]}"; do REPLAYS+=(--replay "$c"); done
"$BIN" serve --listen "$ADDR" --data-dir "$DATA" "${REPLAYS[@]}" --loop 2>"$DATA/demo-serve.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM

# Ready when /healthz answers (the model loads first: a few seconds).
for _ in $(seq 1 120); do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "callguard serve stopped; its log ($DATA/demo-serve.log) ends:" >&2
        tail -n 20 "$DATA/demo-serve.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null; then break; fi
    sleep 0.5
done

cat <<INFO

callguard is serving on http://$ADDR, replaying ${#CALLS[@]} sample calls as live calls, in a loop.
  supervisor token  $TOKEN
  websocket         ws://$ADDR/ws?token=$TOKEN
  metrics           http://$ADDR/metrics
  daemon log        $DATA/demo-serve.log
The live view of every call follows (callguard watch). Ctrl-C stops the demo.

INFO
"$BIN" watch --url "ws://$ADDR/ws" --token "$TOKEN" || true
