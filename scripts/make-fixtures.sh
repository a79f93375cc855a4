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
#   # family: F                   the reason family it exercises (calm for none): eval's tables
#   # split: tune | test          the corpus half it belongs to (tests/corpus)
#   # class: N                    the detection failure class it covers (issue 14)
#   # whisper: skip               judged on its texts only (eval --text): a Mandarin call that
#                                 escalates by its words, which Whisper cannot hear from espeak
#   # level: quiet | normal | hot the line level of the whole call
#   # voices: CUST AGENT          espeak-ng voices (default en-us+m3 en-us+f2; Mandarin
#                                 cmn-latn-pinyin for both)
#   # speed: CUST AGENT           words per minute of calm turns (default 155)
#   # pitch: CUST AGENT           espeak-ng base pitch 0-99 of calm turns (default 50)
#   # noise: AMPLITUDE SEED       line hiss (default 0.002) and which stretch of noise (default
#                                 the first): the same call under another noise sample
#   # agc: on                     phone gain control: every turn levelled to the same peak, so a
#                                 raised turn is no louder, only higher and brighter
#   # order: agent-left           the agent on channel 0 (default: the customer)
#   # gap: SECONDS                silence between turns (default 0.7)
#   <leg><flags> TAB <text> [TAB <pinyin>]
#     leg: customer | agent; flags: ^ raised (louder, higher, faster), ^^ strongly raised (a
#     shout, about 15 dB over calm speech), ! the justifying turn (an alert must come after it
#     starts), ~ starts while the other leg's previous turn is still speaking (talk-over),
#     > spoken fast (1.8 times the leg's speed: a customer speeding up, an agent rushing);
#     pinyin with tone numbers makes the turn Mandarin, spoken by espeak-ng's cmn-latn-pinyin
#     voice, which reads it far better than characters.
#   pause TAB SECONDS             silence on both legs (dead air, a hold)
#
# Usage: make-fixtures.sh            tests/scenarios/*.txt into tests/scenarios/audio/
#        make-fixtures.sh corpus [tune|test]
#                                    tests/corpus/{tune,test}/*.txt into tests/corpus/audio/{tune,test}/
#                                    (scripts/make-corpus.py writes those texts), two at a time;
#                                    both halves unless one is named
#
# For each scenario NAME it writes:
#   NAME.wav          stereo, 8 kHz mu-law: customer left (channel 0), agent right (channel 1)
#                     unless `order: agent-left`
#   NAME.turns.tsv    leg, start ms, end ms, text of every turn as placed in the recording (the
#                     end is where its words end, without the voice's trailing silence)
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
calc() { awk "BEGIN { print $* }"; }
ms() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000 }'; }

# Builds scenario file $1 into folder $2 (NAME.wav, NAME.turns.tsv, NAME.expect.toml).
build_scenario() {
  local file=$1 dest=$2
  local name; name=$(basename "$file" .txt)
  local stamp; stamp=$(stamp_of "$file")
  if [[ -f $dest/$name.wav && -f $dest/$name.stamp && $(cat "$dest/$name.stamp") == "$stamp" ]]; then
    return
  fi
  mkdir -p "$dest"
  local tmp; tmp=$(mktemp -d)
  local t=0 n=0 lang=en justify_start="" justify_end=""
  local gap; gap=$(directive gap "$file"); gap=${gap:-$GAP}
  local voices speeds pitches
  read -r -a voices <<< "$(directive voices "$file")"
  read -r -a speeds <<< "$(directive speed "$file")"
  read -r -a pitches <<< "$(directive pitch "$file")"
  local agc; agc=$(directive agc "$file")
  # Each leg is a list of pieces (silence, speech) placed end to end; leg_end is where it is.
  local cust=() agent=() cust_end=0 agent_end=0 prev_start=0 prev_words_end=0 prev_leg=""
  : > "$tmp/turns.tsv"
  while IFS=$'\t' read -r legflags text spoken; do
    [[ -z $legflags || $legflags == \#* ]] && continue
    n=$((n + 1))
    if [[ $legflags == pause ]]; then
      t=$(calc "$t + $text")
      continue
    fi
    local leg=${legflags%%[!a-z]*} flags=${legflags#"${legflags%%[!a-z]*}"}
    local i=0; [[ $leg == agent ]] && i=1
    local base pitch=${pitches[$i]:-50} speed=${speeds[$i]:-155}
    [[ $flags == *'>'* ]] && speed=$((speed * 18 / 10))
    if [[ -n ${spoken:-} ]]; then base=${voices[$i]:-cmn-latn-pinyin}; lang=zh
    elif [[ $leg == customer ]]; then base=${voices[0]:-en-us+m3}
    else base=${voices[1]:-en-us+f2}; fi
    # Raised: louder, higher and faster, as an angry speaker is. Mandarin's tones already swing
    # the pitch, so its raised turns go higher for the same audible effect; English stays
    # moderate because Whisper garbles espeak's high-pitched English. A shout (^^) goes
    # further and is driven into the limiter, as a shout into a handset is.
    local zh_extra=0; [[ -n ${spoken:-} ]] && zh_extra=10
    if [[ $flags == *^^* ]]; then
      espeak-ng -v "$base" -a 200 -p $((pitch + 20 + zh_extra)) -s $((speed + 15)) -w "$tmp/raw$n.wav" "${spoken:-$text}"
      sox "$tmp/raw$n.wav" -r $RATE -c 1 -b 16 "$tmp/speech$n.wav" gain -l 14
    elif [[ $flags == *^* ]]; then
      espeak-ng -v "$base" -a 200 -p $((pitch + 12 + zh_extra)) -s $((speed + 10)) -w "$tmp/raw$n.wav" "${spoken:-$text}"
      sox "$tmp/raw$n.wav" -r $RATE -c 1 -b 16 "$tmp/speech$n.wav"
    else
      espeak-ng -v "$base" -p "$pitch" -s "$speed" -w "$tmp/raw$n.wav" "${spoken:-$text}"
      sox "$tmp/raw$n.wav" -r $RATE -c 1 -b 16 "$tmp/speech$n.wav"
    fi
    if [[ $agc == on ]]; then
      sox "$tmp/speech$n.wav" "$tmp/agc$n.wav" norm -6 && mv "$tmp/agc$n.wav" "$tmp/speech$n.wav"
    fi
    local speech; speech=$(soxi -D "$tmp/speech$n.wav")
    # espeak-ng ends every file with about 0.3 s of silence: the turn's words end earlier.
    local voiced
    voiced=$(sox "$tmp/speech$n.wav" -n reverse silence 1 0.005 -45d reverse stat 2>&1 | awk '/^Length/ { print $3 }')
    voiced=${voiced:-$speech}
    local start=$t
    if [[ $flags == *~* && -n $prev_leg && $prev_leg != "$leg" ]]; then
      # Talk-over: in before the other leg's words end, by up to 1.2 s (at most half of them).
      start=$(awk -v s="$prev_start" -v e="$prev_words_end" 'BEGIN { o = (e - s) / 2; if (o > 1.2) o = 1.2; print e - o }')
    fi
    local leg_end=$cust_end; [[ $leg == agent ]] && leg_end=$agent_end
    # A leg never overlaps itself.
    start=$(awk -v s="$start" -v l="$leg_end" 'BEGIN { print (s < l) ? l : s }')
    local lead; lead=$(calc "$start - $leg_end")
    sox -n -r $RATE -c 1 -b 16 "$tmp/lead$n.wav" trim 0 "$lead"
    local end; end=$(calc "$start + $speech")
    local words_end; words_end=$(calc "$start + $voiced")
    printf '%s\t%s\t%s\t%s\n' "$leg" "$(ms "$start")" "$(ms "$words_end")" "$text" >> "$tmp/turns.tsv"
    if [[ $flags == *!* && -z $justify_start ]]; then justify_start=$(ms "$start"); justify_end=$(ms "$words_end"); fi
    if [[ $leg == customer ]]; then cust+=("$tmp/lead$n.wav" "$tmp/speech$n.wav"); cust_end=$end
    else agent+=("$tmp/lead$n.wav" "$tmp/speech$n.wav"); agent_end=$end; fi
    prev_start=$start; prev_words_end=$words_end; prev_leg=$leg
    t=$(awk -v a="$t" -v e="$end" -v g="$gap" 'BEGIN { m = (e > a) ? e : a; print m + g }')
  done < "$file"
  # Both legs run to the end of the call (the last turn and its gap).
  local tail_c tail_a
  tail_c=$(calc "$t - $cust_end"); tail_a=$(calc "$t - $agent_end")
  sox -n -r $RATE -c 1 -b 16 "$tmp/tail-cust.wav" trim 0 "$tail_c"
  sox -n -r $RATE -c 1 -b 16 "$tmp/tail-agent.wav" trim 0 "$tail_a"
  sox "${cust[@]}" "$tmp/tail-cust.wav" "$tmp/cust.wav"
  sox "${agent[@]}" "$tmp/tail-agent.wav" "$tmp/agent.wav"
  local len; len=$(soxi -D "$tmp/cust.wav")
  local peak
  case $(directive level "$file") in
    quiet) peak=-28 ;;
    hot) peak=-0.5 ;;
    *) peak=-4 ;;
  esac
  local noise seed
  read -r noise seed <<< "$(directive noise "$file")"
  noise=${noise:-$NOISE}
  # Another seed is another stretch of the same (repeatable) noise.
  local skip; skip=$(calc "${seed:-0} * 0.37")
  for side in cust agent; do
    sox -n -r $RATE -c 1 -b 16 "$tmp/noise-$side.wav" synth "$(calc "$len + $skip")" whitenoise vol "$noise" trim "$skip"
    sox -m "$tmp/$side.wav" "$tmp/noise-$side.wav" "$tmp/$side-line.wav" sinc 300-3400 norm "$peak"
  done
  local left=cust right=agent legs=""
  if [[ $(directive order "$file") == agent-left ]]; then
    left=agent; right=cust; legs='legs = ["agent", "customer"]'
  fi
  sox -M "$tmp/$left-line.wav" "$tmp/$right-line.wav" -r 8000 -e mu-law -b 8 "$dest/$name.wav"
  mv "$tmp/turns.tsv" "$dest/$name.turns.tsv"
  local expect; expect=$(directive expect "$file")
  if [[ -n $expect ]]; then
    local reasons text_reasons family split class
    reasons=$(directive reasons "$file")
    text_reasons=$(directive text-reasons "$file")
    family=$(directive family "$file")
    split=$(directive split "$file")
    class=$(directive class "$file")
    {
      echo "# Generated by scripts/make-fixtures.sh from $file"
      echo "alert = $([[ $expect == alert ]] && echo true || echo false)"
      echo "lang = \"$lang\""
      [[ -n $justify_start ]] && echo "after_ms = $justify_start" && echo "said_by_ms = $justify_end"
      echo "reasons = $(toml_list "$reasons")"
      echo "text_reasons = $(toml_list "${text_reasons:-$reasons}")"
      echo "transcript = \"$name.turns.tsv\""
      [[ -n $family ]] && echo "family = \"$family\""
      [[ -n $split ]] && echo "split = \"$split\""
      [[ -n $class ]] && echo "class = $class"
      [[ $(directive whisper "$file") == skip ]] && echo "whisper = false"
      [[ -n $legs ]] && echo "$legs"
    } > "$dest/$name.expect.toml"
  fi
  if [[ $name == refund-call ]]; then
    sox -m "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 16000 -c 1 -e signed-integer -b 16 \
      "$dest/refund-call-mono16k.wav" norm -3
    sox -M "$tmp/cust-line.wav" "$tmp/agent-line.wav" -r 44100 -e floating-point -b 32 \
      "$dest/refund-call-44k-float.wav"
  fi
  rm -rf "$tmp"
  echo "$stamp" > "$dest/$name.stamp"
  echo "make-fixtures: $dest/$name.wav"
}

if [[ ${1:-} == --one ]]; then
  build_scenario "$2" "$3"
  exit
fi
if [[ ${1:-} == corpus ]]; then
  splits=("${@:2}")
  ((${#splits[@]})) || splits=(tune test)
  for split in "${splits[@]}"; do
    [[ $split == tune || $split == test ]] || { echo "make-fixtures: corpus splits are tune and test, not $split" >&2; exit 2; }
    ls tests/corpus/$split/*.txt >/dev/null 2>&1 || continue
    # Stale audio of calls no longer in the corpus goes.
    for w in tests/corpus/audio/$split/*.stamp; do
      [[ -e $w ]] || continue
      [[ -f tests/corpus/$split/$(basename "$w" .stamp).txt ]] || rm -f "${w%.stamp}".*
    done
    printf '%s\n' tests/corpus/$split/*.txt \
      | xargs -P "$(nproc)" -I{} "$0" --one {} tests/corpus/audio/$split
  done
  exit
fi

for f in "$src"/*.txt; do
  build_scenario "$f" "$out"
done
if [[ ! -f $out/long-call.wav || $out/long-call.wav -ot $out/demo-call.stamp || $out/long-call.wav -ot $out/refund-call.stamp ]]; then
  sox "$out/demo-call.wav" "$out/refund-call.wav" "$out/long-call.wav" trim 0 60
  echo "make-fixtures: $out/long-call.wav"
fi
