#!/usr/bin/env bash
# Builds the test and demo recordings from the scenario texts in tests/scenarios/, with
# espeak-ng (speech) and sox (mixing, phone band, noise, encoding). Output goes to
# tests/fixtures/generated/ (git-ignored); it is rebuilt only when a scenario or this script
# changes. For each scenario NAME it writes:
#   NAME.wav        stereo, 8 kHz mu-law: customer on the left (channel 0), agent on the right
#   NAME.turns.tsv  leg, start ms, end ms, text of every turn, as placed in the recording
# plus a few variants of refund-call used to test other input paths:
#   refund-call-mono16k.wav       mono 16-bit PCM at 16 kHz (one "mixed" leg)
#   refund-call-44k-float.wav     stereo 32-bit float at 44.1 kHz
#   long-call.wav                 60 s: the demo call, then the refund call, for the RTF benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
# Repeatable noise and dither: the same scenario text always gives the same audio, so a test
# that passes here passes on every machine.
export SOX_OPTS="-R"
src=tests/scenarios
out=tests/fixtures/generated
mkdir -p "$out"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-fixtures: $tool is missing (make deps installs it)" >&2; exit 1; }
done

# The phone line: band-limited speech with a faint hiss, as a real 8 kHz call has.
GAP=0.7          # seconds of silence between turns
NOISE=0.002      # hiss amplitude (about -57 dBFS RMS)
RATE=16000       # working rate before the final 8 kHz encode

stamp_of() { cat "$1" "$0" | sha256sum | cut -c1-16; }

build_scenario() {
  local name=$1 file=$src/$1.txt
  local stamp; stamp=$(stamp_of "$file")
  if [[ -f $out/$name.wav && -f $out/$name.stamp && $(cat "$out/$name.stamp") == "$stamp" ]]; then
    return
  fi
  local tmp; tmp=$(mktemp -d)
  local t=0 n=0 voice
  : > "$tmp/turns.tsv"
  local cust=() agent=()
  while IFS=$'\t' read -r leg text spoken; do
    [[ -z $leg || $leg == \#* ]] && continue
    n=$((n + 1))
    # A third column is what to speak instead of the text: pinyin with tone numbers for
    # Mandarin, which espeak-ng's cmn-latn-pinyin voice reads far better than characters.
    if [[ -n ${spoken:-} ]]; then voice=cmn-latn-pinyin
    elif [[ $leg == customer ]]; then voice=en-us+m3
    else voice=en-us+f2; fi
    espeak-ng -v "$voice" -s 155 -w "$tmp/raw$n.wav" "${spoken:-$text}"
    sox "$tmp/raw$n.wav" -r $RATE -c 1 -b 16 "$tmp/turn$n.wav" pad 0 $GAP
    local dur; dur=$(soxi -D "$tmp/turn$n.wav")
    sox -n -r $RATE -c 1 -b 16 "$tmp/sil$n.wav" trim 0 "$dur"
    local speech; speech=$(soxi -D "$tmp/raw$n.wav")
    awk -v l="$leg" -v s="$t" -v d="$speech" -v x="$text" \
      'BEGIN { printf "%s\t%d\t%d\t%s\n", l, s * 1000, (s + d) * 1000, x }' >> "$tmp/turns.tsv"
    if [[ $leg == customer ]]; then cust+=("$tmp/turn$n.wav"); agent+=("$tmp/sil$n.wav")
    else agent+=("$tmp/turn$n.wav"); cust+=("$tmp/sil$n.wav"); fi
    t=$(awk -v a="$t" -v b="$dur" 'BEGIN { print a + b }')
  done < "$file"
  sox "${cust[@]}" "$tmp/cust.wav"
  sox "${agent[@]}" "$tmp/agent.wav"
  local len; len=$(soxi -D "$tmp/cust.wav")
  for side in cust agent; do
    sox -n -r $RATE -c 1 -b 16 "$tmp/noise-$side.wav" synth "$len" whitenoise vol $NOISE
    sox -m "$tmp/$side.wav" "$tmp/noise-$side.wav" "$tmp/$side-line.wav" sinc 300-3400 norm -4
  done
  sox -M "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 8000 -e mu-law -b 8 "$out/$name.wav"
  mv "$tmp/turns.tsv" "$out/$name.turns.tsv"
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
