//! The lexicon: the words and phrases (English and Chinese) that make a transcript an alert
//! reason, read from `config/lexicon.toml`, and the detector that turns one transcript into
//! one [`Signal`] per matched category.
//!
//! What it does: parses and validates the lexicon file (or the copy built into the binary),
//! normalises text the same way for terms and transcripts (case, full-width forms,
//! traditional Chinese, apostrophes, punctuation), matches English terms on word boundaries
//! with stems (`complain*`), alternatives (`manager|supervisor`), gaps (`..`) and small
//! misspellings of long words, matches Chinese terms as substrings that ignore the spaces
//! and punctuation Whisper puts between characters, and flags matches cancelled by a
//! nearby negation ("I'm not complaining", 不是要投诉).
//!
//! What it does not: weigh anything (the risk engine does), remember earlier utterances
//! (`repetition` does), or watch files for changes (whoever reloads calls
//! [`Lexicon::load`] and swaps the result in with [`LexiconDetector::set_lexicon`]). It also
//! ignores `Transcript::lang`: callers code-switch, so every term is tried on every text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::event::Transcript;
use crate::domain::leg::Leg;
use crate::domain::signal::{Quote, Signal, SignalKind};

/// The shipped lexicon, so that the daemon works without a config directory.
const BUILTIN_TEXT: &str = include_str!("../../../config/lexicon.toml");
const BUILTIN_ORIGIN: &str = "config/lexicon.toml (built in)";

/// The table that holds negators: it is not a category, nothing is reported from it.
const NEGATION_TABLE: &str = "negation";
const REPORTED_TABLE: &str = "reported";
/// How far a `[reported]` marker reaches: "my neighbour reckons [she'll] report you", 我老公说
/// [要去网上]发帖.
const EN_REPORTED_WINDOW: usize = 6;
const ZH_REPORTED_WINDOW: usize = 8;
const KEYS: &str = "en, zh, en_except or zh_except";
const NEGATION_KEYS: &str = "en, zh, en_adjacent, zh_adjacent, en_except or zh_except";
const CATEGORY_NAMES: &str = "complaint, threat_media, threat_social, threat_legal, \
    threat_regulator, churn, escalation_request, agent_conduct, negation, positive, grievance, \
    recording, repeat, reported, formal_complaint";

/// Most words an English `..` skips: enough for "putting [a full video of this on my]
/// channel" (threats keep their verb and object apart, and Whisper garbles what is between),
/// few enough that, within one clause, the two ends still belong to one phrase. On the tune
/// half, 3 missed such threats and 8 added no false alert.
const EN_GAP_WORDS: usize = 8;
/// Most characters a Chinese `..` skips: "找[你们公司的]领导".
const ZH_GAP_CHARS: usize = 5;
/// A negator cancels a term when its last word is among this many words before the term.
const EN_NEGATION_WINDOW: usize = 3;
/// The same, in characters, for Chinese: 不是要投诉 (不是 ends one character before 投诉).
const ZH_NEGATION_WINDOW: usize = 3;
/// Shorter stems match too many unrelated words (`no*`, `ca*`).
const MIN_STEM_CHARS: usize = 3;
/// Chinese terms at least this long may match with one character substituted (any
/// character: 市场监督局 for 市场监管局). Shorter ones tolerate homophones only: with one
/// free character, 怎么搞的 would be 怎么算的.
const ZH_FUZZY_MIN_CHARS: usize = 5;
/// A substitution on one of these would flip the meaning (听不懂 vs 听得懂), so fuzzy
/// matching never substitutes them.
const ZH_NEGATION_CHARS: [char; 8] = ['不', '没', '别', '无', '非', '未', '莫', '勿'];

/// Why a lexicon could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error("cannot read lexicon {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lexicon {path}: line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("lexicon {path}: unknown category [{name}] (the categories are {CATEGORY_NAMES})")]
    UnknownCategory { path: PathBuf, name: String },
    #[error("lexicon {path}: `{category}` must be a table ([{category}]) of term lists")]
    NotATable { path: PathBuf, category: String },
    #[error("lexicon {path}: [{category}] has unknown key `{key}` (expected {expected})")]
    UnknownKey {
        path: PathBuf,
        category: String,
        key: String,
        expected: &'static str,
    },
    #[error("lexicon {path}: [{category}] {key} must be a list of strings")]
    NotAList {
        path: PathBuf,
        category: String,
        key: String,
    },
    #[error("lexicon {path}: [{category}] {key} item {item} is an empty term")]
    EmptyTerm {
        path: PathBuf,
        category: String,
        key: String,
        /// 1-based position in the list.
        item: usize,
    },
    #[error("lexicon {path}: [{category}] {key} term {term:?}: {problem}")]
    BadTerm {
        path: PathBuf,
        category: String,
        key: String,
        term: String,
        problem: String,
    },
}

/// What a lexicon match is about: an alert reason, or one of the auxiliary lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LexCategory {
    /// `complaint`, `threat_*`, `churn`, `escalation_request`, `agent_conduct`.
    Signal(SignalKind),
    /// Gratitude and satisfaction: one loud "thank you so much!" is not anger.
    Positive,
    /// Markers that make an utterance complaint-bearing without a complaint word.
    Grievance,
    /// The speaker says they are recording or filming the call.
    Recording,
    /// The customer says they have raised this before (third time, I was told last time,
    /// 又, 上次): a grievance restated, whatever its words.
    Repeat,
    /// The customer lodges a complaint ("I want to make a formal complaint", 我要投诉): a
    /// `complaint` signal marked `formal`, which the risk engine weighs as a request for
    /// action rather than a word of displeasure.
    FormalComplaint,
}

impl LexCategory {
    /// Every category a lexicon file may hold, besides `negation`.
    pub const ALL: [LexCategory; 13] = [
        LexCategory::Signal(SignalKind::Complaint),
        LexCategory::Signal(SignalKind::ThreatMedia),
        LexCategory::Signal(SignalKind::ThreatSocial),
        LexCategory::Signal(SignalKind::ThreatLegal),
        LexCategory::Signal(SignalKind::ThreatRegulator),
        LexCategory::Signal(SignalKind::Churn),
        LexCategory::Signal(SignalKind::EscalationRequest),
        LexCategory::Signal(SignalKind::AgentConduct),
        LexCategory::Positive,
        LexCategory::Grievance,
        LexCategory::Recording,
        LexCategory::Repeat,
        LexCategory::FormalComplaint,
    ];

    /// The table name in the lexicon file.
    pub fn name(self) -> &'static str {
        match self {
            LexCategory::Signal(kind) => kind.as_str(),
            LexCategory::Positive => "positive",
            LexCategory::Grievance => "grievance",
            LexCategory::Recording => "recording",
            LexCategory::Repeat => "repeat",
            LexCategory::FormalComplaint => "formal_complaint",
        }
    }

    pub fn parse(name: &str) -> Option<LexCategory> {
        LexCategory::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The signal kind, for the alert-reason categories.
    pub fn signal_kind(self) -> Option<SignalKind> {
        match self {
            LexCategory::Signal(kind) => Some(kind),
            LexCategory::FormalComplaint => Some(SignalKind::Complaint),
            _ => None,
        }
    }

    /// What the speaker says they will do (threats, churn, escalation): what a `[reported]`
    /// marker can attribute to someone else.
    pub fn is_intent(self) -> bool {
        matches!(
            self,
            LexCategory::Signal(
                SignalKind::ThreatMedia
                    | SignalKind::ThreatSocial
                    | SignalKind::ThreatLegal
                    | SignalKind::ThreatRegulator
                    | SignalKind::Churn
                    | SignalKind::EscalationRequest
            )
        )
    }

    /// Customer categories are heard on the customer leg, `agent_conduct` on the agent leg,
    /// both on a mixed recording; the auxiliary lists on every leg.
    pub fn applies_to(self, leg: Leg) -> bool {
        match (self, leg) {
            (LexCategory::Signal(kind), Leg::Customer) => kind.is_customer_side(),
            (LexCategory::Signal(kind), Leg::Agent) => !kind.is_customer_side(),
            (LexCategory::FormalComplaint, Leg::Agent) => false,
            _ => true,
        }
    }
}

impl std::fmt::Display for LexCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One term found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexMatch {
    pub category: LexCategory,
    /// The term as written in the lexicon file (`speak to .. manager|supervisor`).
    pub term: String,
    /// Where the matched words are, in `char` offsets (not bytes) into the text given to
    /// [`Lexicon::scan`], end exclusive: `text.chars().skip(start).take(end - start)`.
    pub start: usize,
    pub end: usize,
    /// A negator closely precedes the term ("not", 不是): not a signal, not a grievance.
    pub negated: bool,
    /// Matched only by tolerating a misspelling or a substituted character.
    pub fuzzy: bool,
    /// A threat, churn or escalation said of someone else ("my neighbour says she'll report
    /// you", 我老公说要发帖): a `[reported]` marker closely precedes it. Like a negated match,
    /// it is not the speaker's own: no signal, no grievance.
    pub reported: bool,
}

impl LexMatch {
    /// Said by the speaker and meant: neither negated nor reported.
    pub fn is_live(&self) -> bool {
        !self.negated && !self.reported
    }
}

/// The parsed lexicon: every category's compiled terms plus the negators.
#[derive(Debug, Clone)]
pub struct Lexicon {
    origin: PathBuf,
    categories: BTreeMap<LexCategory, TermSet>,
    negation: TermSet,
    /// Someone other than the speaker is quoted ("my neighbour says", 我朋友说).
    reported: TermSet,
    /// Chinese terms also match homophones (see [`Lexicon::set_sound_alike`]).
    sound_alike: bool,
}

impl Lexicon {
    /// Parses lexicon TOML. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, LexiconError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map_or(1, |before| before.matches('\n').count() + 1);
            LexiconError::Syntax {
                path: origin.to_path_buf(),
                line,
                message: e.message().trim().replace('\n', "; "),
            }
        })?;
        let mut lexicon = Lexicon {
            origin: origin.to_path_buf(),
            categories: BTreeMap::new(),
            negation: TermSet::default(),
            reported: TermSet::default(),
            sound_alike: true,
        };
        for (name, value) in &table {
            let category = if name == NEGATION_TABLE || name == REPORTED_TABLE {
                None
            } else {
                Some(
                    LexCategory::parse(name).ok_or_else(|| LexiconError::UnknownCategory {
                        path: origin.to_path_buf(),
                        name: name.clone(),
                    })?,
                )
            };
            let toml::Value::Table(lists) = value else {
                return Err(LexiconError::NotATable {
                    path: origin.to_path_buf(),
                    category: name.clone(),
                });
            };
            let set = TermSet::parse(lists, name, origin)?;
            match category {
                Some(c) => {
                    lexicon.categories.insert(c, set);
                }
                None if name == REPORTED_TABLE => lexicon.reported = set,
                None => lexicon.negation = set,
            }
        }
        Ok(lexicon)
    }

    /// Reads and parses a lexicon file.
    pub fn load(path: &Path) -> Result<Self, LexiconError> {
        let text = std::fs::read_to_string(path).map_err(|source| LexiconError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The lexicon shipped in `config/lexicon.toml`, compiled into the binary.
    pub fn builtin() -> Self {
        // A unit test parses the shipped file, so the fallback (a lexicon that matches
        // nothing) only guards against a broken build, without a panic in the daemon.
        Self::parse(BUILTIN_TEXT, Path::new(BUILTIN_ORIGIN)).unwrap_or_else(|_| Lexicon {
            origin: PathBuf::from(BUILTIN_ORIGIN),
            categories: BTreeMap::new(),
            negation: TermSet::default(),
            reported: TermSet::default(),
            sound_alike: true,
        })
    }

    /// Whether Chinese terms also match where Whisper wrote homophones (on by default):
    /// characters read alike, tones aside (头诉 for 投诉, 暴光 for 曝光), at most one in a
    /// two-character term and half of a longer one, never a negation character. Such a
    /// match is `fuzzy`. Exceptions and negators always match exactly.
    pub fn set_sound_alike(&mut self, on: bool) {
        self.sound_alike = on;
    }

    /// The file this lexicon came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// A category's terms as written (English, then Chinese), for listings and checks.
    pub fn terms(&self, category: LexCategory) -> Vec<&str> {
        self.categories
            .get(&category)
            .map(TermSet::written)
            .unwrap_or_default()
    }

    /// The negators as written.
    pub fn negation_terms(&self) -> Vec<&str> {
        self.negation.written()
    }

    /// Every term of the categories that apply to `leg`, found in `text`, ordered by position.
    /// Negated matches are included and flagged; matches overlapping one of their
    /// category's `*_except` phrases are left out.
    pub fn scan(&self, leg: Leg, text: &str) -> Vec<LexMatch> {
        let analysed = Analysed::new(text);
        let negators = Negators::find(&self.negation, &analysed);
        let reporters = Negators::reported(&self.reported, &analysed);
        let mut out = Vec::new();
        for (&category, set) in &self.categories {
            if !category.applies_to(leg) {
                continue;
            }
            for found in set.find(&analysed, self.sound_alike) {
                out.push(LexMatch {
                    category,
                    term: found.term.to_owned(),
                    start: found.start,
                    end: found.end,
                    negated: negators.cancel(&analysed, found.at),
                    reported: category.is_intent() && reporters.cancel(&analysed, found.at),
                    fuzzy: found.fuzzy,
                });
            }
        }
        // A match inside a negated or reported one of the same category is negated with it:
        // "I won't be leaving you a bad review" (the negator reaches "leaving", three words
        // short of "bad review").
        // So is the weaker complaint word inside a negated formal complaint (我没什么要投诉的).
        let cancelled: Vec<(LexCategory, usize, usize, bool, bool)> = out
            .iter()
            .filter(|m| !m.is_live())
            .map(|m| (m.category, m.start, m.end, m.negated, m.reported))
            .collect();
        let related = |a: LexCategory, b: LexCategory| {
            a == b || (a.signal_kind().is_some() && a.signal_kind() == b.signal_kind())
        };
        for m in &mut out {
            for &(category, start, end, negated, reported) in &cancelled {
                if related(category, m.category) && start <= m.start && m.end <= end {
                    m.negated |= negated;
                    m.reported |= reported;
                }
            }
        }
        // A match inside a longer one of the same category, or of one that gives the same
        // signal, adds nothing ("过分" inside "太过分了", "court" inside "take you to court",
        // "complain" inside the formal "want to complain"), and would clutter `terms`. Of two
        // with the same span, the formal complaint is kept (it carries the `formal` mark).
        let contained = |m: &LexMatch, by: &LexMatch| {
            let longer = by.end - by.start > m.end - m.start;
            let tie = by.end - by.start == m.end - m.start;
            let preferred = if by.category == m.category {
                by.term < m.term
            } else {
                by.category == LexCategory::FormalComplaint
            };
            related(by.category, m.category)
                && by.is_live() == m.is_live()
                && by.start <= m.start
                && m.end <= by.end
                && (longer || (tie && preferred))
        };
        let keep: Vec<bool> = out
            .iter()
            .map(|m| !out.iter().any(|by| contained(m, by)))
            .collect();
        let mut out: Vec<LexMatch> = out
            .into_iter()
            .zip(keep)
            .filter_map(|(m, keep)| keep.then_some(m))
            .collect();
        out.sort_by(|a, b| {
            (a.start, a.end, a.category, &a.term).cmp(&(b.start, b.end, b.category, &b.term))
        });
        // A term listed twice matches twice.
        out.dedup();
        out
    }

    /// What one utterance says beyond its alert reasons, from a single scan on `leg` (see
    /// [`Cues`]). The customer and mixed legs give the same as the one-question methods
    /// below; on the agent leg `grievance` and `repeat` are always false.
    pub fn cues(&self, leg: Leg, text: &str) -> Cues {
        let found = self.scan(leg, text);
        let live = || found.iter().filter(|m| m.is_live());
        let grievance = live().any(|m| is_grievance_category(m.category));
        Cues {
            positive: !grievance && live().any(|m| m.category == LexCategory::Positive),
            grievance: leg != Leg::Agent && grievance,
            recording: live().any(|m| m.category == LexCategory::Recording),
            repeat: leg != Leg::Agent && live().any(|m| m.category == LexCategory::Repeat),
        }
    }

    /// Gratitude or satisfaction, and nothing of complaint, threat or grievance: the risk
    /// engine's cue that a loud utterance is a happy one.
    pub fn is_positive(&self, text: &str) -> bool {
        self.cues(Leg::Mixed, text).positive
    }

    /// Whether the utterance carries a grievance: a customer-side category (complaint,
    /// threats, churn, escalation) or a grievance marker, not negated. The agent's own words
    /// never do (a grievance is the customer's), so the agent leg always gives false.
    pub fn is_grievance(&self, leg: Leg, text: &str) -> bool {
        self.cues(leg, text).grievance
    }

    /// The customer says this was raised before ("the third time I'm calling", 又是这样),
    /// not negated. The agent's words never do.
    pub fn mentions_repeat(&self, leg: Leg, text: &str) -> bool {
        self.cues(leg, text).repeat
    }

    /// The speaker says they are recording or filming the call (not negated).
    pub fn mentions_recording(&self, text: &str) -> bool {
        self.cues(Leg::Mixed, text).recording
    }
}

/// What an utterance says besides its alert reasons (none negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cues {
    /// Gratitude or satisfaction, and no grievance.
    pub positive: bool,
    /// A customer-side category or a grievance marker (customer and mixed legs only).
    pub grievance: bool,
    /// The speaker says they are recording or filming the call.
    pub recording: bool,
    /// The customer says this was raised before (customer and mixed legs only).
    pub repeat: bool,
}

fn is_grievance_category(c: LexCategory) -> bool {
    match c {
        LexCategory::Signal(kind) => kind.is_customer_side(),
        // Saying a problem was raised before is itself a grievance.
        LexCategory::Grievance | LexCategory::Repeat | LexCategory::FormalComplaint => true,
        LexCategory::Positive | LexCategory::Recording => false,
    }
}

/// Turns transcripts into lexicon signals: one per matched category per transcript.
#[derive(Debug, Clone)]
pub struct LexiconDetector {
    lexicon: Arc<Lexicon>,
}

impl Default for LexiconDetector {
    fn default() -> Self {
        Self::new(Arc::new(Lexicon::builtin()))
    }
}

impl LexiconDetector {
    pub fn new(lexicon: Arc<Lexicon>) -> Self {
        Self { lexicon }
    }

    pub fn lexicon(&self) -> &Arc<Lexicon> {
        &self.lexicon
    }

    /// Swaps in a reloaded lexicon; the next transcript is matched against it.
    pub fn set_lexicon(&mut self, lexicon: Arc<Lexicon>) {
        self.lexicon = lexicon;
    }

    /// The signals in one transcript, in [`SignalKind`] order: kind = category, the
    /// transcript's leg and times, `at_ms = now_ms`, the matched words as said (`terms`) and
    /// the lexicon entries behind them (`lexicon_terms`), in order of appearance, and the
    /// utterance as the only quote. Negated and reported matches give nothing.
    pub fn update(&mut self, t: &Transcript, now_ms: u64) -> Vec<Signal> {
        // Per kind: the words as said (evidence a supervisor reads) and the lexicon entries
        // that matched them (what someone tuning the lexicon needs).
        let mut found: BTreeMap<SignalKind, (Vec<String>, Vec<String>)> = BTreeMap::new();
        let mut formal = false;
        for m in self.lexicon.scan(t.leg, &t.text) {
            if !m.is_live() {
                continue;
            }
            formal |= m.category == LexCategory::FormalComplaint;
            if let Some(kind) = m.category.signal_kind() {
                let (said, entries) = found.entry(kind).or_default();
                let words: String = t.text.chars().skip(m.start).take(m.end - m.start).collect();
                let words = words.trim().to_owned();
                if !words.is_empty() && !said.contains(&words) {
                    said.push(words);
                }
                if !entries.contains(&m.term) {
                    entries.push(m.term);
                }
            }
        }
        found
            .into_iter()
            .map(|(kind, (said, entries))| {
                let mut s = Signal::new(kind, t.leg, t.start_ms, t.end_ms, now_ms);
                s.formal = formal && kind == SignalKind::Complaint;
                s.terms = said;
                s.lexicon_terms = entries;
                s.quotes = vec![Quote {
                    leg: t.leg,
                    start_ms: t.start_ms,
                    end_ms: t.end_ms,
                    text: t.text.clone(),
                }];
                s
            })
            .collect()
    }

    /// See [`Lexicon::is_positive`].
    pub fn is_positive(&self, text: &str) -> bool {
        self.lexicon.is_positive(text)
    }

    /// See [`Lexicon::is_grievance`].
    pub fn is_grievance(&self, leg: Leg, text: &str) -> bool {
        self.lexicon.is_grievance(leg, text)
    }

    /// See [`Lexicon::mentions_recording`].
    pub fn mentions_recording(&self, text: &str) -> bool {
        self.lexicon.mentions_recording(text)
    }
}

// ---------------------------------------------------------------------------------------
// Normalisation, shared with `repetition`.

/// One normalised unit of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A letter or digit: lower case, half-width, simplified Chinese.
    Char(char),
    /// Any other separator: a space, a hyphen, quotes, brackets.
    Space,
    /// Clause punctuation (, . ! ? ; : 。 、 …): negation and gaps stop here.
    Break,
}

/// Normalises `text` unit by unit, each with the `char` index of the original character it
/// came from. Apostrophes vanish, so that don't, don’t and dont are one word.
pub(crate) fn normalise(text: &str) -> Vec<(Unit, usize)> {
    let original: Vec<char> = text.chars().collect();
    let mut simplified: Vec<char> = fast2s::convert(text).chars().collect();
    if simplified.len() != original.len() {
        // fast2s maps character for character; should that ever change, converting one
        // character at a time keeps the offsets right at the cost of context.
        simplified = original
            .iter()
            .map(|c| fast2s::convert(&c.to_string()).chars().next().unwrap_or(*c))
            .collect();
    }
    let mut out = Vec::with_capacity(simplified.len());
    for (i, &c) in simplified.iter().enumerate() {
        let c = match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        };
        if matches!(c, '\'' | '’' | '‘' | '`' | '´' | 'ʼ' | '′') {
            continue;
        }
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase().map(|l| (Unit::Char(l), i)));
        } else if matches!(
            c,
            ',' | '.' | '!' | '?' | ';' | ':' | '。' | '、' | '…' | '—' | '\n' | '｡' | '､'
        ) {
            out.push((Unit::Break, i));
        } else {
            out.push((Unit::Space, i));
        }
    }
    out
}

/// Han characters and kana: scripts written without spaces, matched as substrings.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// An English word of the text.
#[derive(Debug, Clone)]
struct Token {
    text: Vec<char>,
    start: usize,
    end: usize,
    clause: usize,
}

/// A letter or digit of the text with spaces and punctuation removed (for Chinese terms).
#[derive(Debug, Clone, Copy)]
struct CompactChar {
    c: char,
    orig: usize,
    clause: usize,
    /// A space or punctuation came between this and the previous character.
    spaced: bool,
}

/// A text, normalised two ways: English words, and compact characters for Chinese.
#[derive(Debug)]
struct Analysed {
    tokens: Vec<Token>,
    compact: Vec<CompactChar>,
}

impl Analysed {
    fn new(text: &str) -> Self {
        let mut tokens: Vec<Token> = Vec::new();
        let mut compact = Vec::new();
        let mut clause = 0;
        let mut in_word = false;
        let mut spaced = false;
        for (unit, orig) in normalise(text) {
            match unit {
                Unit::Char(c) if !is_cjk(c) => {
                    match tokens.last_mut() {
                        Some(t) if in_word => {
                            t.text.push(c);
                            t.end = orig + 1;
                        }
                        _ => tokens.push(Token {
                            text: vec![c],
                            start: orig,
                            end: orig + 1,
                            clause,
                        }),
                    }
                    in_word = true;
                    compact.push(CompactChar {
                        c,
                        orig,
                        clause,
                        spaced,
                    });
                    spaced = false;
                }
                Unit::Char(c) => {
                    in_word = false;
                    compact.push(CompactChar {
                        c,
                        orig,
                        clause,
                        spaced,
                    });
                    spaced = false;
                }
                Unit::Space => {
                    in_word = false;
                    spaced = true;
                }
                Unit::Break => {
                    in_word = false;
                    spaced = true;
                    clause += 1;
                }
            }
        }
        Self { tokens, compact }
    }
}

// ---------------------------------------------------------------------------------------
// Terms.

/// One word of an English term.
#[derive(Debug, Clone)]
struct Word {
    text: Vec<char>,
    /// Written with a trailing `*`: any word starting with `text` (never fuzzy).
    stem: bool,
}

#[derive(Debug, Clone)]
enum EnStep {
    /// One word, any of these alternatives.
    Word(Vec<Word>),
    /// Up to [`EN_GAP_WORDS`] words of anything.
    Gap,
}

#[derive(Debug, Clone)]
struct EnTerm {
    written: String,
    steps: Vec<EnStep>,
}

#[derive(Debug, Clone)]
enum ZhStep {
    /// A run of characters, any of these alternatives.
    Chars(Vec<Vec<char>>),
    /// Up to [`ZH_GAP_CHARS`] characters of anything.
    Gap,
}

#[derive(Debug, Clone)]
struct ZhTerm {
    written: String,
    steps: Vec<ZhStep>,
}

/// Where a match starts, in the index space its negation window is counted in.
#[derive(Debug, Clone, Copy)]
enum At {
    Token(usize),
    Compact(usize),
}

/// A match before negation is decided.
#[derive(Debug)]
struct Found<'a> {
    term: &'a str,
    start: usize,
    end: usize,
    at: At,
    fuzzy: bool,
}

/// One table of the lexicon file, compiled.
#[derive(Debug, Clone, Default)]
struct TermSet {
    en: Vec<EnTerm>,
    zh: Vec<ZhTerm>,
    en_except: Vec<EnTerm>,
    zh_except: Vec<ZhTerm>,
    /// Negators that reach only the word or character right after them (`[negation]` only).
    en_adjacent: Vec<EnTerm>,
    zh_adjacent: Vec<ZhTerm>,
}

impl TermSet {
    fn parse(lists: &toml::Table, category: &str, origin: &Path) -> Result<Self, LexiconError> {
        let mut set = TermSet::default();
        let negation = category == NEGATION_TABLE;
        for (key, value) in lists {
            let known = match key.as_str() {
                "en" | "zh" | "en_except" | "zh_except" => true,
                "en_adjacent" | "zh_adjacent" => negation,
                _ => false,
            };
            if !known {
                return Err(LexiconError::UnknownKey {
                    path: origin.to_path_buf(),
                    category: category.to_owned(),
                    key: key.clone(),
                    expected: if negation { NEGATION_KEYS } else { KEYS },
                });
            }
            let bad = |problem: String, term: &str| LexiconError::BadTerm {
                path: origin.to_path_buf(),
                category: category.to_owned(),
                key: key.clone(),
                term: term.to_owned(),
                problem,
            };
            let toml::Value::Array(items) = value else {
                return Err(LexiconError::NotAList {
                    path: origin.to_path_buf(),
                    category: category.to_owned(),
                    key: key.clone(),
                });
            };
            let mut terms = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(term) = item.as_str() else {
                    return Err(LexiconError::NotAList {
                        path: origin.to_path_buf(),
                        category: category.to_owned(),
                        key: key.clone(),
                    });
                };
                let term = term.trim();
                if term.is_empty() {
                    return Err(LexiconError::EmptyTerm {
                        path: origin.to_path_buf(),
                        category: category.to_owned(),
                        key: key.clone(),
                        item: i + 1,
                    });
                }
                terms.push(term);
            }
            let en = || -> Result<Vec<EnTerm>, LexiconError> {
                terms
                    .iter()
                    .map(|t| compile_en(t).map_err(|p| bad(p, t)))
                    .collect()
            };
            let zh = || -> Result<Vec<ZhTerm>, LexiconError> {
                terms
                    .iter()
                    .map(|t| compile_zh(t).map_err(|p| bad(p, t)))
                    .collect()
            };
            match key.as_str() {
                "en" => set.en = en()?,
                "en_except" => set.en_except = en()?,
                "en_adjacent" => set.en_adjacent = en()?,
                "zh" => set.zh = zh()?,
                "zh_except" => set.zh_except = zh()?,
                "zh_adjacent" => set.zh_adjacent = zh()?,
                // Unknown keys were refused above.
                _ => {}
            }
        }
        Ok(set)
    }

    fn written(&self) -> Vec<&str> {
        self.en
            .iter()
            .map(|t| t.written.as_str())
            .chain(self.zh.iter().map(|t| t.written.as_str()))
            .collect()
    }

    /// Every match of the set's terms, except those overlapping an exception.
    fn find<'a>(&'a self, text: &Analysed, sound_alike: bool) -> Vec<Found<'a>> {
        self.find_in(&self.en, &self.zh, text, sound_alike)
    }

    /// Every match of the given terms, except those overlapping one of the set's exceptions.
    fn find_in<'a>(
        &self,
        en: &'a [EnTerm],
        zh: &'a [ZhTerm],
        text: &Analysed,
        sound_alike: bool,
    ) -> Vec<Found<'a>> {
        let mut exceptions: Vec<(usize, usize)> = Vec::new();
        for term in &self.en_except {
            exceptions.extend(en_find(term, text).into_iter().map(|f| (f.start, f.end)));
        }
        for term in &self.zh_except {
            exceptions.extend(
                zh_find(term, text, false)
                    .into_iter()
                    .map(|f| (f.start, f.end)),
            );
        }
        let mut found: Vec<Found<'a>> = Vec::new();
        for term in en {
            found.extend(en_find(term, text));
        }
        for term in zh {
            found.extend(zh_find(term, text, sound_alike));
        }
        found.retain(|f| !exceptions.iter().any(|&(s, e)| s < f.end && f.start < e));
        found
    }
}

/// The negators found in one text: where each ends (a token index for English, a compact
/// character index for Chinese) and how far it reaches.
#[derive(Debug, Default)]
struct Negators {
    en: Vec<(usize, usize)>,
    zh: Vec<(usize, usize)>,
}

impl Negators {
    /// The `[reported]` markers, each reaching a few words or characters on.
    fn reported(set: &TermSet, text: &Analysed) -> Self {
        Self::reaching(set, text, (EN_REPORTED_WINDOW, ZH_REPORTED_WINDOW))
    }

    /// The negators: the main lists, then the adjacent ones that reach one word on.
    fn find(set: &TermSet, text: &Analysed) -> Self {
        let mut out = Self::reaching(set, text, (EN_NEGATION_WINDOW, ZH_NEGATION_WINDOW));
        out.add(set, &set.en_adjacent, &set.zh_adjacent, text, (1, 1));
        out
    }

    /// `set`'s main lists (`en`, `zh`), each match reaching `windows` on.
    fn reaching(set: &TermSet, text: &Analysed, windows: (usize, usize)) -> Self {
        let mut out = Negators::default();
        out.add(set, &set.en, &set.zh, text, windows);
        out
    }

    /// Adds where each of `set`'s terms in `en` / `zh` ends, reaching `windows` (English
    /// words, Chinese characters) on.
    fn add(
        &mut self,
        set: &TermSet,
        en: &[EnTerm],
        zh: &[ZhTerm],
        text: &Analysed,
        (en_window, zh_window): (usize, usize),
    ) {
        for f in set.find_in(en, zh, text, false) {
            match f.at {
                At::Token(first) => {
                    // The end: the first token at or after the match end.
                    let end = text.tokens[first..]
                        .iter()
                        .position(|t| t.start >= f.end)
                        .map_or(text.tokens.len(), |p| first + p);
                    self.en.push((end, en_window));
                }
                At::Compact(first) => {
                    let end = text.compact[first..]
                        .iter()
                        .position(|c| c.orig >= f.end)
                        .map_or(text.compact.len(), |p| first + p);
                    self.zh.push((end, zh_window));
                }
            }
        }
    }

    /// A negator cancels a match when it ends within its window before the match start, in
    /// the same clause. One that overlaps the match is part of the term ("not happy").
    fn cancel(&self, text: &Analysed, at: At) -> bool {
        match at {
            At::Token(s) => self.en.iter().any(|&(end, window)| {
                end <= s
                    && end > 0
                    && s - end < window
                    && text.tokens[end - 1].clause == text.tokens[s].clause
            }),
            At::Compact(s) => self.zh.iter().any(|&(end, window)| {
                end <= s
                    && end > 0
                    && s - end < window
                    && text.compact[end - 1].clause == text.compact[s].clause
            }),
        }
    }
}

fn compile_en(term: &str) -> Result<EnTerm, String> {
    if term.chars().any(is_cjk) {
        return Err("has Chinese characters: put it in the zh list".into());
    }
    let mut steps = Vec::new();
    for piece in term.split_whitespace() {
        if piece == ".." {
            if matches!(steps.last(), None | Some(EnStep::Gap)) {
                return Err("`..` must stand between two words".into());
            }
            steps.push(EnStep::Gap);
            continue;
        }
        let alternatives: Vec<&str> = piece.split('|').collect();
        let mut words = Vec::new();
        for alt in &alternatives {
            let (body, stem) = match alt.strip_suffix('*') {
                Some(body) => (body, true),
                None => (*alt, false),
            };
            if body.contains('*') {
                return Err("`*` may only end a word".into());
            }
            let tokens = Analysed::new(body).tokens;
            match tokens.len() {
                0 => return Err(format!("`{alt}` has no letters or digits")),
                1 => {}
                _ if alternatives.len() > 1 => {
                    return Err(format!("alternative `{alt}` must be one word"));
                }
                _ => {}
            }
            let n = tokens.len();
            for (i, t) in tokens.into_iter().enumerate() {
                let stem = stem && i + 1 == n;
                if stem && t.text.len() < MIN_STEM_CHARS {
                    return Err(format!(
                        "stem `{alt}` is too short (at least {MIN_STEM_CHARS} letters before `*`)"
                    ));
                }
                let word = Word { text: t.text, stem };
                if alternatives.len() > 1 {
                    words.push(word);
                } else {
                    // "1-star" or "e-mail": several words from one piece, matched in turn.
                    steps.push(EnStep::Word(vec![word]));
                }
            }
        }
        if !words.is_empty() {
            steps.push(EnStep::Word(words));
        }
    }
    match steps.last() {
        None => Err("has no words".into()),
        Some(EnStep::Gap) => Err("`..` must stand between two words".into()),
        Some(EnStep::Word(_)) => Ok(EnTerm {
            written: term.to_owned(),
            steps,
        }),
    }
}

fn compile_zh(term: &str) -> Result<ZhTerm, String> {
    if term.contains('*') {
        return Err("`*` is for English stems; a Chinese term already matches inside words".into());
    }
    let mut steps = Vec::new();
    for (i, segment) in term.split("..").enumerate() {
        if i > 0 {
            steps.push(ZhStep::Gap);
        }
        // Whitespace only delimits groups of alternatives ("发|发到 微博|抖音"); the text is
        // matched with its spaces removed either way.
        let groups: Vec<&str> = segment.split_whitespace().collect();
        if groups.is_empty() {
            return Err("`..` must stand between two characters".into());
        }
        for group in groups {
            let mut alternatives = Vec::new();
            for alt in group.split('|') {
                let chars: Vec<char> = Analysed::new(alt).compact.iter().map(|c| c.c).collect();
                if chars.is_empty() {
                    return Err(format!("alternative `{alt}` has no letters or digits"));
                }
                alternatives.push(chars);
            }
            steps.push(ZhStep::Chars(alternatives));
        }
    }
    Ok(ZhTerm {
        written: term.to_owned(),
        steps,
    })
}

// ---------------------------------------------------------------------------------------
// Matching.

fn en_find<'a>(term: &'a EnTerm, text: &Analysed) -> Vec<Found<'a>> {
    let mut out = Vec::new();
    // Every way a word can match keeps its first letter, so that letter rules out most
    // start positions cheaply.
    let initials: Vec<char> = match term.steps.first() {
        Some(EnStep::Word(words)) => words
            .iter()
            .filter_map(|w| w.text.first().copied())
            .collect(),
        _ => Vec::new(),
    };
    for (i, first) in text.tokens.iter().enumerate() {
        if !first.text.first().is_some_and(|c| initials.contains(c)) {
            continue;
        }
        if let Some((end, fuzzy)) = en_match(&term.steps, &text.tokens, i, first.clause) {
            out.push(Found {
                term: &term.written,
                start: first.start,
                end: text.tokens[end - 1].end,
                at: At::Token(i),
                fuzzy,
            });
        }
    }
    out
}

/// Matches `steps` from token `i`, all within `clause`: the end token and whether any word
/// was fuzzy. Gaps try the shortest skip first.
fn en_match(steps: &[EnStep], tokens: &[Token], i: usize, clause: usize) -> Option<(usize, bool)> {
    let Some((step, rest)) = steps.split_first() else {
        return Some((i, false));
    };
    match step {
        EnStep::Gap => (0..=EN_GAP_WORDS).find_map(|skip| {
            let j = i + skip;
            if j > tokens.len() || tokens[i..j].iter().any(|t| t.clause != clause) {
                return None;
            }
            en_match(rest, tokens, j, clause)
        }),
        EnStep::Word(alternatives) => {
            let token = tokens.get(i).filter(|t| t.clause == clause)?;
            if let Some(fuzzy) = alternatives
                .iter()
                .filter_map(|w| word_match(w, &token.text))
                .min()
                && let Some((end, rest_fuzzy)) = en_match(rest, tokens, i + 1, clause)
            {
                return Some((end, fuzzy || rest_fuzzy));
            }
            // Whisper splits a word it half-hears in two ("ombuds man", "off com"): a
            // long term word may be two tokens of the clause that read as it together.
            let next = tokens.get(i + 1).filter(|t| t.clause == clause)?;
            let joined_len = token.text.len() + next.text.len();
            // Most tries fail here, so the joined word is built only for a plausible one:
            // same first letter, about the same length.
            let plausible = |w: &&Word| {
                !w.stem
                    && w.text.len() >= MIN_SPLIT_WORD
                    && w.text.first() == token.text.first()
                    && w.text.len().abs_diff(joined_len) <= 2
            };
            if !alternatives.iter().any(|w| plausible(&w)) {
                return None;
            }
            let joined: Vec<char> = token.text.iter().chain(&next.text).copied().collect();
            alternatives
                .iter()
                .filter(plausible)
                .find(|w| w.text == joined || same_sound_en(&w.text, &joined))?;
            let (end, _) = en_match(rest, tokens, i + 2, clause)?;
            Some((end, true))
        }
    }
}

/// Whether `token` is `word`: `Some(false)` exactly (or by stem), `Some(true)` within the
/// misspelling allowance, `None` not at all.
fn word_match(word: &Word, token: &[char]) -> Option<bool> {
    if word.stem {
        return token.starts_with(&word.text).then_some(false);
    }
    if token == word.text.as_slice() {
        return Some(false);
    }
    if same_sound_en(&word.text, token) {
        return Some(true);
    }
    let budget = misspelling_budget(word.text.len().min(token.len()));
    let alphabetic = |w: &[char]| w.iter().all(|c| c.is_alphabetic());
    // ASR slips keep the first letter; allowing it to change turns "acceptable" into
    // "unacceptable".
    if budget == 0
        || word.text.first() != token.first()
        || !alphabetic(&word.text)
        || !alphabetic(token)
        || word.text.len().abs_diff(token.len()) > budget
    {
        return None;
    }
    (levenshtein(&word.text, token) <= budget).then_some(true)
}

/// The shortest term word that may be heard split in two ("ofcom" as "off com").
const MIN_SPLIT_WORD: usize = 5;

/// Whether a transcript word is spelt as a term word sounds, for words of 5 letters and
/// more: double letters single, ph as f, ck as k, a final s or es dropped ("offcom" is
/// "ofcom", "trading standard" is "standards"). The first letter must agree, as for
/// misspellings.
fn same_sound_en(word: &[char], token: &[char]) -> bool {
    fn key(w: &[char]) -> Vec<char> {
        let s: String = w.iter().collect();
        let s = s.replace("ph", "f").replace("ck", "k");
        let mut out: Vec<char> = Vec::new();
        for c in s.chars() {
            if out.last() != Some(&c) {
                out.push(c);
            }
        }
        if out.len() > 4 && out.last() == Some(&'s') {
            out.pop();
            if out.last() == Some(&'e') && out.len() > 4 {
                out.pop();
            }
        }
        out
    }
    word.len() >= MIN_SPLIT_WORD
        && token.len() >= MIN_SPLIT_WORD - 1
        && word.first() == token.first()
        && word.iter().chain(token).all(|c| c.is_alphabetic())
        && key(word) == key(token)
}

/// Letters a word of this length may have wrong. Below 7 letters near-misses are other
/// words (layer/lawyer, layers/lawyers), so there is no allowance.
fn misspelling_budget(len: usize) -> usize {
    match len {
        0..=6 => 0,
        7..=9 => 1,
        _ => 2,
    }
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn zh_find<'a>(term: &'a ZhTerm, text: &Analysed, sound_alike: bool) -> Vec<Found<'a>> {
    let mut out = Vec::new();
    let chars = &text.compact;
    // Fuzzy matching never substitutes the first character, so it must be there.
    let initials: Vec<char> = match term.steps.first() {
        Some(ZhStep::Chars(alternatives)) => alternatives
            .iter()
            .filter_map(|a| a.first().copied())
            .collect(),
        _ => Vec::new(),
    };
    for i in 0..chars.len() {
        let c = chars[i].c;
        if !initials
            .iter()
            .any(|&x| x == c || (sound_alike && same_sound(c, x)))
        {
            continue;
        }
        if let Some((end, fuzzy)) = zh_match(&term.steps, chars, i, None, sound_alike) {
            out.push(Found {
                term: &term.written,
                start: chars[i].orig,
                end: chars[end - 1].orig + 1,
                at: At::Compact(i),
                fuzzy,
            });
        }
    }
    out
}

/// Matches `steps` from compact character `i`. Runs of characters ignore punctuation; a gap
/// stays within the clause it starts in (`clause`, set after a gap).
fn zh_match(
    steps: &[ZhStep],
    chars: &[CompactChar],
    i: usize,
    clause: Option<usize>,
    sound_alike: bool,
) -> Option<(usize, bool)> {
    let Some((step, rest)) = steps.split_first() else {
        return Some((i, false));
    };
    match step {
        ZhStep::Gap => {
            let clause = chars.get(i.checked_sub(1)?)?.clause;
            (0..=ZH_GAP_CHARS).find_map(|skip| {
                let j = i + skip;
                if j > chars.len() || chars[i..j].iter().any(|c| c.clause != clause) {
                    return None;
                }
                zh_match(rest, chars, j, Some(clause), sound_alike)
            })
        }
        ZhStep::Chars(alternatives) => {
            if let Some(clause) = clause
                && chars.get(i)?.clause != clause
            {
                return None;
            }
            // Exact readings first, so that a fuzzy one is reported only when it is the
            // only way the term matches.
            for fuzzy in [false, true] {
                for alt in alternatives {
                    if zh_run_matches(alt, chars, i, fuzzy, sound_alike)
                        && let Some((end, rest_fuzzy)) =
                            zh_match(rest, chars, i + alt.len(), None, sound_alike)
                    {
                        return Some((end, fuzzy || rest_fuzzy));
                    }
                }
            }
            None
        }
    }
}

/// Whether `run` is at `chars[i..]`: exactly, or (with `fuzzy`) with one inner CJK
/// character substituted by another that is not a negation, and (with `sound_alike` too)
/// homophones in place of some characters (see [`Lexicon::set_sound_alike`]).
fn zh_run_matches(
    run: &[char],
    chars: &[CompactChar],
    i: usize,
    fuzzy: bool,
    sound_alike: bool,
) -> bool {
    let Some(window) = chars.get(i..i + run.len()) else {
        return false;
    };
    // A term that begins or ends with a Latin letter or digit ("12315") must not run into
    // a neighbouring word ("123150").
    let latin = |c: char| c.is_alphanumeric() && !is_cjk(c);
    if run.first().is_some_and(|&c| latin(c)) && i > 0 && latin(chars[i - 1].c) && !chars[i].spaced
    {
        return false;
    }
    if let Some(next) = chars.get(i + run.len())
        && run.last().is_some_and(|&c| latin(c))
        && latin(next.c)
        && !next.spaced
    {
        return false;
    }
    let negation = |c: char| ZH_NEGATION_CHARS.contains(&c);
    let homophone = |have: char, want: char| {
        fuzzy && sound_alike && !negation(have) && !negation(want) && same_sound(have, want)
    };
    let homophones = window
        .iter()
        .zip(run)
        .filter(|(have, want)| have.c != **want && homophone(have.c, **want))
        .count();
    if homophones > run.len() / 2 {
        return false;
    }
    let mut mismatches = window
        .iter()
        .zip(run)
        .enumerate()
        .filter(|(_, (have, want))| have.c != **want && !homophone(have.c, **want));
    let Some((pos, (have, want))) = mismatches.next() else {
        return true;
    };
    fuzzy
        && mismatches.next().is_none()
        && run.len() >= ZH_FUZZY_MIN_CHARS
        && pos > 0
        && pos + 1 < run.len()
        && is_cjk(have.c)
        && is_cjk(*want)
        && !ZH_NEGATION_CHARS.contains(&have.c)
        && !ZH_NEGATION_CHARS.contains(want)
}

/// Whether `have` (a transcript's character) can be read as `want` (a term's), tones
/// aside: `have` in its usual reading, `want` in any of its readings (曝 is bao or pu). The
/// slips Whisper makes when it half-hears a word on phone audio are homophones in their
/// everyday readings; rare readings (告 also reads ju, as 车 does) would match too much.
/// zh, ch, sh count as z, c, s (投述 for 投诉), as in many speakers' Mandarin; other
/// near-sounds (an/ang: 报关 and 曝光) stay apart.
fn same_sound(have: char, want: char) -> bool {
    use pinyin::{ToPinyin, ToPinyinMulti};
    /// A syllable as (initial z/c/s or nothing, the rest), so zhu and zu compare equal
    /// without building a string: this runs for every character of every transcript.
    fn flat(p: &str) -> (&str, &str) {
        match p.get(..2) {
            Some("zh" | "ch" | "sh") => (&p[..1], &p[2..]),
            _ => match p.get(..1) {
                Some("z" | "c" | "s") => (&p[..1], &p[1..]),
                _ => ("", p),
            },
        }
    }
    if have == want {
        return true;
    }
    let (Some(h), Some(w)) = (have.to_pinyin(), want.to_pinyin_multi()) else {
        return false;
    };
    let h = flat(h.plain());
    w.into_iter().any(|y| flat(y.plain()) == h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::test_line;

    fn lex() -> Lexicon {
        let lexicon = Lexicon::parse(BUILTIN_TEXT, Path::new("config/lexicon.toml"));
        match lexicon {
            Ok(l) => l,
            Err(e) => panic!("the shipped lexicon does not parse: {e}"),
        }
    }

    /// The signal categories found (neither negated nor reported) on `leg`.
    fn kinds(l: &Lexicon, leg: Leg, text: &str) -> Vec<SignalKind> {
        let mut v: Vec<SignalKind> = l
            .scan(leg, text)
            .into_iter()
            .filter(LexMatch::is_live)
            .filter_map(|m| m.category.signal_kind())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn has(l: &Lexicon, text: &str, kind: SignalKind) -> bool {
        kinds(l, Leg::Mixed, text).contains(&kind)
    }

    fn assert_kind(l: &Lexicon, kind: SignalKind, texts: &[&str]) {
        for t in texts {
            assert!(
                has(l, t, kind),
                "{kind} not found in {t:?}: {:?}",
                l.scan(Leg::Mixed, t)
            );
        }
    }

    fn assert_not_kind(l: &Lexicon, kind: SignalKind, texts: &[&str]) {
        for t in texts {
            assert!(
                !has(l, t, kind),
                "{kind} wrongly found in {t:?}: {:?}",
                l.scan(Leg::Mixed, t)
            );
        }
    }

    fn transcript(leg: Leg, start_ms: u64, text: &str) -> Transcript {
        Transcript {
            call_id: "c".into(),
            leg,
            start_ms,
            end_ms: start_ms + 2000,
            at_ms: start_ms + 2000,
            text: text.into(),
            lang: "en".into(),
            is_final: true,
        }
    }

    #[test]
    fn the_shipped_lexicon_parses_and_fills_every_category() {
        let l = lex();
        for c in LexCategory::ALL {
            assert!(l.terms(c).len() >= 5, "{c} is nearly empty");
        }
        assert!(l.negation_terms().len() >= 5);
        // builtin() is the same file, not the empty fallback.
        assert_eq!(
            Lexicon::builtin().terms(LexCategory::Signal(SignalKind::Complaint)),
            l.terms(LexCategory::Signal(SignalKind::Complaint))
        );
    }

    #[test]
    fn complaint_in_both_languages_and_scripts() {
        let l = lex();
        assert_kind(
            &l,
            SignalKind::Complaint,
            &[
                "I want to complain about this.",
                "I'd like to file a complaint.",
                "This is UNACCEPTABLE!",
                "That is not acceptable. Nobody called me.",
                "Honestly, I'm fed up with you people.",
                "This is the worst service I have ever had",
                "我要投诉你们",
                "我要投訴你們的服務！",
                "你们这是什么服务啊？",
                "我真的受够了",
                "我要投 诉",
                "ＴＨＩＳ　ＩＳ　ＲＩＤＩＣＵＬＯＵＳ！",
            ],
        );
    }

    #[test]
    fn threats_in_both_languages() {
        let l = lex();
        assert_kind(
            &l,
            SignalKind::ThreatMedia,
            &[
                "I'm going to the press with this.",
                "I will call the newspapers",
                "I'll contact a journalist",
                "Maybe I should go to the media",
                "I'll call the TV station.",
                "我要曝光你们",
                "我要向媒体反映",
                "我去找记者",
                "我要找电视台",
                "我要讓你們上電視",
            ],
        );
        assert_kind(
            &l,
            SignalKind::ThreatSocial,
            &[
                "I'm going to post this on Twitter.",
                "I will put it all over social media",
                "I'll write a review everywhere",
                "This is going to go viral",
                "I'll leave you a one star review",
                "我要发微博",
                "我发朋友圈让大家看看",
                "我要发到网上",
                "我要發抖音",
                "给你们差评",
            ],
        );
        assert_kind(
            &l,
            SignalKind::ThreatLegal,
            &[
                "I will sue you.",
                "I'm calling my lawyer",
                "I'll take you to court",
                "I'm taking legal action",
                "我要起诉你们",
                "我要告你们",
                "我去找律师",
                "法院见",
            ],
        );
        assert_kind(
            &l,
            SignalKind::ThreatRegulator,
            &[
                "I'll report you to consumer protection",
                "I'm contacting the Better Business Bureau",
                "I'll file with the FTC",
                "I'll take this to the ombudsman",
                "I'll call trading standards",
                "我要打12315",
                "我去消协投诉",
                "我要向消费者协会反映",
                "找工商局",
                "我要去市场监管局",
            ],
        );
    }

    #[test]
    fn churn_and_escalation_in_both_languages() {
        let l = lex();
        assert_kind(
            &l,
            SignalKind::Churn,
            &[
                "Cancel my account.",
                "I want to cancel my subscription",
                "Please close my account",
                "I will never buy from you again",
                "I'm switching to another provider",
                "I'll take my business elsewhere",
                "我再也不买了",
                "我要退订这个套餐",
                "我要销户",
                "我换一家",
                "不用你们了",
            ],
        );
        assert_kind(
            &l,
            SignalKind::EscalationRequest,
            &[
                "Let me speak to your manager.",
                "I want to talk to a supervisor",
                "Get me someone senior",
                "Can you escalate this?",
                "Put me through to your boss",
                "I will complain to your manager",
                "我要找你们领导",
                "叫你们经理来",
                "这已经是第三次了，我要找你们的经理。",
                "让你们主管跟我说",
                "你们负责人呢",
            ],
        );
    }

    #[test]
    fn agent_conduct_is_heard_on_the_agent_leg_only() {
        let l = lex();
        for t in [
            "That's impossible.",
            "Read the manual yourself.",
            "That's not my problem.",
            "Calm down, sir.",
            "You should have read the terms.",
            "There's nothing I can do.",
            "That's our policy.",
            "这不可能",
            "你自己看说明",
            "我也没办法",
            "这不归我管",
            "这是规定",
            "你听不懂吗？",
        ] {
            assert_eq!(
                kinds(&l, Leg::Agent, t),
                vec![SignalKind::AgentConduct],
                "{t:?}"
            );
            assert!(
                !kinds(&l, Leg::Customer, t).contains(&SignalKind::AgentConduct),
                "{t:?}"
            );
            assert!(
                kinds(&l, Leg::Mixed, t).contains(&SignalKind::AgentConduct),
                "{t:?}"
            );
        }
    }

    #[test]
    fn customer_categories_are_not_heard_on_the_agent_leg() {
        let l = lex();
        let t = "I understand you want to complain, I can escalate this to my supervisor";
        assert!(kinds(&l, Leg::Agent, t).is_empty());
        assert!(kinds(&l, Leg::Customer, t).contains(&SignalKind::Complaint));
        // The auxiliary lists apply everywhere.
        assert!(
            l.scan(Leg::Agent, "Thank you so much")
                .iter()
                .any(|m| m.category == LexCategory::Positive)
        );
    }

    #[test]
    fn negation_cancels_a_close_term_but_not_a_far_one() {
        let l = lex();
        assert_not_kind(
            &l,
            SignalKind::Complaint,
            &[
                "I'm not complaining, I just want to know.",
                "I don't want to complain",
                "我不是要投诉，就是问一下",
                "我没有要投诉的意思",
                "我不投诉了",
            ],
        );
        assert_not_kind(
            &l,
            SignalKind::ThreatLegal,
            &["I won't sue you", "I'm not going to sue you over this"],
        );
        assert_not_kind(
            &l,
            SignalKind::Churn,
            &["I don't want to cancel my account"],
        );
        // The negated match is still reported, flagged.
        let m = l.scan(Leg::Customer, "I'm not complaining");
        assert!(
            m.iter().any(|m| m.negated && m.term == "complain*"),
            "{m:?}"
        );
        // Far away, or in another clause, the negator does not reach.
        assert_kind(
            &l,
            SignalKind::Complaint,
            &[
                "No, I want to complain.",
                "It is not working so I will complain",
                "我不是投诉你，我是投诉你们公司",
                "东西没到，我要投诉",
                "你们不解决我就投诉",
                "不然我就投诉",
            ],
        );
        assert_kind(
            &l,
            SignalKind::ThreatLegal,
            &[
                "If you don't fix this I'll sue you",
                "Don't make me sue you",
            ],
        );
    }

    #[test]
    fn adjacent_negators_reach_only_the_next_word() {
        let l = lex();
        assert_not_kind(
            &l,
            SignalKind::Complaint,
            &[
                "I have no complaints about the agent",
                "我没投诉",
                "别投诉了",
            ],
        );
        assert_kind(
            &l,
            SignalKind::Complaint,
            &["no this is ridiculous", "No no no, this is unacceptable!"],
        );
        // 不给退款 is a grievance, not a cancelled one.
        assert!(l.is_grievance(Leg::Customer, "不给退款"));
        assert!(!l.is_grievance(Leg::Customer, "不退货"));
    }

    #[test]
    fn negators_inside_a_term_belong_to_it() {
        let l = lex();
        assert_kind(&l, SignalKind::Churn, &["I will never buy from you again"]);
        assert_kind(&l, SignalKind::Complaint, &["I am not happy", "我很不满意"]);
        // ...but a negator before the whole term still cancels it.
        assert_not_kind(&l, SignalKind::Complaint, &["it's not that I'm not happy"]);
    }

    #[test]
    fn one_scan_gives_every_cue() {
        let l = lex();
        for text in [
            "thank you so much, that's brilliant",
            "This is the third time I'm calling and it still hasn't arrived",
            "I'm recording this call",
            "我又打过来了，还是没到",
            "谢谢，没问题",
            "I'm not complaining",
        ] {
            for leg in [Leg::Customer, Leg::Mixed] {
                let c = l.cues(leg, text);
                assert_eq!(c.positive, l.is_positive(text), "{text}");
                assert_eq!(c.recording, l.mentions_recording(text), "{text}");
                assert_eq!(c.grievance, l.is_grievance(leg, text), "{text}");
                assert_eq!(c.repeat, l.mentions_repeat(leg, text), "{text}");
            }
            let agent = l.cues(Leg::Agent, text);
            assert!(!agent.grievance && !agent.repeat, "{text}");
        }
        let c = l.cues(
            Leg::Customer,
            "This is the third time I'm calling and it still hasn't arrived",
        );
        assert!(c.grievance && c.repeat && !c.positive);
        assert!(
            l.cues(Leg::Customer, "thank you so much, that's brilliant")
                .positive
        );
    }

    #[test]
    fn chinese_terms_match_the_homophones_whisper_writes() {
        let mut l = lex();
        // 头诉 for 投诉, 暴光 for 曝光 (曝 also reads pu), 消费者写会 for 消费者协会.
        for (text, kind) in [
            ("我要头诉你们", SignalKind::Complaint),
            ("我要暴光你们", SignalKind::ThreatMedia),
            ("我去消费者写会反映", SignalKind::ThreatRegulator),
        ] {
            let m = l.scan(Leg::Customer, text);
            let hit = m
                .iter()
                .find(|m| m.category.signal_kind() == Some(kind))
                .unwrap_or_else(|| panic!("{text}: {m:?}"));
            assert!(hit.fuzzy && !hit.negated, "{text}: {hit:?}");
        }
        // A negator stays exact and still cancels a homophone match; negation characters
        // are never stood in for.
        assert!(!has(&l, "我不是要头诉", SignalKind::Complaint));
        assert!(!has(&l, "你听布懂吗", SignalKind::AgentConduct));
        assert!(has(&l, "你听不懂吗", SignalKind::AgentConduct));
        // Half a term at most: 偷宿 (both characters stood in for) is not 投诉.
        assert!(!has(&l, "偷宿", SignalKind::Complaint));
        // English: as it sounds, and split in two.
        assert_kind(
            &l,
            SignalKind::ThreatRegulator,
            &[
                "I'm going straight to off com",
                "I'm going to the Ombuds man",
                "call trading standard",
            ],
        );
        assert!(!has(
            &l,
            "the cake has three layers",
            SignalKind::ThreatLegal
        ));
        // 投述: sh read as s.
        assert_kind(&l, SignalKind::Complaint, &["我一定要投述你们"]);
        // Rare readings do not count (告 also reads ju, like 车), nor an/ang (报关 is not 曝光).
        assert!(!has(&l, "二手车，你们说", SignalKind::ThreatLegal));
        assert!(!has(&l, "包裹在海关报关", SignalKind::ThreatMedia));
        // Exact matching only when switched off.
        l.set_sound_alike(false);
        assert!(!has(&l, "我要头诉你们", SignalKind::Complaint));
        assert!(has(&l, "我要投诉你们", SignalKind::Complaint));
    }

    #[test]
    fn a_regulator_named_is_no_threat_without_a_construction() {
        let l = lex();
        assert_not_kind(
            &l,
            SignalKind::ThreatRegulator,
            &[
                "Hello, I'm calling from the ombudsman's office, we'd like to order some paper.",
                "I work for Trading Standards, so I know how busy you are.",
                "请问一下，盒子侧面印的12315是你们家的客服号码吗？",
                "我在市场监督管理局上班，想订一批办公用品。",
            ],
        );
        assert_kind(
            &l,
            SignalKind::ThreatRegulator,
            &[
                "I'll report you to the ombudsman.",
                "Trading Standards will be hearing about this.",
                "I'm taking this straight to Ofcom.",
                "我要打12315投诉你们。",
                "我去市场监管局举报你们。",
                "12315投诉你们去。",
            ],
        );
    }

    #[test]
    fn a_formal_complaint_is_marked_and_negation_reaches_inside_it() {
        let l = Arc::new(lex());
        let mut d = LexiconDetector::new(Arc::clone(&l));
        let formal = |d: &mut LexiconDetector, text: &str| {
            d.update(&test_line(Leg::Customer, 0, 2000, text, ""), 2000)
                .into_iter()
                .find(|s| s.kind == SignalKind::Complaint)
                .map(|s| s.formal)
        };
        assert_eq!(
            formal(&mut d, "I'd like to make a formal complaint about this."),
            Some(true)
        );
        assert_eq!(formal(&mut d, "我要投诉你们的前台！"), Some(true));
        assert_eq!(formal(&mut d, "This is ridiculous."), Some(false));
        // The weaker 投诉 inside a negated 要投诉 goes with it; "leaving" carries the negator
        // to "bad review".
        assert_eq!(formal(&mut d, "我没什么要投诉的，东西挺好用的。"), None);
        assert_not_kind(
            &l,
            SignalKind::ThreatSocial,
            &["That's all right, I won't be leaving you a bad review or anything."],
        );
        // 曝光 needs to be aimed at someone; 不用 alone is "no longer need to".
        assert_not_kind(
            &l,
            SignalKind::ThreatMedia,
            &["曝光补偿怎么调？长曝光要用三脚架吗？"],
        );
        assert_kind(
            &l,
            SignalKind::ThreatMedia,
            &["我要曝光你们！", "这件事我一定把它曝光出去。"],
        );
        assert_not_kind(
            &l,
            SignalKind::Churn,
            &["那太好了，以后再也不用跑营业厅排队了。"],
        );
        assert_kind(&l, SignalKind::Churn, &["以后再也不用你们家的东西了。"]);
    }

    #[test]
    fn threats_said_of_someone_else_are_not_the_callers() {
        let l = lex();
        assert_not_kind(
            &l,
            SignalKind::ThreatRegulator,
            &["The lady opposite reckons she'll report you to the ombudsman, but I'm happy."],
        );
        assert_not_kind(
            &l,
            SignalKind::ThreatSocial,
            &[
                "My husband wants to post it all over Facebook, I told him not to.",
                "我老公说要去网上发帖，我说不用。",
                "我同事让我给差评，我觉得没必要。",
            ],
        );
        assert_not_kind(
            &l,
            SignalKind::ThreatMedia,
            &["My neighbour threatened to go to the papers about the bins."],
        );
        // The caller's own threats, their lawyer's, and an "if he" condition stay threats.
        assert_kind(
            &l,
            SignalKind::ThreatRegulator,
            &["I'll report you to the ombudsman."],
        );
        assert_kind(
            &l,
            SignalKind::ThreatLegal,
            &[
                "My solicitor says we'll take you to court.",
                "他要是不退钱，我就去法院起诉。",
                "他要是不退钱我就去法院起诉。",
            ],
        );
        // A marker in another clause leaves the caller's threat alone.
        assert_kind(
            &l,
            SignalKind::ThreatMedia,
            &["My wife said it's fine. I'm going to the papers anyway."],
        );
        let m = l.scan(Leg::Customer, "我老公说要去网上发帖。");
        assert!(m.iter().any(|m| m.reported && !m.negated), "{m:?}");
    }

    #[test]
    fn traps_are_not_signals() {
        let l = lex();
        assert_not_kind(
            &l,
            SignalKind::ThreatMedia,
            &[
                "The media player doesn't work",
                "Can you press the button",
                "I'm impressed",
                "there is pressure in the pipe",
                "I reported the fault last week",
                "my television is broken",
                "I saw it in the news feed",
                "I saw the news about your new phone",
                "I need the papers for my claim",
                "相机的曝光怎么调？",
            ],
        );
        assert_not_kind(
            &l,
            SignalKind::ThreatSocial,
            &[
                "What's my social security number for?",
                "I saw your ad on Facebook",
                "I have a social media account with you",
                "我在抖音上买的",
                "我在微博上看到你们的广告",
            ],
        );
        assert_not_kind(
            &l,
            SignalKind::ThreatLegal,
            &[
                "There's an issue with my bill",
                "I want to pursue a refund",
                "Hi, my name is Sue",
                "There are two layers of packaging",
                "I'm in the food court",
                "The court date for my case is next week",
            ],
        );
        assert_not_kind(
            &l,
            SignalKind::EscalationRequest,
            &[
                "The manager told me it was fine",
                "Your manager said I would get a refund",
                "I need to check with my manager first",
                "你们经理说可以退",
                "主管说过会回电话",
            ],
        );
        assert_not_kind(&l, SignalKind::ThreatRegulator, &["我用工商银行的卡付的"]);
        assert_not_kind(
            &l,
            SignalKind::Churn,
            &["Can I cancel the order and reorder?"],
        );
        // "no problem" is positive, not a grievance.
        assert!(l.is_positive("No problem, thanks"));
        assert!(!l.is_grievance(Leg::Customer, "no problem at all"));
    }

    #[test]
    fn word_boundaries() {
        let l = lex();
        assert!(has(&l, "I'll sue.", SignalKind::ThreatLegal));
        for t in ["issue", "pursue", "tissue", "sued?"] {
            let hit = l
                .scan(Leg::Customer, t)
                .into_iter()
                .any(|m| m.term == "sue");
            assert!(!hit, "{t}");
        }
        assert!(has(&l, "I'll go to the press", SignalKind::ThreatMedia));
        assert!(!has(
            &l,
            "I was impressed by the pressure",
            SignalKind::ThreatMedia
        ));
        // 12315 is a number, not the digits of a longer one.
        assert!(has(&l, "我要打 12315", SignalKind::ThreatRegulator));
        assert!(!has(&l, "订单号 123156", SignalKind::ThreatRegulator));
    }

    #[test]
    fn small_misspellings_of_long_words() {
        let l = lex();
        assert_kind(&l, SignalKind::ThreatMedia, &["I'll call a jurnalist"]);
        assert_kind(
            &l,
            SignalKind::EscalationRequest,
            &["I want to speak to your superviser"],
        );
        let m = l.scan(Leg::Customer, "I'll call a jurnalist");
        assert!(m.iter().any(|m| m.fuzzy), "{m:?}");
        // Decided: "complane" is not a complaint. Stems are never fuzzy, and Whisper writes
        // dictionary words, so the risk of a false match outweighs this misspelling.
        assert!(!has(&l, "I want to complane", SignalKind::Complaint));
        // Short words and changed first letters never match approximately.
        assert!(!has(&l, "that's acceptable", SignalKind::Complaint));
        assert!(!has(&l, "I'll see you", SignalKind::ThreatLegal));
        // One substituted character in a long Chinese term (a homophone slip).
        assert_kind(&l, SignalKind::ThreatRegulator, &["我要去市场监督局"]);
        // ...but never a negation character, nor the first or last one.
        let mut custom = Lexicon::parse(
            "[agent_conduct]\nzh = [\"你听不懂吗\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(kinds(&custom, Leg::Agent, "你听得懂吗").is_empty());
        custom =
            Lexicon::parse("[complaint]\nzh = [\"什么破服务\"]\n", Path::new("t.toml")).unwrap();
        assert!(kinds(&custom, Leg::Customer, "什么破服装").is_empty());
        assert!(!kinds(&custom, Leg::Customer, "什么眼服务").is_empty());
        // Four characters or fewer: homophones only (怎么搞的 is not 怎么算的).
        custom = Lexicon::parse("[complaint]\nzh = [\"怎么搞的\"]\n", Path::new("t.toml")).unwrap();
        assert!(kinds(&custom, Leg::Customer, "电费怎么算的").is_empty());
        assert!(!kinds(&custom, Leg::Customer, "这是怎么稿的").is_empty());
    }

    #[test]
    fn mixed_language_text() {
        let l = lex();
        assert_kind(
            &l,
            SignalKind::Complaint,
            &["这个真的太ridiculous了", "I want to 投诉"],
        );
        assert_kind(&l, SignalKind::ThreatSocial, &["我要 post 到 twitter 上"]);
        assert_kind(
            &l,
            SignalKind::EscalationRequest,
            &["叫你们manager来，我要找你们经理"],
        );
    }

    #[test]
    fn offsets_are_chars_of_the_original_text() {
        let l = lex();
        let text = "您好！我要投訴你們";
        let m = l.scan(Leg::Customer, text);
        let hit = m
            .iter()
            .find(|m| m.term.starts_with("投诉你们"))
            .unwrap_or_else(|| panic!("{m:?}"));
        let quoted: String = text
            .chars()
            .skip(hit.start)
            .take(hit.end - hit.start)
            .collect();
        assert_eq!(quoted, "投訴你們");
        let text = "Well, I don’t care. I WANT TO SPEAK TO YOUR MANAGER";
        let m = l.scan(Leg::Customer, text);
        let hit = m
            .iter()
            .find(|m| m.category == LexCategory::Signal(SignalKind::EscalationRequest))
            .unwrap_or_else(|| panic!("{m:?}"));
        let quoted: String = text
            .chars()
            .skip(hit.start)
            .take(hit.end - hit.start)
            .collect();
        // "i want|need|demand .. manager" spans the whole request, after the curly apostrophe.
        assert_eq!(quoted, "I WANT TO SPEAK TO YOUR MANAGER");
    }

    #[test]
    fn apostrophe_variants_are_one_word() {
        let l = Lexicon::parse(
            "[agent_conduct]\nen = [\"don't know\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        for t in [
            "I don't know",
            "I don’t know",
            "I dont know",
            "I DON`T KNOW",
        ] {
            assert_eq!(
                kinds(&l, Leg::Agent, t),
                vec![SignalKind::AgentConduct],
                "{t}"
            );
        }
    }

    #[test]
    fn term_syntax_stems_alternatives_gaps() {
        let l = Lexicon::parse(
            "[complaint]\nen = [\"complain*\", \"speak to .. manager|boss\", \"1-star\"]\n\
             zh = [\"找..领导|经理\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let c = |t: &str| !kinds(&l, Leg::Customer, t).is_empty();
        assert!(c("complained") && c("complaints") && c("complaining"));
        assert!(c("speak to the boss") && c("speak to your store manager"));
        assert!(!c("speak to him about it later please, manager"));
        assert!(!c("speak to them. The manager"));
        assert!(c("a 1 star review") && c("1-star"));
        assert!(c("我要找你们公司的领导"));
        assert!(!c("我要找你们公司的那个谁领导"));
        assert!(!c("我找了，经理不在"));
    }

    #[test]
    fn helpers_for_the_risk_engine_and_repetition() {
        let l = lex();
        assert!(l.is_positive("Thank you so much, that's wonderful!"));
        assert!(l.is_positive("太好了，谢谢你！"));
        assert!(!l.is_positive("Thanks for nothing, this is ridiculous"));
        assert!(!l.is_positive("I'm not happy at all"));
        assert!(!l.is_positive("谢谢，但是我还是要投诉"));
        assert!(l.is_grievance(Leg::Customer, "My parcel still hasn't arrived"));
        assert!(l.is_grievance(Leg::Customer, "This is the third time I am calling"));
        assert!(l.is_grievance(Leg::Mixed, "我的快递还没到"));
        assert!(l.is_grievance(Leg::Customer, "我要退款"));
        assert!(l.is_grievance(Leg::Customer, "I want to complain"));
        assert!(!l.is_grievance(Leg::Customer, "I'm not complaining"));
        assert!(!l.is_grievance(Leg::Customer, "Hello, how are you?"));
        assert!(!l.is_grievance(Leg::Agent, "Your refund is late, I'm sorry"));
        assert!(l.mentions_recording("I'm recording this call, just so you know"));
        assert!(l.mentions_recording("我在录音"));
        assert!(l.mentions_recording("我已经录下来了"));
        assert!(!l.mentions_recording("This call may be recorded for quality purposes"));
        assert!(!l.mentions_recording("I'm not recording anything"));
        assert!(!l.mentions_recording("I'm recording the serial number now"));
        assert!(!l.mentions_recording("我刚才截图了订单号，发给你"));
    }

    #[test]
    fn detector_emits_one_signal_per_category_per_transcript() {
        let mut d = LexiconDetector::default();
        let t = transcript(
            Leg::Customer,
            10_000,
            "I want to complain, this is unacceptable. I'll sue you and call the newspapers. \
             I will complain again!",
        );
        let signals = d.update(&t, 12_500);
        let got: Vec<SignalKind> = signals.iter().map(|s| s.kind).collect();
        assert_eq!(
            got,
            vec![
                SignalKind::Complaint,
                SignalKind::ThreatMedia,
                SignalKind::ThreatLegal
            ]
        );
        let complaint = &signals[0];
        // The words as said, and the lexicon entries behind them.
        // "complain" inside the formal "want to complain" is not listed twice.
        assert_eq!(
            complaint.terms,
            vec!["want to complain", "unacceptable", "complain"]
        );
        assert_eq!(
            complaint.lexicon_terms,
            vec![
                "want|like|going|need to complain",
                "unacceptable",
                "complain*"
            ]
        );
        assert!(complaint.formal);
        assert_eq!(
            (
                complaint.leg,
                complaint.start_ms,
                complaint.end_ms,
                complaint.at_ms
            ),
            (Leg::Customer, 10_000, 12_000, 12_500)
        );
        assert_eq!(complaint.quotes.len(), 1);
        assert_eq!(complaint.quotes[0].text, t.text);
        assert_eq!(complaint.count, None);
        // Negated only: nothing.
        assert!(
            d.update(&transcript(Leg::Customer, 0, "I'm not complaining"), 2000)
                .is_empty()
        );
        // The agent's forbidden phrase, on the agent leg.
        let s = d.update(&transcript(Leg::Agent, 0, "这不可能，你自己看说明"), 2000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SignalKind::AgentConduct);
        assert_eq!(s[0].terms, vec!["这不可能", "你自己看说明"]);
    }

    #[test]
    fn a_reloaded_lexicon_is_used_from_the_next_transcript() {
        let mut d = LexiconDetector::default();
        let t = transcript(Leg::Customer, 0, "this is bananas");
        assert!(d.update(&t, 100).is_empty());
        let custom =
            Lexicon::parse("[complaint]\nen = [\"bananas\"]\n", Path::new("t.toml")).unwrap();
        d.set_lexicon(Arc::new(custom));
        assert_eq!(d.update(&t, 100)[0].terms, vec!["bananas"]);
    }

    #[test]
    fn exceptions_veto_overlapping_matches() {
        let l = Lexicon::parse(
            "[threat_media]\nen = [\"the media\"]\nen_except = [\"media player\"]\n\
             zh = [\"媒体\"]\nzh_except = [\"多媒体\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(kinds(&l, Leg::Customer, "the media player is broken").is_empty());
        assert!(kinds(&l, Leg::Customer, "多媒体功能坏了").is_empty());
        assert!(!kinds(&l, Leg::Customer, "I'll tell the media").is_empty());
    }

    #[test]
    fn invalid_lexicons_are_refused_with_the_file_and_the_problem() {
        let p = Path::new("my/lexicon.toml");
        let err = |text: &str| match Lexicon::parse(text, p) {
            Ok(_) => panic!("accepted {text:?}"),
            Err(e) => e.to_string(),
        };
        let e = err("[complaints]\nen = [\"x\"]\n");
        assert!(
            e.contains("my/lexicon.toml") && e.contains("unknown category [complaints]"),
            "{e}"
        );
        let e = err("[complaint]\nen = [\"ok\", \"  \"]\n");
        assert!(e.contains("[complaint] en item 2 is an empty term"), "{e}");
        let e = err("[complaint]\nfr = [\"x\"]\n");
        assert!(e.contains("unknown key `fr`"), "{e}");
        let e = err("[complaint]\nen_adjacent = [\"x\"]\n");
        assert!(e.contains("unknown key `en_adjacent`"), "{e}");
        let e = err("[complaint.more]\nen = [\"x\"]\n");
        assert!(e.contains("unknown key `more`"), "{e}");
        assert!(Lexicon::parse("[negation]\nen_adjacent = [\"no\"]\n", p).is_ok());
        let e = err("[complaint]\nen = \"x\"\n");
        assert!(e.contains("must be a list of strings"), "{e}");
        let e = err("complaint = 3\n");
        assert!(e.contains("must be a table"), "{e}");
        let e = err("[complaint]\nen = [\"投诉\"]\n");
        assert!(e.contains("zh list"), "{e}");
        let e = err("[complaint]\nen = [\".. manager\"]\n");
        assert!(e.contains("between two words"), "{e}");
        let e = err("[complaint]\nen = [\"c*\"]\n");
        assert!(e.contains("too short"), "{e}");
        let e = err("[complaint]\nen = [\"com*plain\"]\n");
        assert!(e.contains("may only end"), "{e}");
        let e = err("[complaint]\nzh = [\"找..\"]\n");
        assert!(e.contains("between two characters"), "{e}");
        let e = err("[complaint]\nen = [\"a\"\n");
        assert!(e.starts_with("lexicon my/lexicon.toml: line "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err("[raised_voice]\nen = [\"x\"]\n");
        assert!(e.contains("unknown category [raised_voice]"), "{e}");
        // Duplicates and missing categories are fine.
        assert!(Lexicon::parse("[complaint]\nen = [\"x\", \"x\"]\n", p).is_ok());
        assert!(Lexicon::parse("", p).is_ok());
    }

    #[test]
    fn load_names_a_missing_file() {
        let e = Lexicon::load(Path::new("/nonexistent/lexicon.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("cannot read lexicon /nonexistent/lexicon.toml"),
            "{e}"
        );
    }
}
