#!/usr/bin/env bash
# `make demo`: the daemon replaying sample calls in a loop as live calls, fresh supervisor, agent
# and QA tokens, the web UI's links (the live wall opens in a browser when this session has a
# display), and the live view of every call in this terminal (`callguard watch`). Ctrl-C stops
# both. The daemon's log goes to $DATA/demo-serve.log; the calls stay in $DATA for review.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./target/release/callguard
DATA=${DATA:-data}
ADDR=${ADDR:-127.0.0.1:8686}
FIX=tests/scenarios/audio
CALLS=("$FIX/demo-call.wav" "$FIX/en-media-threat.wav" "$FIX/mandarin-call.wav")
# Each sample call has an agent (by position); the demo agent token is the escalating call's.
AGENTS=(1001 1002 1003)

mkdir -p "$DATA"
token() { # name role [agent]
    "$BIN" token revoke "$1" --data-dir "$DATA" >/dev/null 2>&1 || true
    "$BIN" token create --name "$1" --role "$2" ${3:+--agent "$3"} --data-dir "$DATA" | tail -n 1
}
TOKEN=$(token demo-supervisor supervisor)
AGENT_TOKEN=$(token demo-agent agent "${AGENTS[1]}")
QA_TOKEN=$(token demo-qa qa)

REPLAYS=()
for i in "${!CALLS[@]}"; do REPLAYS+=(--replay "${CALLS[$i]}" --replay-agent "${AGENTS[$i]}"); done
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
Open in a browser (each link signs in with its own token):
  live wall (supervisor)  http://$ADDR/#token=$TOKEN
  agent screen (${AGENTS[1]})     http://$ADDR/agent#token=$AGENT_TOKEN
  calls for QA review     http://$ADDR/calls#token=$QA_TOKEN
  supervisor token        $TOKEN
  API, metrics            http://$ADDR/api/calls (docs/api.md), http://$ADDR/metrics
  daemon log              $DATA/demo-serve.log
The live view of every call follows (callguard watch). Ctrl-C stops the demo.

INFO
# Onto the wall at once where there is a desktop to open it on.
if [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]] && command -v xdg-open >/dev/null; then
    xdg-open "http://$ADDR/#token=$TOKEN" >/dev/null 2>&1 || true
fi
"$BIN" watch --url "ws://$ADDR/ws" --token "$TOKEN" || true
