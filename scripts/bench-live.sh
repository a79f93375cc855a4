#!/usr/bin/env bash
# `make bench-live`: the daemon with N sample calls replayed at once (real time), watched by
# `callguard watch`; reports how long after the words their final transcript and each transfer
# prompt reached the screen (in call time, which runs with the wall clock), and the Whisper
# pool's figures from /metrics. Usage: scripts/bench-live.sh [seconds] [call ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_WATCH=${1:-70}
shift || true
CALLS=("$@")
[ ${#CALLS[@]} -gt 0 ] || CALLS=(demo-call en-media-threat mandarin-call)
BIN=./target/release/callguard
ADDR=${ADDR:-127.0.0.1:18690}
DATA=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

TOKEN=$("$BIN" token create --role supervisor --name bench --data-dir "$DATA" | tail -n 1)
REPLAYS=()
for c in "${CALLS[@]}"; do REPLAYS+=(--replay "tests/scenarios/audio/$c.wav"); done
"$BIN" serve --listen "$ADDR" --data-dir "$DATA" "${REPLAYS[@]}" ${SERVE_FLAGS:-} 2>"$DATA/log" &
PID=$!
for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null && break
    sleep 0.5
done
timeout "$SECONDS_TO_WATCH" "$BIN" watch --url "ws://$ADDR/ws" --token "$TOKEN" --format jsonl \
    >"$DATA/events.jsonl" || true
exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}"
printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
METRICS=$(cat <&3)

echo "== ${#CALLS[@]} calls at once (${CALLS[*]}), $(nproc) cores ${SERVE_FLAGS:-}"
python3 - "$DATA/events.jsonl" <<'PY'
import json, sys
lags, prompts = [], []
for line in open(sys.argv[1]):
    v = json.loads(line)
    if v["type"] == "transcript" and v.get("final", True):
        lags.append(v["at_ms"] - v["end_ms"])
    if v["type"] == "alert" and v["evidence"]["quotes"]:
        words = max(q["end_ms"] for q in v["evidence"]["quotes"])
        prompts.append((v["call_id"], v["at_ms"] - words))
if not lags:
    sys.exit("no final transcripts seen")
lags.sort()
pick = lambda q: lags[min(len(lags) - 1, int(len(lags) * q))] / 1000
print(f"words -> final transcript: n={len(lags)} median {pick(0.5):.1f} s, p90 {pick(0.9):.1f} s, max {lags[-1]/1000:.1f} s")
for call, ms in prompts:
    print(f"transfer prompt {call}: {ms/1000:.1f} s after the words")
PY
echo "$METRICS" | grep -E '^callguard_asr_(real_time_factor|utterances_total|partials_total|partials_shed_total|utterances_dropped_total) '
