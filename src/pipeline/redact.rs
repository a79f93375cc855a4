//! PII redaction of transcript text: payment card numbers, phone numbers, Chinese resident ID
//! numbers, e-mail addresses and other long digit runs become `[card]`, `[phone]`, `[id]`,
//! `[email]` and `[digits]` in what is stored and streamed.
//!
//! A pure module: no I/O, no clock. [`Redactor::find`] returns the spans (byte offsets into
//! the text, sorted, never overlapping) and [`Redactor::redact`] the text with each span
//! replaced by its placeholder. [`PiiSpan::position`] maps a span to fractions of the text's
//! length in characters, so that a caller can place it proportionally in time within a
//! Whisper segment and silence that stretch of a stored recording (`silence_audio`).
//!
//! What it recognises, in the many ways Whisper writes numbers ("4412 3456 7890 1234",
//! "4412-3456-7890-1234", "4,412,345,678,901,234", "four four one two", "4 4 1 2",
//! "double five", "oh" for zero, "twenty-one", 幺三八 with 幺 for 1 and 两 for 2, 〇/零,
//! full-width ０-９, and any mix of them):
//! - card: 13-19 digits starting 2-6 that pass the Luhn check (written groups must look like
//!   a card's: one block, fours, 4-6-5 or 4-6-4, or thousands groups);
//! - phone: Chinese mobiles (1[3-9] + 9 digits, also after 86 or 0086), Chinese and other
//!   landlines with a leading 0 (10-12 digits), 400/800 numbers, North-American numbers
//!   (10 digits, or 11 with a leading 1), anything after `+`/"plus" of 8-15 digits, and
//!   international numbers dialled with 00;
//! - id: the 18-character Chinese resident ID (GB 11643): 17 digits and a check character
//!   (0-9 or X, written or spoken as "x"/"ex"/叉) passing ISO 7064 MOD 11-2, with a valid
//!   birth date (1900-2099) in characters 7-14;
//! - email: `local@domain.tld`, and the spoken "john dot smith at example dot com" whose last
//!   label is a common top-level domain;
//! - digits: any other run of at least `min_digits` digits (account numbers, codes), unless
//!   it is plainly an amount or a quantity (a currency sign or unit next to it: `$125000`,
//!   125000元, "125000 dollars", a decimal fraction), a date (2024-03-15, 15 03 2024), a pair
//!   of years (1990-2000), or a public service number (12315, 110).
//!
//! Digits join into one run across spaces, dashes and parentheses; a comma or a full stop
//! joins only single digits or spoken ones ("four, four, one"), 3-digit thousands groups
//! (`4,412,345`) and dotted groups of three or more (`415.555.2671`), so "$1,250.00",
//! "10:30" and "2024年3月15日" fall apart into short pieces. When kinds compete for the same
//! digits the more specific wins: email > id > card > phone > digits (a Luhn-valid ID number
//! is an ID, the digits inside an address belong to the address, a Luhn-failing 16-digit
//! number is only digits). A run too long for any one number (over 19 digits) is split, at
//! its written groups or spoken words, into the specific numbers found in it; the rest is
//! digits if long enough.
//!
//! Each kind can be switched off on its own: what it matches is then left as it is (a phone
//! number with `phones = false` stays readable rather than becoming `[digits]`).
//!
//! What it does not: touch audio (the store silences spans when `silence_audio` is set), run
//! detection (callers run the lexicon and risk detectors on the raw text first, so that
//! redaction never hides a threat), recognise numbers spoken as quantities ("eight hundred",
//! 一百三十八), names, street addresses, spoken Chinese e-mail addresses (艾特, 点), 15-digit
//! first-generation ID numbers or UnionPay cards that do not use the Luhn check (both are
//! still caught as digits), or tell a long spoken count ("one, two, three, four, five, six")
//! from a code.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Redaction settings (`[redact]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactConfig {
    /// Redact transcript text before it is stored or streamed. Off: text goes out as heard.
    pub enabled: bool,
    /// Payment card numbers (13-19 digits, Luhn-checked) become `[card]`.
    pub cards: bool,
    /// Phone numbers (Chinese mobiles and landlines, +86, North-American, `+` forms) become
    /// `[phone]`.
    pub phones: bool,
    /// Chinese resident ID numbers (18 characters with a valid check character) become `[id]`.
    pub id_numbers: bool,
    /// E-mail addresses, written or spoken ("john dot smith at example dot com"), become
    /// `[email]`.
    pub emails: bool,
    /// Any other run of at least `min_digits` digits (account numbers, verification codes)
    /// becomes `[digits]`.
    pub digit_runs: bool,
    /// The shortest digit run (4..32) that `digit_runs` redacts. At 6, order numbers of five
    /// digits and hotlines such as 12315 stay readable.
    pub min_digits: usize,
    /// Also silence the redacted spans in stored recordings (the store applies it, placing
    /// each span proportionally within its transcript segment).
    pub silence_audio: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cards: true,
            phones: true,
            id_numbers: true,
            emails: true,
            digit_runs: true,
            min_digits: 6,
            silence_audio: false,
        }
    }
}

impl RedactConfig {
    /// Checks the ranges; called by `Config::validate`.
    pub fn validate(&self) -> Result<(), String> {
        if !(4..=32).contains(&self.min_digits) {
            return Err(format!(
                "redact.min_digits = {} is outside 4..32",
                self.min_digits
            ));
        }
        Ok(())
    }

    /// Whether spans of `kind` are redacted.
    fn wants(&self, kind: PiiKind) -> bool {
        match kind {
            PiiKind::Card => self.cards,
            PiiKind::Phone => self.phones,
            PiiKind::IdNumber => self.id_numbers,
            PiiKind::Email => self.emails,
            PiiKind::Digits => self.digit_runs,
        }
    }
}

/// What a redacted span was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Card,
    Phone,
    IdNumber,
    Email,
    Digits,
}

impl PiiKind {
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Card,
        PiiKind::Phone,
        PiiKind::IdNumber,
        PiiKind::Email,
        PiiKind::Digits,
    ];

    /// The short name used in placeholders: `card`, `phone`, `id`, `email`, `digits`.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Card => "card",
            PiiKind::Phone => "phone",
            PiiKind::IdNumber => "id",
            PiiKind::Email => "email",
            PiiKind::Digits => "digits",
        }
    }

    /// What replaces the span in redacted text: `[card]`, `[phone]`, `[id]`, ...
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Card => "[card]",
            PiiKind::Phone => "[phone]",
            PiiKind::IdNumber => "[id]",
            PiiKind::Email => "[email]",
            PiiKind::Digits => "[digits]",
        }
    }

    /// Which kind wins where two claim the same text: the more specific.
    fn priority(self) -> u8 {
        match self {
            PiiKind::Email => 4,
            PiiKind::IdNumber => 3,
            PiiKind::Card => 2,
            PiiKind::Phone => 1,
            PiiKind::Digits => 0,
        }
    }
}

/// One piece of PII in a text: `start..end` are byte offsets on char boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

impl PiiSpan {
    /// The span's start and end as fractions (0..=1) of `text`'s length in characters, for
    /// mapping it proportionally onto the audio of the segment that `text` transcribes.
    /// `text` must be the text the span was found in; an empty text gives (0, 0).
    pub fn position(&self, text: &str) -> (f32, f32) {
        let total = text.chars().count();
        if total == 0 {
            return (0.0, 0.0);
        }
        let chars_to = |at: usize| {
            text.get(..at.min(text.len()))
                .map_or(total, |s| s.chars().count())
        };
        let frac = |n: usize| (n as f32 / total as f32).clamp(0.0, 1.0);
        (frac(chars_to(self.start)), frac(chars_to(self.end)))
    }
}

/// A text with its PII replaced, and where the PII was in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with each span replaced by its kind's placeholder.
    pub text: String,
    /// The spans, as byte offsets into the ORIGINAL text, sorted.
    pub spans: Vec<PiiSpan>,
}

/// Finds and replaces PII in transcript text, per its [`RedactConfig`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    config: RedactConfig,
}

impl Redactor {
    pub fn new(config: &RedactConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// Whether anything would ever be redacted (enabled, with at least one kind on).
    pub fn is_enabled(&self) -> bool {
        let c = &self.config;
        c.enabled && PiiKind::ALL.into_iter().any(|k| c.wants(k))
    }

    /// Whether stored recordings should have the spans silenced too.
    pub fn silence_audio(&self) -> bool {
        self.is_enabled() && self.config.silence_audio
    }

    /// The PII spans in `text` whose kinds are switched on: sorted, non-overlapping.
    pub fn find(&self, text: &str) -> Vec<PiiSpan> {
        if !self.is_enabled() || text.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        written_emails(text, &mut found);
        spoken_emails(text, &mut found);
        let emails = found.clone();
        numbers(text, &emails, self.config.min_digits, &mut found);
        let mut spans = resolve(found);
        spans.retain(|s| self.config.wants(s.kind));
        spans
    }

    /// `text` with every span from [`Redactor::find`] replaced by its placeholder.
    pub fn redact(&self, text: &str) -> Redacted {
        let spans = self.find(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in &spans {
            out.push_str(&text[at..s.start]);
            out.push_str(s.kind.placeholder());
            at = s.end;
        }
        out.push_str(&text[at..]);
        Redacted { text: out, spans }
    }
}

/// Keeps, of overlapping candidates, the more specific kind (then the longer, then the
/// earlier); returns them sorted by position.
fn resolve(mut found: Vec<PiiSpan>) -> Vec<PiiSpan> {
    found.sort_by(|a, b| {
        b.kind
            .priority()
            .cmp(&a.kind.priority())
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<PiiSpan> = Vec::with_capacity(found.len());
    for s in found {
        if kept.iter().all(|k| k.end <= s.start || s.end <= k.start) {
            kept.push(s);
        }
    }
    kept.sort_by_key(|s| s.start);
    kept
}

// ---------------------------------------------------------------------------------------------
// E-mail addresses

/// Top-level domains accepted at the end of a spoken address ("... dot com").
const SPOKEN_TLDS: [&str; 25] = [
    "com", "net", "org", "edu", "gov", "mil", "info", "biz", "io", "co", "me", "cn", "uk", "us",
    "ca", "au", "de", "fr", "jp", "hk", "tw", "sg", "nz", "ai", "dev",
];

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// `example.co.uk`: two or more labels of letters, digits and inner dashes, the last all
/// letters and at least two long.
fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// `local@domain.tld`, also with one space either side of the `@` (or a full-width `＠`).
fn written_emails(text: &str, out: &mut Vec<PiiSpan>) {
    let b = text.as_bytes();
    for (at, c) in text.char_indices() {
        if c != '@' && c != '＠' {
            continue;
        }
        // Only ASCII bytes are stepped over, so every offset stays on a char boundary.
        let mut local_end = at;
        if local_end > 0 && b[local_end - 1] == b' ' {
            local_end -= 1;
        }
        let mut local_start = local_end;
        while local_start > 0 && is_local_byte(b[local_start - 1]) {
            local_start -= 1;
        }
        while local_start < local_end && b[local_start] == b'.' {
            local_start += 1;
        }
        if local_start == local_end {
            continue;
        }
        let mut domain_start = at + c.len_utf8();
        if b.get(domain_start) == Some(&b' ') {
            domain_start += 1;
        }
        let mut domain_end = domain_start;
        while domain_end < b.len() && is_domain_byte(b[domain_end]) {
            domain_end += 1;
        }
        while domain_end > domain_start && matches!(b[domain_end - 1], b'.' | b'-') {
            domain_end -= 1;
        }
        if valid_domain(&text[domain_start..domain_end]) {
            out.push(PiiSpan {
                kind: PiiKind::Email,
                start: local_start,
                end: domain_end,
            });
        }
    }
}

/// Maximal runs of ASCII letters and digits: the words of a spoken address.
fn ascii_words(text: &str) -> Vec<Range<usize>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, b) in text.bytes().enumerate() {
        match (b.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(s..text.len());
    }
    words
}

/// "john dot smith at example dot com", "mary at gmail.com", "li_lei at 163 dot com".
fn spoken_emails(text: &str, out: &mut Vec<PiiSpan>) {
    let words = ascii_words(text);
    let word = |i: usize| &text[words[i].clone()];
    let is = |i: usize, w: &str| word(i).eq_ignore_ascii_case(w);
    // Between word i and word i + 1.
    let gap = |i: usize| &text[words[i].end..words[i + 1].start];
    let spaced = |i: usize| {
        let g = gap(i);
        !g.is_empty() && g.chars().count() <= 2 && g.chars().all(char::is_whitespace)
    };
    let local_sep = |i: usize| {
        ["dot", "underscore", "dash", "hyphen"]
            .iter()
            .any(|w| is(i, w))
    };
    for k in 1..words.len().saturating_sub(1) {
        if !is(k, "at") || !spaced(k - 1) || !spaced(k) || local_sep(k + 1) || local_sep(k - 1) {
            continue;
        }
        // The domain: labels joined by "dot" or a written '.', ending at a known TLD.
        let mut j = k + 1;
        let mut labels = 1;
        let mut domain_end = None;
        loop {
            if j + 1 < words.len() && gap(j) == "." {
                j += 1;
            } else if j + 2 < words.len() && is(j + 1, "dot") && spaced(j) && spaced(j + 1) {
                j += 2;
            } else {
                break;
            }
            labels += 1;
            if labels >= 2 && SPOKEN_TLDS.iter().any(|t| is(j, t)) {
                domain_end = Some(j);
            }
        }
        let Some(last) = domain_end else { continue };
        // The local part: the word before "at", and any joined to it by "dot", "underscore",
        // "dash" or a written '.', '_' or '-'.
        let mut i = k - 1;
        loop {
            if i >= 1 && matches!(gap(i - 1), "." | "_" | "-") {
                i -= 1;
            } else if i >= 2
                && local_sep(i - 1)
                && spaced(i - 2)
                && spaced(i - 1)
                && !local_sep(i - 2)
            {
                i -= 2;
            } else {
                break;
            }
        }
        out.push(PiiSpan {
            kind: PiiKind::Email,
            start: words[i].start,
            end: words[last].end,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers: tokens, then elements (the digits one token or spoken phrase gives), then runs of
// elements joined by separators, then each run classified.

/// The value of the ID check character X among digit values.
const X: u8 = 10;
/// Longest number of one specific kind (a 19-digit card); longer runs are split.
const MAX_SINGLE: usize = 19;
/// Runs with more elements than this are not split (bounds the work on pathological input).
const MAX_SPLIT_ELEMENTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tk {
    /// ASCII or full-width digits; `x_len` bytes of a directly following check letter X are
    /// included at the end.
    Num {
        x_len: usize,
    },
    /// ASCII letters.
    Word,
    /// A Chinese digit character, with its value.
    Han(u8),
    Space,
    Punct(char),
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    tk: Tk,
}

fn written_digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

fn han_digit(c: char) -> Option<u8> {
    Some(match c {
        '零' | '〇' => 0,
        '一' | '幺' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Separators that may sit between the digits of one number (with some conditions, see
/// [`joins`]).
fn is_dash_or_paren(c: char) -> bool {
    matches!(c, '-' | '–' | '—' | '－' | '(' | ')' | '（' | '）')
}

fn is_joining_punct(c: char) -> bool {
    is_dash_or_paren(c) || matches!(c, '.' | ',' | '，' | '、')
}

/// Whether `c` makes a preceding check letter part of a word instead ("2XL", "4x4").
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || written_digit(c).is_some() || ('Ａ'..='ｚ').contains(&c)
}

/// Splits `text` into tokens; tokens inside `masked` ranges (e-mail addresses) are `Other`.
fn tokenize(text: &str, masked: &[PiiSpan]) -> Vec<Token> {
    let mut toks: Vec<Token> = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        let mut end = start + c.len_utf8();
        let tk = if written_digit(c).is_some() {
            while let Some(&(j, d)) = it.peek() {
                if written_digit(d).is_none() {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            let mut x_len = 0;
            if let Some(&(j, x)) = it.peek()
                && matches!(x, 'X' | 'x' | 'Ｘ' | 'ｘ')
                && !text[j + x.len_utf8()..]
                    .chars()
                    .next()
                    .is_some_and(is_word_char)
            {
                x_len = x.len_utf8();
                end = j + x_len;
                it.next();
            }
            Tk::Num { x_len }
        } else if c.is_ascii_alphabetic() {
            while let Some(&(j, l)) = it.peek() {
                if !l.is_ascii_alphabetic() {
                    break;
                }
                end = j + 1;
                it.next();
            }
            Tk::Word
        } else if let Some(d) = han_digit(c) {
            Tk::Han(d)
        } else if c.is_whitespace() {
            while let Some(&(j, s)) = it.peek() {
                if !s.is_whitespace() {
                    break;
                }
                end = j + s.len_utf8();
                it.next();
            }
            Tk::Space
        } else if c.is_ascii_punctuation() || is_joining_punct(c) {
            Tk::Punct(c)
        } else {
            Tk::Other
        };
        let tk = if masked.iter().any(|m| m.start < end && start < m.end) {
            Tk::Other
        } else {
            tk
        };
        // A masked stretch is one token, so that no run reaches across it.
        if tk == Tk::Other
            && let Some(last) = toks.last_mut()
            && last.tk == Tk::Other
            && last.end == start
        {
            last.end = end;
            continue;
        }
        toks.push(Token { start, end, tk });
    }
    toks
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElemKind {
    /// Written digits, ASCII or full-width.
    Written,
    /// English digit words ("four", "double five", "twenty-one", "zero").
    Spoken,
    /// "oh" or "o" for zero: a digit only next to other spoken digits.
    Oh,
    /// One Chinese digit character.
    Han,
}

/// The digits one token (or one spoken phrase: "double five", "twenty-one") gives.
#[derive(Debug, Clone)]
struct Elem {
    start: usize,
    end: usize,
    /// Digit values; an ID check character is [`X`] (only ever last in a run).
    digits: Vec<u8>,
    kind: ElemKind,
    /// Bytes of a written check letter at the end of `start..end`.
    x_len: usize,
}

impl Elem {
    /// Written with two or more digits: such groups join only across spaces and dashes (so
    /// that "1,250.00" and "in 2019, 2020" stay apart).
    fn long_written(&self) -> bool {
        self.kind == ElemKind::Written && self.digits.len() >= 2
    }
}

fn unit_word(w: &str) -> Option<(u8, ElemKind)> {
    const UNITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    if w.eq_ignore_ascii_case("oh") || w.eq_ignore_ascii_case("o") {
        return Some((0, ElemKind::Oh));
    }
    UNITS
        .iter()
        .position(|u| w.eq_ignore_ascii_case(u))
        .map(|d| (d as u8, ElemKind::Spoken))
}

fn teen_word(w: &str) -> Option<u8> {
    const TEENS: [&str; 10] = [
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    TEENS
        .iter()
        .position(|t| w.eq_ignore_ascii_case(t))
        .map(|d| d as u8)
}

fn tens_word(w: &str) -> Option<u8> {
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    TENS.iter()
        .position(|t| w.eq_ignore_ascii_case(t))
        .map(|d| d as u8 + 2)
}

/// The element starting at token `i`, and the index of the token after it.
fn element(text: &str, toks: &[Token], i: usize) -> Option<(Elem, usize)> {
    let t = toks.get(i)?;
    let elem = |digits: Vec<u8>, kind: ElemKind, end: usize| Elem {
        start: t.start,
        end,
        digits,
        kind,
        x_len: 0,
    };
    match t.tk {
        Tk::Num { x_len } => {
            let digits = text[t.start..t.end - x_len]
                .chars()
                .filter_map(written_digit)
                .collect();
            Some((
                Elem {
                    x_len,
                    ..elem(digits, ElemKind::Written, t.end)
                },
                i + 1,
            ))
        }
        Tk::Han(d) => Some((elem(vec![d], ElemKind::Han, t.end), i + 1)),
        Tk::Word => {
            let w = &text[t.start..t.end];
            if let Some((d, kind)) = unit_word(w) {
                return Some((elem(vec![d], kind, t.end), i + 1));
            }
            if let Some(d) = teen_word(w) {
                return Some((elem(vec![1, d], ElemKind::Spoken, t.end), i + 1));
            }
            if let Some(tens) = tens_word(w) {
                // "twenty-one", "twenty one"
                if let (Some(sep), Some(unit)) = (toks.get(i + 1), toks.get(i + 2))
                    && matches!(sep.tk, Tk::Space | Tk::Punct('-'))
                    && sep.end - sep.start == 1
                    && unit.tk == Tk::Word
                    && let Some((u @ 1..=9, ElemKind::Spoken)) =
                        unit_word(&text[unit.start..unit.end])
                {
                    return Some((elem(vec![tens, u], ElemKind::Spoken, unit.end), i + 3));
                }
                return Some((elem(vec![tens, 0], ElemKind::Spoken, t.end), i + 1));
            }
            let times = if w.eq_ignore_ascii_case("double") {
                2
            } else if w.eq_ignore_ascii_case("triple") {
                3
            } else {
                return None;
            };
            // "double five", "triple 0", "double oh"
            if toks.get(i + 1)?.tk != Tk::Space {
                return None;
            }
            let (one, next) = element(text, toks, i + 2)?;
            if one.digits.len() != 1 || one.x_len != 0 || one.kind == ElemKind::Han {
                return None;
            }
            Some((
                elem(vec![one.digits[0]; times], ElemKind::Spoken, one.end),
                next,
            ))
        }
        Tk::Space | Tk::Punct(_) | Tk::Other => None,
    }
}

/// Whether `prev` and `next`, separated by `puncts` (and whitespace when `spaced`), are
/// digits of one number.
fn joins(prev: &Elem, next: &Elem, puncts: &[char], spaced: bool) -> bool {
    let written = |e: &Elem| e.kind == ElemKind::Written;
    match puncts {
        [] => true,
        [p] if is_dash_or_paren(*p) => true,
        [a, b] => is_dash_or_paren(*a) && is_dash_or_paren(*b),
        // 415.555.2671, or "four. four. one."
        ['.'] => {
            (!spaced
                && written(prev)
                && written(next)
                && prev.digits.len() >= 3
                && next.digits.len() >= 3)
                || (!prev.long_written() && !next.long_written())
        }
        // Thousands groups (4,412,345), or "four, four, one"
        [','] if !spaced && written(prev) && written(next) => {
            (1..=3).contains(&prev.digits.len()) && next.digits.len() == 3
        }
        [',' | '，' | '、'] => !prev.long_written() && !next.long_written(),
        _ => false,
    }
}

/// The number runs of `text` (outside `emails`), classified into `out`.
fn numbers(text: &str, emails: &[PiiSpan], min_digits: usize, out: &mut Vec<PiiSpan>) {
    let toks = tokenize(text, emails);
    let mut i = 0;
    while i < toks.len() {
        let Some((first, mut next)) = element(text, &toks, i) else {
            i += 1;
            continue;
        };
        let mut run = vec![first];
        while let Some(prev) = run.last().filter(|e| e.x_len == 0) {
            // The separators up to the next element.
            let mut k = next;
            let (mut puncts, mut spaced, mut chars) = (Vec::new(), false, 0);
            while let Some(t) = toks.get(k) {
                match t.tk {
                    Tk::Space => {
                        spaced = true;
                        chars += text[t.start..t.end].chars().count();
                    }
                    Tk::Punct(c) if is_joining_punct(c) => {
                        puncts.push(c);
                        chars += 1;
                    }
                    _ => break,
                }
                k += 1;
            }
            if chars > 4 {
                break;
            }
            let Some((elem, after)) = element(text, &toks, k) else {
                break;
            };
            if !joins(prev, &elem, &puncts, spaced) {
                break;
            }
            run.push(elem);
            next = after;
        }
        classify_run(text, run, min_digits, out);
        i = next;
    }
}

/// Drops "oh"s at either end of a run that are not next to a spoken digit ("Oh, 1234567").
fn trim_oh(run: &mut Vec<Elem>) {
    let Some(first) = run.iter().position(|e| e.kind != ElemKind::Oh) else {
        run.clear();
        return;
    };
    if run[first].kind != ElemKind::Spoken {
        run.drain(..first);
    }
    if let Some(last) = run.iter().rposition(|e| e.kind != ElemKind::Oh)
        && run[last].kind != ElemKind::Spoken
    {
        run.truncate(last + 1);
    }
}

/// A spoken check letter after 17 digits: "x", "ex" or 叉, after at most one space; its
/// length in bytes including the space.
fn spoken_check_x(rest: &str) -> Option<usize> {
    let trimmed = rest.strip_prefix(' ').unwrap_or(rest);
    let skip = rest.len() - trimmed.len();
    if trimmed.starts_with('叉') {
        return Some(skip + '叉'.len_utf8());
    }
    let n = trimmed.bytes().take_while(u8::is_ascii_alphabetic).count();
    let w = &trimmed[..n];
    let digit_follows = trimmed[n..].starts_with(|c: char| c.is_ascii_digit());
    ((w.eq_ignore_ascii_case("x") || w.eq_ignore_ascii_case("ex")) && !digit_follows)
        .then_some(skip + n)
}

/// Where a `+` or "plus" right before `start` (at most one space between) begins.
fn plus_prefix(text: &str, start: usize) -> Option<usize> {
    let before = &text[..start];
    let b = before.strip_suffix(' ').unwrap_or(before);
    if let Some(r) = b.strip_suffix(['+', '＋']) {
        return Some(r.len());
    }
    if b.len() == before.len() {
        return None; // "plus" needs its space
    }
    let cut = b.len().checked_sub(4)?;
    (b.is_char_boundary(cut)
        && b[cut..].eq_ignore_ascii_case("plus")
        && !b[..cut].ends_with(|c: char| c.is_ascii_alphabetic()))
    .then_some(cut)
}

/// Whether the run at `start..end` is plainly an amount or a quantity: a currency sign or
/// code before it, a unit after it, or a decimal point next to it.
fn quantity_context(text: &str, start: usize, end: usize) -> bool {
    const ZH_UNITS: [&str; 31] = [
        "元",
        "块",
        "圆",
        "角",
        "毛",
        "美元",
        "美金",
        "欧元",
        "英镑",
        "港币",
        "人民币",
        "日元",
        "万",
        "亿",
        "千",
        "百",
        "年",
        "月",
        "日",
        "号",
        "点",
        "时",
        "分",
        "秒",
        "岁",
        "个",
        "次",
        "天",
        "件",
        "%",
        "％",
    ];
    const EN_UNITS: [&str; 27] = [
        "dollars", "dollar", "bucks", "cents", "yuan", "rmb", "usd", "cny", "hkd", "euros", "euro",
        "pounds", "percent", "times", "years", "days", "hours", "minutes", "seconds", "people",
        "units", "items", "pieces", "miles", "km", "kg", "k",
    ];
    const CODES: [&str; 6] = ["usd", "rmb", "cny", "hkd", "eur", "gbp"];
    let before = &text[..start];
    let after = &text[end..];
    // A decimal fraction: 3.14159265, 125000.50
    if let Some(r) = before.strip_suffix('.')
        && r.ends_with(|c: char| c.is_ascii_digit())
    {
        return true;
    }
    if let Some(frac) = after.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if (1..=2).contains(&n) {
            return true;
        }
    }
    let before = before.trim_end_matches(' ');
    if before.ends_with(['$', '¥', '￥', '€', '£', '₹']) {
        return true;
    }
    let word_start = before
        .bytes()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let code = &before[word_start..];
    if CODES.iter().any(|c| code.eq_ignore_ascii_case(c)) {
        return true;
    }
    let after = after.trim_start_matches(' ');
    if ZH_UNITS.iter().any(|u| after.starts_with(u)) {
        return true;
    }
    let n = after.bytes().take_while(u8::is_ascii_alphabetic).count();
    EN_UNITS.iter().any(|u| after[..n].eq_ignore_ascii_case(u))
}

fn value(d: &[u8]) -> u32 {
    d.iter().fold(0u32, |a, &x| {
        a.saturating_mul(10).saturating_add(u32::from(x))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    (1900..=2099).contains(&year) && day >= 1 && day <= days_in_month(year, month)
}

/// Written dates and years, which are not PII: 2024-03-15, 15 03 2024, 1990-2000, 2024.
fn date_like(elems: &[Elem]) -> bool {
    if elems
        .iter()
        .any(|e| e.kind != ElemKind::Written || e.x_len != 0)
    {
        return false;
    }
    let g: Vec<&[u8]> = elems.iter().map(|e| e.digits.as_slice()).collect();
    let year = |d: &[u8]| d.len() == 4 && (1900..=2099).contains(&value(d));
    let short = |d: &[u8]| (1..=2).contains(&d.len());
    match g.as_slice() {
        [y] => year(y),
        [a, b] => year(a) && year(b),
        [y, m, d] if year(y) && short(m) && short(d) => valid_date(value(y), value(m), value(d)),
        [a, b, y] if year(y) && short(a) && short(b) => {
            valid_date(value(y), value(b), value(a)) || valid_date(value(y), value(a), value(b))
        }
        _ => false,
    }
}

/// Emergency and public-service numbers that stay readable even when `min_digits` would
/// reach them: 110, 120, 911, 12315 and the other 123xx government hotlines, 95xxx.
fn public_number(d: &[u8]) -> bool {
    match d.len() {
        3 => matches!(value(d), 110 | 112 | 119 | 120 | 122 | 911 | 999),
        5 => d.starts_with(&[1, 2, 3]) || d.starts_with(&[9, 5]) || d.starts_with(&[9, 6]),
        _ => false,
    }
}

/// The Luhn check of a card number's digits.
fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn is_card(d: &[u8]) -> bool {
    (13..=19).contains(&d.len()) && (2..=6).contains(&d[0]) && d.iter().all(|&x| x <= 9) && luhn(d)
}

/// Whether written groups could be a card as people and Whisper write one: one block, fours
/// (the last possibly shorter), 4-6-5 or 4-6-4 (American Express, Diners), or thousands
/// groups. Anything spoken or read out digit by digit is not judged by shape.
fn card_shape(elems: &[Elem]) -> bool {
    if elems.len() == 1 || elems.iter().any(|e| !e.long_written()) {
        return true;
    }
    let lens: Vec<usize> = elems.iter().map(|e| e.digits.len()).collect();
    let (last, init) = match lens.split_last() {
        Some(x) => x,
        None => return false,
    };
    matches!(lens.as_slice(), [4, 6, 5] | [4, 6, 4])
        || (init.iter().all(|&l| l == 4) && (1..=4).contains(last))
        || ((1..=3).contains(&lens[0]) && lens[1..].iter().all(|&l| l == 3))
}

/// ISO 7064 MOD 11-2 check character of an ID number's first 17 digits ([`X`] for 10).
fn id_check(first17: &[u8]) -> u8 {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.iter().zip(W).map(|(&d, w)| u32::from(d) * w).sum();
    ((12 - sum % 11) % 11) as u8
}

/// A Chinese resident ID number (GB 11643): region, birth date, sequence, check character.
fn is_id(d: &[u8]) -> bool {
    d.len() == 18
        && d[0] != 0
        && d[..17].iter().all(|&x| x <= 9)
        && valid_date(value(&d[6..10]), value(&d[10..12]), value(&d[12..14]))
        && id_check(&d[..17]) == d[17]
}

fn is_phone(d: &[u8], plus: bool) -> bool {
    let n = d.len();
    if d.iter().any(|&x| x > 9) || n == 0 {
        return false;
    }
    if plus {
        return (8..=15).contains(&n) && d[0] != 0;
    }
    let cn_mobile = |m: &[u8]| m.len() == 11 && m[0] == 1 && (3..=9).contains(&m[1]);
    let nanp = |m: &[u8]| m.len() == 10 && m[0] >= 2 && m[3] >= 2;
    cn_mobile(d)
        || (n == 13 && d.starts_with(&[8, 6]) && cn_mobile(&d[2..]))
        || (n == 15 && d.starts_with(&[0, 0, 8, 6]) && cn_mobile(&d[4..]))
        // Landlines with a trunk 0 and area code: 010-12345678, 0755-12345678, 020 7946 0958
        || ((10..=12).contains(&n) && d[0] == 0 && d[1] != 0)
        // 00 + country code + number
        || (d.starts_with(&[0, 0]) && d.get(2).is_some_and(|&c| c != 0) && (10..=17).contains(&n))
        || (n == 10 && (d.starts_with(&[4, 0, 0]) || d.starts_with(&[8, 0, 0])))
        || nanp(d)
        || (n == 11 && d[0] == 1 && nanp(&d[1..]))
}

/// The specific kind (id, card, phone) that the elements form as a whole, if any.
fn specific(elems: &[Elem], plus: bool, quantity: bool) -> Option<PiiKind> {
    let d: Vec<u8> = elems
        .iter()
        .flat_map(|e| e.digits.iter().copied())
        .collect();
    if is_id(&d) {
        return Some(PiiKind::IdNumber);
    }
    if d.last() == Some(&X) {
        return None;
    }
    if !plus && card_shape(elems) && is_card(&d) {
        return Some(PiiKind::Card);
    }
    if !quantity && is_phone(&d, plus) {
        return Some(PiiKind::Phone);
    }
    None
}

/// Classifies one run of joined elements into spans.
fn classify_run(text: &str, mut run: Vec<Elem>, min_digits: usize, out: &mut Vec<PiiSpan>) {
    trim_oh(&mut run);
    let total: usize = run.iter().map(|e| e.digits.len()).sum();
    let Some(last) = run.last_mut() else { return };
    // The check character: kept after exactly 17 digits, otherwise not part of the run.
    if last.x_len > 0 {
        if total == 17 {
            last.digits.push(X);
        } else {
            last.end -= last.x_len;
            last.x_len = 0;
        }
    } else if total == 17
        && let Some(len) = spoken_check_x(&text[last.end..])
    {
        last.end += len;
        last.digits.push(X);
    }
    let n = run.len();
    let run_start = run[0].start;
    let run_end = run[n - 1].end;
    let plus_start = plus_prefix(text, run_start);
    let quantity = quantity_context(text, run_start, run_end);
    let mut start0 = plus_start.unwrap_or(run_start);
    // "(010) 1234 5678": the opening parenthesis goes with the number.
    if let Some(r) = text[..start0].strip_suffix(['(', '（'])
        && text[start0..run_end].contains([')', '）'])
    {
        start0 = r.len();
    }
    let span = |kind, a: usize, b: usize| PiiSpan {
        kind,
        start: if a == 0 { start0 } else { run[a].start },
        end: run[b - 1].end,
    };

    let mut pieces: Vec<(usize, usize, PiiKind)> = Vec::new();
    if let Some(kind) = specific(&run, plus_start.is_some(), quantity) {
        pieces.push((0, n, kind));
    } else if total > MAX_SINGLE && n <= MAX_SPLIT_ELEMENTS {
        let mut a = 0;
        while a < n {
            let found = (a + 1..=n).rev().find_map(|b| {
                specific(&run[a..b], a == 0 && plus_start.is_some(), quantity).map(|k| (b, k))
            });
            match found {
                Some((b, kind)) => {
                    pieces.push((a, b, kind));
                    a = b;
                }
                None => a += 1,
            }
        }
    }
    // What no specific kind took is digits, if long enough and not an amount or a date.
    let mut leftovers = Vec::new();
    let mut a = 0;
    for &(from, to, _) in &pieces {
        if a < from {
            leftovers.push((a, from));
        }
        a = to;
    }
    if a < n {
        leftovers.push((a, n));
    }
    for (a, b) in leftovers {
        let d: Vec<u8> = run[a..b]
            .iter()
            .flat_map(|e| e.digits.iter().copied())
            .filter(|&x| x <= 9)
            .collect();
        if d.len() >= min_digits && !quantity && !date_like(&run[a..b]) && !public_number(&d) {
            out.push(span(PiiKind::Digits, a, b));
        }
    }
    for (a, b, kind) in pieces {
        out.push(span(kind, a, b));
    }
}

/// Redacts everything an event says in place: a transcript's text, and the quotes signals,
/// alerts and QA flags carry as evidence. Returns the spans found in a transcript's text (in
/// the original text), so a recording can silence the same stretch. Run the detectors on the
/// raw text first: this is for what leaves the call, never for what is judged.
pub fn redact_event(r: &Redactor, event: &mut crate::domain::event::Event) -> Vec<PiiSpan> {
    use crate::domain::event::Event;
    if !r.is_enabled() {
        return Vec::new();
    }
    let quotes = |quotes: &mut Vec<crate::domain::signal::Quote>| {
        for q in quotes {
            q.text = r.redact(&q.text).text;
        }
    };
    match event {
        Event::Transcript(t) => {
            let out = r.redact(&t.text);
            t.text = out.text;
            return out.spans;
        }
        Event::Signal(s) => quotes(&mut s.signal.quotes),
        Event::Alert(a) => quotes(&mut a.evidence.quotes),
        Event::QaFlag(f) => quotes(&mut f.quotes),
        Event::Risk(_) | Event::Summary(_) => {}
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(&RedactConfig::default())
    }

    /// The kinds and matched substrings found in `text`.
    fn found(r: &Redactor, text: &str) -> Vec<(PiiKind, String)> {
        r.find(text)
            .into_iter()
            .map(|s| (s.kind, text[s.start..s.end].to_owned()))
            .collect()
    }

    use PiiKind::{Card, Digits, Email, IdNumber, Phone};

    /// (text, what must be found: kind and exact matched text)
    const POSITIVE: &[(&str, &[(PiiKind, &str)])] = &[
        // cards
        (
            "my card is 4111 1111 1111 1111 thanks",
            &[(Card, "4111 1111 1111 1111")],
        ),
        ("4111-1111-1111-1111", &[(Card, "4111-1111-1111-1111")]),
        ("number 4111111111111111.", &[(Card, "4111111111111111")]),
        ("Amex 3782 822463 10005", &[(Card, "3782 822463 10005")]),
        ("5555 5555 5555 4444", &[(Card, "5555 5555 5555 4444")]),
        ("6011 1111 1111 1117", &[(Card, "6011 1111 1111 1117")]),
        (
            "银联卡6222 0212 3456 7890 128",
            &[(Card, "6222 0212 3456 7890 128")],
        ),
        (
            "It's 4,111,111,111,111,111",
            &[(Card, "4,111,111,111,111,111")],
        ),
        (
            "four one one one one one one one one one one one one one one one",
            &[(
                Card,
                "four one one one one one one one one one one one one one one one",
            )],
        ),
        (
            "4 1 1 1, 1 1 1 1, 1 1 1 1, 1 1 1 1",
            &[(Card, "4 1 1 1, 1 1 1 1, 1 1 1 1, 1 1 1 1")],
        ),
        (
            "卡号是四一一一一一一一一一一一一一一一",
            &[(Card, "四一一一一一一一一一一一一一一一")],
        ),
        (
            "４１１１１１１１１１１１１１１１",
            &[(Card, "４１１１１１１１１１１１１１１１")],
        ),
        (
            "4111 1111 one one one one 1111",
            &[(Card, "4111 1111 one one one one 1111")],
        ),
        // phones
        ("call me on 138 1234 5678", &[(Phone, "138 1234 5678")]),
        ("13812345678", &[(Phone, "13812345678")]),
        ("8613812345678", &[(Phone, "8613812345678")]),
        ("+86 138 1234 5678", &[(Phone, "+86 138 1234 5678")]),
        ("+86-138-1234-5678", &[(Phone, "+86-138-1234-5678")]),
        ("0086 13812345678", &[(Phone, "0086 13812345678")]),
        ("010-12345678", &[(Phone, "010-12345678")]),
        ("座机(010) 1234 5678", &[(Phone, "(010) 1234 5678")]),
        ("0755-8888-6666", &[(Phone, "0755-8888-6666")]),
        ("400-820-8820", &[(Phone, "400-820-8820")]),
        ("it's (415) 555-2671", &[(Phone, "(415) 555-2671")]),
        ("+1 (415) 555-2671", &[(Phone, "+1 (415) 555-2671")]),
        ("+1 415 555 2671", &[(Phone, "+1 415 555 2671")]),
        ("1-800-555-0199", &[(Phone, "1-800-555-0199")]),
        ("415.555.2671", &[(Phone, "415.555.2671")]),
        ("+44 20 7946 0958", &[(Phone, "+44 20 7946 0958")]),
        (
            "it's one three eight, one two three four, five six seven eight",
            &[(
                Phone,
                "one three eight, one two three four, five six seven eight",
            )],
        ),
        (
            "Four one five, double five five, two six seven one.",
            &[(Phone, "Four one five, double five five, two six seven one")],
        ),
        (
            "oh two oh, seven nine four six, oh nine five eight",
            &[(Phone, "oh two oh, seven nine four six, oh nine five eight")],
        ),
        (
            "plus eight six one three eight one two three four five six seven eight",
            &[(
                Phone,
                "plus eight six one three eight one two three four five six seven eight",
            )],
        ),
        (
            "我的手机是幺三八幺二三四五六七八",
            &[(Phone, "幺三八幺二三四五六七八")],
        ),
        (
            "一三八两两三四五六七八",
            &[(Phone, "一三八两两三四五六七八")],
        ),
        ("号码138 幺二三四 5678", &[(Phone, "138 幺二三四 5678")]),
        ("我的电话是138 1234 5678谢谢", &[(Phone, "138 1234 5678")]),
        (
            "电话：１３８１２３４５６７８。",
            &[(Phone, "１３８１２３４５６７８")],
        ),
        // ID numbers
        ("11010519491231002X", &[(IdNumber, "11010519491231002X")]),
        (
            "身份证号11010519491231002x。",
            &[(IdNumber, "11010519491231002x")],
        ),
        (
            "ID 110105 19491231 002X please",
            &[(IdNumber, "110105 19491231 002X")],
        ),
        (
            "身份证一一零一零五一九四九一二三一零零二叉",
            &[(IdNumber, "一一零一零五一九四九一二三一零零二叉")],
        ),
        ("440306198511200008", &[(IdNumber, "440306198511200008")]),
        // e-mail
        (
            "john.smith@example.com",
            &[(Email, "john.smith@example.com")],
        ),
        (
            "邮箱是zhangsan123@qq.com，谢谢",
            &[(Email, "zhangsan123@qq.com")],
        ),
        (
            "Email jane_doe+tag@mail.example.co.uk.",
            &[(Email, "jane_doe+tag@mail.example.co.uk")],
        ),
        (
            "it's john dot smith at example dot com okay",
            &[(Email, "john dot smith at example dot com")],
        ),
        (
            "it's mary at gmail dot com",
            &[(Email, "mary at gmail dot com")],
        ),
        ("li_lei at 163.com", &[(Email, "li_lei at 163.com")]),
        ("123456789@qq.com", &[(Email, "123456789@qq.com")]),
        // other digit runs
        ("verification code 482916", &[(Digits, "482916")]),
        (
            "the code is four eight two nine one six",
            &[(Digits, "four eight two nine one six")],
        ),
        ("验证码是八二九一六四", &[(Digits, "八二九一六四")]),
        ("4 8 2 9 1 6", &[(Digits, "4 8 2 9 1 6")]),
        ("１２３４５６７", &[(Digits, "１２３４５６７")]),
        ("4111 1111 1111 1112", &[(Digits, "4111 1111 1111 1112")]),
        ("110105194912310021", &[(Digits, "110105194912310021")]),
        ("110105194913310021", &[(Digits, "110105194913310021")]),
        (
            "account 12345678901234567890",
            &[(Digits, "12345678901234567890")],
        ),
        (
            "room 1203, code twenty-one 4567",
            &[(Digits, "twenty-one 4567")],
        ),
        (
            "order 20240315 13812345678 0",
            &[(Digits, "20240315"), (Phone, "13812345678")],
        ),
        (
            "card 4111 1111 1111 1111 phone 13812345678",
            &[(Card, "4111 1111 1111 1111"), (Phone, "13812345678")],
        ),
        (
            "four one one one one one one one one one one one one one one one one three eight one two three four five six seven eight",
            &[
                (
                    Card,
                    "four one one one one one one one one one one one one one one one",
                ),
                (
                    Phone,
                    "one three eight one two three four five six seven eight",
                ),
            ],
        ),
    ];

    /// Texts in which nothing may be found.
    const NEGATIVE: &[&str] = &[
        "That comes to $1,250.00 in total",
        "一共三千五百块",
        "2024年3月15日上午十点",
        "二〇二四年三月十五日",
        "March 15th at 10:30",
        "on 2024-03-15 at 10:30:45",
        "15 03 2024",
        "from 1990-2000",
        "in 2019 2020 and 2021",
        "in 2019, 2020 and 2021",
        "my order 12345 never came",
        "one or two",
        "I called three times, four times",
        "请拨打12315投诉",
        "I'll call 12315 and 12345",
        "I bought 3 of them for 25 dollars",
        "$125000",
        "USD 125000",
        "125000元",
        "125 000 dollars",
        "125000 dollars",
        "1,250,000 people",
        "pi is 3.14159265",
        "twenty twenty four",
        "Oh, I see. Oh no, oh oh.",
        "一二三",
        "两三个人",
        "12.5万元",
        "room 1203, floor 12",
        "the year two thousand and nineteen",
        "meet at the office dot",
        "john@localhost",
        "john at example dot",
        "it was about 4 or 5",
        "一百三十八",
        "Oh, 12345",
        "4x4 or 2XL",
    ];

    #[test]
    fn finds_every_positive_case() {
        let r = redactor();
        let mut failed = Vec::new();
        for (text, want) in POSITIVE {
            let want: Vec<(PiiKind, String)> =
                want.iter().map(|(k, s)| (*k, (*s).to_owned())).collect();
            let got = found(&r, text);
            if got != want {
                failed.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn finds_nothing_in_negative_cases() {
        let r = redactor();
        let failed: Vec<String> = NEGATIVE
            .iter()
            .map(|t| (t, found(&r, t)))
            .filter(|(_, got)| !got.is_empty())
            .map(|(t, got)| format!("{t:?}: {got:?}"))
            .collect();
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn spans_are_sorted_disjoint_and_on_char_boundaries() {
        let r = redactor();
        for text in POSITIVE
            .iter()
            .map(|(t, _)| *t)
            .chain(NEGATIVE.iter().copied())
        {
            let spans = r.find(text);
            for w in spans.windows(2) {
                assert!(w[0].end <= w[1].start, "{text:?}: {spans:?}");
            }
            for s in &spans {
                assert!(s.start < s.end && s.end <= text.len(), "{text:?}: {s:?}");
                assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            }
        }
    }

    #[test]
    fn byte_offsets_and_positions_on_multibyte_text() {
        let r = redactor();
        let text = "我的电话是13812345678谢谢";
        let spans = r.find(text);
        assert_eq!(
            spans,
            vec![PiiSpan {
                kind: Phone,
                start: 15,
                end: 26
            }]
        );
        let (a, b) = spans[0].position(text);
        assert!((a - 5.0 / 18.0).abs() < 1e-6, "{a}");
        assert!((b - 16.0 / 18.0).abs() < 1e-6, "{b}");
        let all = PiiSpan {
            kind: Digits,
            start: 0,
            end: text.len(),
        };
        assert_eq!(all.position(text), (0.0, 1.0));
        assert_eq!(all.position(""), (0.0, 0.0));
    }

    #[test]
    fn redacted_text_has_placeholders() {
        let r = redactor();
        let text = "Card 4111 1111 1111 1111, phone +86 138 1234 5678, mail a.b@c.com, \
                    ID 11010519491231002X, code 482916, call 12315.";
        let out = r.redact(text);
        assert_eq!(
            out.text,
            "Card [card], phone [phone], mail [email], ID [id], code [digits], call 12315."
        );
        let kinds: Vec<PiiKind> = out.spans.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![Card, Phone, Email, IdNumber, Digits]);
        // Spans point into the original text.
        assert_eq!(
            &text[out.spans[1].start..out.spans[1].end],
            "+86 138 1234 5678"
        );

        let zh = r.redact("我的身份证是11010519491231002X，电话幺三八幺二三四五六七八。");
        assert_eq!(zh.text, "我的身份证是[id]，电话[phone]。");
        assert_eq!(
            r.redact("nothing here").text,
            "nothing here",
            "text without PII is unchanged"
        );
    }

    #[test]
    fn more_specific_kind_wins_overlaps() {
        let r = redactor();
        // Both a valid ID and a Luhn-valid number starting 3: the ID wins.
        let d: Vec<u8> = "310101199003070019".bytes().map(|b| b - b'0').collect();
        assert!(luhn(&d) && is_id(&d));
        assert_eq!(
            found(&r, "310101199003070019"),
            vec![(IdNumber, "310101199003070019".into())]
        );
        // Luhn-valid, but 86 is no card prefix: a phone.
        let d: Vec<u8> = "8613812345678".bytes().map(|b| b - b'0').collect();
        assert!(luhn(&d));
        assert_eq!(found(&r, "8613812345678")[0].0, Phone);
        // Digits inside an address belong to the address.
        assert_eq!(
            found(&r, "QQ邮箱13812345678@qq.com"),
            vec![(Email, "13812345678@qq.com".into())]
        );
        // The resolver itself: priority, then length.
        let spans = resolve(vec![
            PiiSpan {
                kind: Digits,
                start: 0,
                end: 20,
            },
            PiiSpan {
                kind: Phone,
                start: 2,
                end: 13,
            },
            PiiSpan {
                kind: Card,
                start: 5,
                end: 21,
            },
            PiiSpan {
                kind: Email,
                start: 25,
                end: 30,
            },
            PiiSpan {
                kind: Digits,
                start: 28,
                end: 40,
            },
        ]);
        let kinds: Vec<(PiiKind, usize)> = spans.iter().map(|s| (s.kind, s.start)).collect();
        assert_eq!(kinds, vec![(Card, 5), (Email, 25)]);
    }

    #[test]
    fn luhn_and_id_check_digits() {
        let digits = |s: &str| -> Vec<u8> { s.bytes().map(|b| b - b'0').collect() };
        for good in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "6222021234567890128",
        ] {
            assert!(luhn(&digits(good)), "{good}");
        }
        for bad in ["4111111111111112", "5555555555554445", "378282246310006"] {
            assert!(!luhn(&digits(bad)), "{bad}");
        }
        // GB 11643's example: check character X.
        assert_eq!(id_check(&digits("11010519491231002")), X);
        assert_eq!(id_check(&digits("44030619851120000")), 8);
        let mut id = digits("11010519491231002");
        id.push(X);
        assert!(is_id(&id));
        // Valid check character, impossible dates.
        assert!(!is_id(&digits("110105194913310021"))); // month 13
        assert!(!is_id(&digits("110105194902300012"))); // 30 February
        // Leap days.
        assert!(valid_date(2000, 2, 29) && !valid_date(1900, 2, 29) && !valid_date(2023, 2, 29));
    }

    #[test]
    fn kinds_can_be_switched_off() {
        let text = "card 4111 1111 1111 1111, phone 13812345678, code 482916, a@b.com";
        let only = |f: fn(&mut RedactConfig)| {
            let mut c = RedactConfig::default();
            f(&mut c);
            Redactor::new(&c).redact(text).text
        };
        assert_eq!(
            only(|c| c.cards = false),
            "card 4111 1111 1111 1111, phone [phone], code [digits], [email]"
        );
        assert_eq!(
            only(|c| c.phones = false),
            "card [card], phone 13812345678, code [digits], [email]"
        );
        assert_eq!(
            only(|c| c.digit_runs = false),
            "card [card], phone [phone], code 482916, [email]"
        );
        assert_eq!(
            only(|c| c.emails = false),
            "card [card], phone [phone], code [digits], a@b.com"
        );
        assert_eq!(only(|c| c.enabled = false), text);
        // Longer min_digits: a 6-digit code stays.
        assert_eq!(
            only(|c| c.min_digits = 8),
            "card [card], phone [phone], code 482916, [email]"
        );
        // Shorter: 5-digit order numbers go, 12315 and years stay.
        let r = Redactor::new(&RedactConfig {
            min_digits: 4,
            ..RedactConfig::default()
        });
        assert_eq!(
            r.redact("order 48291, PIN 7731, call 12315 in 2024").text,
            "order [digits], PIN [digits], call 12315 in 2024"
        );
        let mut all_off = RedactConfig::default();
        let offs: [fn(&mut RedactConfig); 5] = [
            |c| c.cards = false,
            |c| c.phones = false,
            |c| c.id_numbers = false,
            |c| c.emails = false,
            |c| c.digit_runs = false,
        ];
        for f in offs {
            assert!(Redactor::new(&all_off).is_enabled());
            f(&mut all_off);
        }
        assert!(!Redactor::new(&all_off).is_enabled());
        assert!(Redactor::new(&all_off).find(text).is_empty());
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = RedactConfig::default();
        assert!(c.enabled && c.cards && c.phones && c.id_numbers && c.emails && c.digit_runs);
        assert_eq!(c.min_digits, 6);
        assert!(!c.silence_audio);
        assert!(c.validate().is_ok());
        for bad in [0, 3, 33] {
            let c = RedactConfig {
                min_digits: bad,
                ..RedactConfig::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let r = Redactor::new(&RedactConfig {
            silence_audio: true,
            ..RedactConfig::default()
        });
        assert!(r.silence_audio());
        assert!(!redactor().silence_audio());
    }

    #[test]
    fn kind_names_and_serde() {
        let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.placeholder()).collect();
        assert_eq!(names, ["[card]", "[phone]", "[id]", "[email]", "[digits]"]);
        assert_eq!(
            serde_json::to_string(&PiiKind::IdNumber).ok().as_deref(),
            Some("\"id_number\"")
        );
        let span = PiiSpan {
            kind: Digits,
            start: 1,
            end: 7,
        };
        let json = serde_json::to_string(&span).unwrap_or_default();
        assert_eq!(json, r#"{"kind":"digits","start":1,"end":7}"#);
        assert_eq!(serde_json::from_str::<PiiSpan>(&json).ok(), Some(span));
    }

    #[test]
    fn pathological_input_is_handled() {
        let r = redactor();
        let long = "1 ".repeat(5000);
        assert_eq!(r.find(&long).len(), 1);
        let words = "four ".repeat(3000);
        assert_eq!(found(&r, &words)[0].0, Digits);
        let junk = "@@@ .@. a@ @b .com at at dot dot 叉 X x ( ) - -- ,,, ＋ plus";
        assert!(r.find(junk).is_empty(), "{:?}", r.find(junk));
        assert!(r.find("").is_empty());
    }

    #[test]
    fn events_are_redacted_where_they_quote_the_caller() {
        use crate::domain::event::{Event, SignalEvent, Transcript};
        let r = Redactor::new(&RedactConfig::default());
        let said = "my card is 4111 1111 1111 1111 and I will call the press";
        let mut t = Event::Transcript(Transcript {
            call_id: "c".into(),
            leg: crate::domain::leg::Leg::Customer,
            start_ms: 0,
            end_ms: 4000,
            at_ms: 4000,
            text: said.into(),
            lang: "en".into(),
            is_final: true,
        });
        let spans = redact_event(&r, &mut t);
        assert_eq!(spans.len(), 1);
        assert_eq!(&said[spans[0].start..spans[0].end], "4111 1111 1111 1111");
        let Event::Transcript(t) = t else { panic!() };
        assert_eq!(t.text, "my card is [card] and I will call the press");

        let mut signal = crate::domain::signal::Signal::new(
            crate::domain::signal::SignalKind::ThreatMedia,
            crate::domain::leg::Leg::Customer,
            0,
            4000,
            4000,
        );
        signal.quotes = vec![crate::domain::signal::Quote {
            leg: crate::domain::leg::Leg::Customer,
            start_ms: 0,
            end_ms: 4000,
            text: said.into(),
        }];
        let mut e = Event::Signal(SignalEvent {
            call_id: "c".into(),
            signal,
        });
        assert!(redact_event(&r, &mut e).is_empty());
        let Event::Signal(s) = e else { panic!() };
        assert_eq!(
            s.signal.quotes[0].text,
            "my card is [card] and I will call the press"
        );
    }
}
