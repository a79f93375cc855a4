#!/usr/bin/env bash
# Builds the test, demo and evaluation calls from the scenario texts in tests/scenarios/, with
# espeak-ng (speech) and sox (mixing, phone band, noise, encoding). Output goes to
# tests/scenarios/audio/ (git-ignored) and is rebuilt only when a scenario or this script
# changes.
#
# Scenario format (one file per call, NAME.txt):
#   # comment lines; these directives are read:
#   # expect: alert | calm        an evaluation scenario: should a transfer prompt fire?
#   # reasons: a, b               reasons an alert must carry
#   # text-reasons: a, b          reasons it must carry when `eval --text` uses these texts
#                                 instead of Whisper (default: the same as reasons)
#   # level: quiet | normal | hot the line level of the whole call
#   <leg><flags> TAB <text> [TAB <pinyin>]
#     leg: customer | agent; flags: ^ raised (louder, higher, faster), ! the justifying turn
#     (an alert must come after it starts); pinyin with tone numbers makes the turn Mandarin,
#     spoken by espeak-ng's cmn-latn-pinyin voice, which reads it far better than characters.
#
# For each scenario NAME it writes:
#   NAME.wav          stereo, 8 kHz mu-law: customer left (channel 0), agent right (channel 1)
#   NAME.turns.tsv    leg, start ms, end ms, text of every turn as placed in the recording
#   NAME.expect.toml  for evaluation scenarios: what `callguard eval` checks
# plus variants of refund-call for other input paths:
#   refund-call-mono16k.wav      mono 16-bit PCM at 16 kHz (one "mixed" leg)
#   refund-call-44k-float.wav    stereo 32-bit float at 44.1 kHz
#   long-call.wav                60 s: the demo call, then the refund call (RTF benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
# Repeatable noise and dither: the same scenario text always gives the same audio, so a test
# that passes here passes on every machine.
export SOX_OPTS="-R -V1"
src=tests/scenarios
out=tests/scenarios/audio
mkdir -p "$out"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-fixtures: $tool is missing (make deps installs it)" >&2; exit 1; }
done

GAP=0.7          # seconds of silence between turns
NOISE=0.002      # line hiss amplitude (about -57 dBFS RMS)
RATE=16000       # working rate before the final 8 kHz encode

stamp_of() { cat "$1" "$0" | sha256sum | cut -c1-16; }
directive() { sed -n "s/^# $1: *//p" "$2" | head -n 1; }
toml_list() { # "a, b" -> ["a", "b"]
  local IFS=','; local items=() x
  for x in $1; do x=$(echo "$x" | xargs); [[ -n $x ]] && items+=("\"$x\""); done
  local joined; joined=$(IFS=,; echo "${items[*]}"); echo "[${joined//,/, }]"
}

build_scenario() {
  local name=$1 file=$src/$1.txt
  local stamp; stamp=$(stamp_of "$file")
  if [[ -f $out/$name.wav && -f $out/$name.stamp && $(cat "$out/$name.stamp") == "$stamp" ]]; then
    return
  fi
  local tmp; tmp=$(mktemp -d)
  local t=0 n=0 voice lang=en justify_start="" justify_end=""
  : > "$tmp/turns.tsv"
  local cust=() agent=()
  while IFS=$'\t' read -r legflags text spoken; do
    [[ -z $legflags || $legflags == \#* ]] && continue
    n=$((n + 1))
    local leg=${legflags%%[!a-z]*} flags=${legflags#"${legflags%%[!a-z]*}"}
    local base
    if [[ -n ${spoken:-} ]]; then base=cmn-latn-pinyin; lang=zh
    elif [[ $leg == customer ]]; then base=en-us+m3
    else base=en-us+f2; fi
    if [[ $flags == *^* ]]; then
      # Raised: louder, higher and faster, as an angry speaker is. Mandarin's tones already
      # swing the pitch, so its raised turns go higher for the same audible effect; English
      # stays moderate because Whisper garbles espeak's high-pitched English.
      local pitch=62
      [[ -n ${spoken:-} ]] && pitch=72
      espeak-ng -v "$base" -a 200 -p "$pitch" -s 165 -w "$tmp/raw$n.wav" "${spoken:-$text}"
    else
      espeak-ng -v "$base" -s 155 -w "$tmp/raw$n.wav" "${spoken:-$text}"
    fi
    sox "$tmp/raw$n.wav" -r $RATE -c 1 -b 16 "$tmp/turn$n.wav" pad 0 $GAP
    local dur; dur=$(soxi -D "$tmp/turn$n.wav")
    sox -n -r $RATE -c 1 -b 16 "$tmp/sil$n.wav" trim 0 "$dur"
    local speech; speech=$(soxi -D "$tmp/raw$n.wav")
    local s_ms e_ms
    s_ms=$(awk -v s="$t" 'BEGIN { printf "%d", s * 1000 }')
    e_ms=$(awk -v s="$t" -v d="$speech" 'BEGIN { printf "%d", (s + d) * 1000 }')
    printf '%s\t%s\t%s\t%s\n' "$leg" "$s_ms" "$e_ms" "$text" >> "$tmp/turns.tsv"
    if [[ $flags == *!* && -z $justify_start ]]; then justify_start=$s_ms; justify_end=$e_ms; fi
    if [[ $leg == customer ]]; then cust+=("$tmp/turn$n.wav"); agent+=("$tmp/sil$n.wav")
    else agent+=("$tmp/turn$n.wav"); cust+=("$tmp/sil$n.wav"); fi
    t=$(awk -v a="$t" -v b="$dur" 'BEGIN { print a + b }')
  done < "$file"
  sox "${cust[@]}" "$tmp/cust.wav"
  sox "${agent[@]}" "$tmp/agent.wav"
  local len; len=$(soxi -D "$tmp/cust.wav")
  local peak
  case $(directive level "$file") in
    quiet) peak=-28 ;;
    hot) peak=-0.5 ;;
    *) peak=-4 ;;
  esac
  for side in cust agent; do
    sox -n -r $RATE -c 1 -b 16 "$tmp/noise-$side.wav" synth "$len" whitenoise vol $NOISE
    sox -m "$tmp/$side.wav" "$tmp/noise-$side.wav" "$tmp/$side-line.wav" sinc 300-3400 norm "$peak"
  done
  sox -M "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 8000 -e mu-law -b 8 "$out/$name.wav"
  mv "$tmp/turns.tsv" "$out/$name.turns.tsv"
  local expect; expect=$(directive expect "$file")
  if [[ -n $expect ]]; then
    local reasons text_reasons
    reasons=$(directive reasons "$file")
    text_reasons=$(directive text-reasons "$file")
    {
      echo "# Generated by scripts/make-fixtures.sh from tests/scenarios/$name.txt"
      echo "alert = $([[ $expect == alert ]] && echo true || echo false)"
      echo "lang = \"$lang\""
      [[ -n $justify_start ]] && echo "after_ms = $justify_start" && echo "said_by_ms = $justify_end"
      echo "reasons = $(toml_list "$reasons")"
      echo "text_reasons = $(toml_list "${text_reasons:-$reasons}")"
      echo "transcript = \"$name.turns.tsv\""
    } > "$out/$name.expect.toml"
  fi
  if [[ $name == refund-call ]]; then
    sox -m "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 16000 -c 1 -e signed-integer -b 16 \
      "$out/refund-call-mono16k.wav" norm -3
    sox -M "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 44100 -e floating-point -b 32 \
      "$out/refund-call-44k-float.wav"
  fi
  rm -rf "$tmp"
  echo "$stamp" > "$out/$name.stamp"
  echo "make-fixtures: $out/$name.wav"
}

for f in "$src"/*.txt; do
  build_scenario "$(basename "$f" .txt)"
done
if [[ ! -f $out/long-call.wav || $out/long-call.wav -ot $out/demo-call.stamp || $out/long-call.wav -ot $out/refund-call.stamp ]]; then
  sox "$out/demo-call.wav" "$out/refund-call.wav" "$out/long-call.wav" trim 0 60
  echo "make-fixtures: $out/long-call.wav"
fi
