#!/usr/bin/env python3
"""Writes the evaluation corpus: tests/corpus/{tune,test}/NAME.txt scenario files from the call
templates in tests/corpus/templates.toml (run by `make corpus`; the output is committed, the
audio is made from it by scripts/make-fixtures.sh).

Each template becomes VARIANTS calls. A variant draws, from a seed fixed by the template id
and the variant number (so the same templates always give the same corpus):
  - one alternative for every {slot} (the template's own slots, else the language's common
    ones; a slot used twice in a call gets the same choice),
  - the voices (espeak-ng voice and variant per leg), speaking rates and base pitches,
  - the line: level (quiet, normal, hot), hiss amplitude and noise seed, gain control,
    channel order (customer left or right), the pause between turns,
  - filler exchanges (identity checks, addresses) before the template's turns, so calls run
    from about 20 s to 5 minutes.
Chinese turns get their pinyin (with tone numbers) from pypinyin: espeak-ng reads pinyin far
better than characters.

Usage: make-corpus.py [--variants N] [--templates FILE] [--out DIR]
"""

import argparse
import hashlib
import random
import re
import sys
import tomllib
from pathlib import Path

FAMILIES = {
    "complaint", "repeated_complaint", "raised_voice", "threat_media", "threat_social",
    "threat_legal", "threat_regulator", "churn", "escalation_request", "calm",
}
REASONS = FAMILIES - {"calm"} | {"agent_conduct"}
EN_VOICES = ["en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f3", "en-us+m7", "en-gb-x-rp+f4",
             "en-us+f5", "en-gb+m4"]
ZH_VOICES = ["cmn-latn-pinyin+m3", "cmn-latn-pinyin+f2", "cmn-latn-pinyin+m1",
             "cmn-latn-pinyin+f4", "cmn-latn-pinyin"]
TURN = re.compile(r"^(customer|agent)([\^!~>]*):\s*(.+)$")
PAUSE = re.compile(r"^pause:\s*(\d+(?:\.\d+)?)$")
SLOT = re.compile(r"\{([a-z_0-9]+)\}")
ZH_PUNCT = {"，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": "!", "？": "?",
            ",": ",", ".": ".", "!": "!", "?": "?", "…": ".", "—": ","}
ZH_DIGITS = "ling2 yao1 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3".split()


def fail(msg):
    sys.exit(f"make-corpus: {msg}")


def pinyin_of(text):
    """The tone-numbered pinyin of a Chinese line, punctuation kept as ASCII, digits spoken
    one by one as in a phone number (12315: yao1 er4 san1 yao1 wu3)."""
    from pypinyin import Style, lazy_pinyin

    out = []
    for tok in lazy_pinyin(text, style=Style.TONE3, tone_sandhi=True, errors=lambda s: list(s)):
        tok = tok.strip()
        if not tok:
            continue
        if tok in ZH_PUNCT:
            if out:
                out[-1] += ZH_PUNCT[tok]
            continue
        if tok.isdigit():
            out.extend(ZH_DIGITS[int(d)] for d in tok)
        elif re.fullmatch(r"[a-zA-Z]+[0-5]?", tok):
            out.append(tok.lower())
        # Anything else (quotes, brackets, stray symbols) is not spoken.
    return " ".join(out)


def check_template(t, seen):
    tid = t.get("id", "")
    if not re.fullmatch(r"(en|zh)-[a-z0-9-]+", tid):
        fail(f"template id {tid!r}: lowercase [a-z0-9-], starting en- or zh-")
    if tid in seen:
        fail(f"template id {tid!r} twice")
    seen.add(tid)
    if t.get("lang") != tid[:2]:
        fail(f"{tid}: lang must be {tid[:2]}")
    if t.get("family") not in FAMILIES:
        fail(f"{tid}: family {t.get('family')!r} is not one of {sorted(FAMILIES)}")
    if t.get("expect") not in ("alert", "calm"):
        fail(f"{tid}: expect is alert or calm")
    if t.get("split") not in ("tune", "test"):
        fail(f"{tid}: split is tune or test")
    for key in ("reasons", "text_reasons"):
        for r in t.get(key, []):
            if r not in REASONS:
                fail(f"{tid}: {key}: unknown reason {r!r}")
    justifying = 0
    for turn in t.get("turns", []):
        m = TURN.match(turn)
        if not m and not PAUSE.match(turn):
            fail(f"{tid}: turn {turn!r} is neither 'LEG FLAGS: TEXT' nor 'pause: N'")
        if m and "!" in m.group(2):
            justifying += 1
    if t["expect"] == "alert" and justifying != 1:
        fail(f"{tid}: an alert template marks exactly one turn with !")
    if t["expect"] == "calm" and justifying:
        fail(f"{tid}: a calm template marks no turn with !")


def fill(text, slots, common, chosen, rng, tid):
    def pick(m):
        name = m.group(1)
        if name not in chosen:
            options = slots.get(name) or common.get(name)
            if not options:
                fail(f"{tid}: no slot {{{name}}}")
            chosen[name] = rng.choice(options)
        return chosen[name]

    # Slots may hold slots (a threat naming {company}): a few rounds resolve them.
    for _ in range(4):
        text = SLOT.sub(pick, text)
    return text


def make_call(t, variant, cfg):
    tid, lang = t["id"], t["lang"]
    seed = int(hashlib.sha256(f"{tid}/{variant}".encode()).hexdigest()[:12], 16)
    rng = random.Random(seed)
    common = cfg["common"][lang]
    slots = t.get("slots", {})
    chosen = {}
    voices = EN_VOICES if lang == "en" else ZH_VOICES
    cust_voice, agent_voice = rng.sample(voices, 2)
    level = rng.choices(["quiet", "normal", "hot"], weights=[2, 6, 2])[0]
    noise = rng.choice([0.001, 0.002, 0.003, 0.005])
    noise_seed = rng.randrange(100)
    agc = rng.random() < 0.2
    order = "agent-left" if rng.random() < 0.25 else "customer-left"
    gap = rng.choice([0.4, 0.55, 0.7, 0.9])
    speed = (rng.randrange(140, 181, 5), rng.randrange(140, 176, 5))
    pitch = (rng.randrange(35, 61, 5), rng.randrange(40, 66, 5))
    # Fillers: most calls short, one variant in ten long (minutes of routine talk first).
    pool = cfg["filler"][lang]
    n_fill = rng.choice([0, 0, 0, 1, 1, 2]) if rng.random() >= 0.1 else rng.randrange(7, 13)
    fillers = [rng.choice(pool) for _ in range(n_fill)]
    turns = []
    body = list(t["turns"])
    # The greeting (when the template opens with one) stays first.
    head = [body.pop(0)] if body and "{greeting}" in body[0] else []
    for turn in head + [x for f in fillers for x in f["turns"]] + body:
        turns.append(turn)
    lines = [
        f"# Generated by scripts/make-corpus.py from tests/corpus/templates.toml: {tid}, variant {variant}.",
        f"# {t.get('note', '')}".rstrip(),
        f"# expect: {t['expect']}",
        f"# reasons: {', '.join(t.get('reasons', []))}",
    ]
    if "text_reasons" in t:
        lines.append(f"# text-reasons: {', '.join(t['text_reasons'])}")
    lines += [
        f"# family: {t['family']}",
        f"# split: {t['split']}",
    ]
    if "class" in t:
        lines.append(f"# class: {t['class']}")
    if lang == "zh" and t["expect"] == "alert" and t["family"] != "raised_voice":
        # Whisper cannot hear espeak-ng's Mandarin words (../shared/notes/test-voices.md):
        # a call that escalates by its words is judged on its texts (eval --text) only.
        lines.append("# whisper: skip")
    lines += [
        f"# voices: {cust_voice} {agent_voice}",
        f"# speed: {speed[0]} {speed[1]}",
        f"# pitch: {pitch[0]} {pitch[1]}",
        f"# level: {level}",
        f"# noise: {noise} {noise_seed}",
        f"# agc: {'on' if agc else 'off'}",
        f"# order: {order}",
        f"# gap: {gap}",
    ]
    for turn in turns:
        p = PAUSE.match(turn)
        if p:
            lines.append(f"pause\t{p.group(1)}")
            continue
        m = TURN.match(turn)
        if not m:
            fail(f"{tid}: filler turn {turn!r} is not 'LEG: TEXT'")
        leg, flags, text = m.groups()
        text = fill(text, slots, common, chosen, rng, tid).strip()
        if "\t" in text or "{" in text:
            fail(f"{tid}: turn {text!r} holds a tab or an unfilled slot")
        line = f"{leg}{flags}\t{text}"
        if lang == "zh":
            line += f"\t{pinyin_of(text)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main():
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--templates", type=Path, default=root / "tests/corpus/templates.toml")
    ap.add_argument("--out", type=Path, default=root / "tests/corpus")
    args = ap.parse_args()
    with open(args.templates, "rb") as f:
        cfg = tomllib.load(f)
    for lang in ("en", "zh"):
        if lang not in cfg.get("common", {}) or lang not in cfg.get("filler", {}):
            fail(f"templates need [common.{lang}] and [[filler.{lang}]]")
    seen = set()
    for t in cfg.get("template", []):
        check_template(t, seen)
    written = 0
    for split in ("tune", "test"):
        d = args.out / split
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.txt"):
            old.unlink()
    for t in cfg["template"]:
        for v in range(args.variants):
            text = make_call(t, v, cfg)
            (args.out / t["split"] / f"{t['id']}-v{v}.txt").write_text(text, encoding="utf-8")
            written += 1
    print(f"make-corpus: {written} calls from {len(cfg['template'])} templates into {args.out}")


if __name__ == "__main__":
    main()
