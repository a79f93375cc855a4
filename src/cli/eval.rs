//! `callguard eval <dir>`: runs every scenario call in a folder through the whole pipeline and
//! scores the transfer prompts against what was expected: precision, recall, false alerts and
//! time-to-alert, per call and overall. People tuning the lexicon and the thresholds live in
//! this command, so its report is meant to be read.
//!
//! A scenario is a recording `NAME.wav` with an expectation file `NAME.expect.toml` beside it:
//!
//! ```toml
//! alert = true              # should a transfer prompt fire?
//! after_ms = 16741          # not before this call time (the justifying turn's start)
//! said_by_ms = 20212        # time-to-alert is measured from here (the turn's end)
//! reasons = ["threat_media"]        # reasons the prompts must carry (at least these)
//! text_reasons = ["threat_media"]   # the same, with --text (default: reasons)
//! lang = "en"               # optional: en, zh or auto
//! transcript = "NAME.turns.tsv"     # optional: the known words, for --text
//! family = "threat_media"   # optional: the reason family it exercises ("calm" for none)
//! split = "test"            # optional: the corpus half (tune or test), for --split
//! class = 4                 # optional: the detection failure class it covers
//! legs = ["agent", "customer"]      # optional: channel order when not customer-left
//! ```
//!
//! `scripts/make-fixtures.sh` writes these for the scenarios in `tests/scenarios/` and the
//! corpus in `tests/corpus/`. The report ends with a table per language and reason family
//! (recall, false alerts, time-to-alert). This module
//! does not decide anything itself: it runs `analyze` and compares.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::EvalArgs;
use crate::cli::format::{clock, format_text};
use crate::domain::event::{Event, Transcript};
use crate::domain::leg::Leg;
use crate::domain::signal::SignalKind;
use crate::pipeline::asr::LanguageSetting;
use crate::pipeline::asr::worker::AsrPool;
use crate::pipeline::asr::worker::{Model, WorkerSettings};
use crate::pipeline::audio::wav::read_wav;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::detect::lexicon::Lexicon;
use crate::pipeline::detect::turns::TurnConfig;
use crate::pipeline::offline::{AnalyzeContext, AnalyzeError, Words, analyze_audio};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Expectation { path: PathBuf, message: String },
    #[error(
        "no scenarios (NAME.wav with NAME.expect.toml) in {0}; for tests/scenarios run `make fixtures` first"
    )]
    Empty(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    alert: bool,
    #[serde(default)]
    after_ms: Option<u64>,
    #[serde(default)]
    said_by_ms: Option<u64>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    text_reasons: Option<Vec<String>>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    transcript: Option<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    class: Option<u8>,
    #[serde(default)]
    legs: Option<[Leg; 2]>,
    #[serde(default = "yes")]
    whisper: bool,
}

fn yes() -> bool {
    true
}

/// What a scenario expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub alert: bool,
    pub after_ms: u64,
    pub said_by_ms: Option<u64>,
    pub reasons: Vec<SignalKind>,
    pub text_reasons: Vec<SignalKind>,
    pub lang: Option<LanguageSetting>,
    pub transcript: Option<PathBuf>,
    /// The reason family the call exercises (`calm` for none); from its first reason when
    /// the file does not say.
    pub family: String,
    /// `tune` or `test` for corpus calls.
    pub split: Option<String>,
    /// The detection failure class it covers, when it was written for one.
    pub class: Option<u8>,
    /// The legs on the left and right channel (default customer, agent).
    pub legs: Option<[Leg; 2]>,
    /// False for a call judged on its texts only (`--text`): its words cannot be heard
    /// through Whisper (espeak-ng's Mandarin).
    pub whisper: bool,
}

/// One scenario found on disk.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub wav: PathBuf,
    pub expect: Expectation,
}

fn parse_kinds(list: &[String], path: &Path) -> Result<Vec<SignalKind>, EvalError> {
    list.iter()
        .map(|k| {
            SignalKind::parse(k).ok_or_else(|| EvalError::Expectation {
                path: path.to_owned(),
                message: format!("unknown reason {k:?}"),
            })
        })
        .collect()
}

/// Reads one expectation file.
pub fn read_expectation(path: &Path) -> Result<Expectation, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let f: ExpectFile = toml::from_str(&text).map_err(|e| EvalError::Expectation {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })?;
    let reasons = parse_kinds(&f.reasons, path)?;
    let text_reasons = match &f.text_reasons {
        Some(t) => parse_kinds(t, path)?,
        None => reasons.clone(),
    };
    let lang = f
        .lang
        .as_deref()
        .map(|l| {
            l.parse::<LanguageSetting>()
                .map_err(|message| EvalError::Expectation {
                    path: path.to_owned(),
                    message,
                })
        })
        .transpose()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(legs) = f.legs
        && (legs[0] == legs[1] || legs.contains(&Leg::Mixed))
    {
        return Err(EvalError::Expectation {
            path: path.to_owned(),
            message: "legs must be customer and agent, in either order".into(),
        });
    }
    if let Some(split) = f.split.as_deref()
        && !matches!(split, "tune" | "test")
    {
        return Err(EvalError::Expectation {
            path: path.to_owned(),
            message: format!("split must be tune or test, not {split:?}"),
        });
    }
    let family = match f.family {
        Some(family) if family == "calm" => family,
        Some(family) => {
            parse_kinds(std::slice::from_ref(&family), path)?;
            family
        }
        None if !f.alert => "calm".into(),
        None => text_reasons
            .first()
            .or(reasons.first())
            .map_or("other", |k| k.as_str())
            .to_owned(),
    };
    Ok(Expectation {
        alert: f.alert,
        family,
        split: f.split,
        class: f.class,
        legs: f.legs,
        whisper: f.whisper,
        after_ms: f.after_ms.unwrap_or(0),
        said_by_ms: f.said_by_ms,
        reasons,
        text_reasons,
        lang,
        transcript: f.transcript.map(|t| dir.join(t)),
    })
}

/// Finds the scenarios in `dir` and its direct subfolders, sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<Case>, EvalError> {
    let mut folders = vec![dir.to_owned()];
    let read = |d: &Path| {
        std::fs::read_dir(d).map_err(|source| EvalError::Read {
            path: d.to_owned(),
            source,
        })
    };
    for entry in read(dir)?.flatten() {
        if entry.path().is_dir() {
            folders.push(entry.path());
        }
    }
    let mut cases = Vec::new();
    for folder in folders {
        for entry in read(&folder)?.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".expect.toml"))
            else {
                continue;
            };
            let wav = folder.join(format!("{name}.wav"));
            if !wav.exists() {
                return Err(EvalError::Expectation {
                    path,
                    message: format!("no recording {} beside it", wav.display()),
                });
            }
            cases.push(Case {
                name: name.to_owned(),
                wav,
                expect: read_expectation(&path)?,
            });
        }
    }
    if cases.is_empty() {
        return Err(EvalError::Empty(dir.to_owned()));
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Reads a `turns.tsv` (leg, start ms, end ms, text) as transcripts.
pub fn read_turns(path: &Path, call_id: &str, lang: &str) -> Result<Vec<Transcript>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |line: usize, what: &str| EvalError::Expectation {
        path: path.to_owned(),
        message: format!("line {line}: {what}"),
    };
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let [leg, start, end, words] = f[..] else {
            return Err(bad(i + 1, "expected leg, start ms, end ms, text"));
        };
        let leg = match leg {
            "customer" => Leg::Customer,
            "agent" => Leg::Agent,
            "mixed" => Leg::Mixed,
            _ => return Err(bad(i + 1, "leg must be customer, agent or mixed")),
        };
        let start: u64 = start.parse().map_err(|_| bad(i + 1, "bad start"))?;
        let end: u64 = end.parse().map_err(|_| bad(i + 1, "bad end"))?;
        out.push(Transcript {
            call_id: call_id.to_owned(),
            leg,
            start_ms: start,
            end_ms: end,
            at_ms: end,
            text: words.to_owned(),
            lang: lang.to_owned(),
            is_final: true,
        });
    }
    Ok(out)
}

/// How one scenario went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Expected an alert and got one, after the justifying turn, with the reasons.
    Caught,
    /// Calm, and no alert.
    Quiet,
    /// Expected an alert and got none after the justifying turn.
    Missed,
    /// Alerted, but without some expected reasons.
    WrongReasons,
    /// An alert on a calm call, or before the justifying turn.
    FalseAlert,
    /// The call could not be analysed.
    Failed,
}

impl Verdict {
    pub fn ok(self) -> bool {
        matches!(self, Verdict::Caught | Verdict::Quiet)
    }
    fn label(self) -> &'static str {
        match self {
            Verdict::Caught => "caught",
            Verdict::Quiet => "quiet",
            Verdict::Missed => "MISSED",
            Verdict::WrongReasons => "REASONS",
            Verdict::FalseAlert => "FALSE ALERT",
            Verdict::Failed => "FAILED",
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub expected_alert: bool,
    pub verdict: Verdict,
    /// Alerts as (call time, reasons).
    pub alerts: Vec<(u64, Vec<SignalKind>)>,
    /// Alerts that should not have fired (calm call, or before the justifying turn).
    pub false_alerts: usize,
    /// From the end of the justifying turn to the first alert after it, in ms.
    pub time_to_alert_ms: Option<i64>,
    pub missing: Vec<SignalKind>,
    pub error: Option<String>,
    /// Through Whisper, against the scenario's known words: (word errors, reference words),
    /// counting each Chinese character as a word.
    pub words: Option<(usize, usize)>,
    /// The words the alerts quoted as their reasons (distinct, in order).
    pub terms: Vec<String>,
    /// The scenario's reason family (`calm` for none) and language (`en` or `zh`), for the
    /// per-family table.
    pub family: String,
    pub lang: &'static str,
    /// The turn-taking and pace signals against the call's turns, when they are known.
    pub timing: Option<TimingCounts>,
    /// The call's events as `analyze` prints them, with `--explain`.
    pub explained: Option<String>,
}

/// How many of the expected signals of one kind were found, and how many were extra.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hits {
    pub expected: usize,
    pub found: usize,
    pub matched: usize,
    /// How far (ms) the matched ones started from where the turns put them, summed, and the
    /// largest: how well the segmenter places speech on phone audio.
    pub offset_sum_ms: u64,
    pub offset_max_ms: u64,
}

impl Hits {
    fn add(&mut self, o: Hits) {
        self.expected += o.expected;
        self.found += o.found;
        self.matched += o.matched;
        self.offset_sum_ms += o.offset_sum_ms;
        self.offset_max_ms = self.offset_max_ms.max(o.offset_max_ms);
    }
}

/// The timing signals of a call: interruptions and dead air against what its turns (as placed
/// in the recording) show by the detector's own rules, and the speaking-rate signals per leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimingCounts {
    pub interruptions: Hits,
    pub dead_air: Hits,
    pub rate_customer: usize,
    pub rate_agent: usize,
}

/// How far (ms) a found interruption or dead air may start from the expected one: the turns'
/// times are those of whole speech files, with the voice's own lead-in and tail.
const TIMING_TOLERANCE_MS: u64 = 1500;

/// What the turns of a call show: interruptions as (leg that cut in, start) and the starts of
/// dead air, by the rules of `detect::turns` applied to the exact turn times.
pub fn timing_truth(turns: &[Transcript], cfg: &TurnConfig) -> (Vec<(Leg, u64)>, Vec<u64>) {
    let mut cuts = Vec::new();
    for b in turns {
        let to = b.start_ms + cfg.interruption_overlap_ms;
        let over = turns.iter().any(|a| {
            a.leg != b.leg
                && a.start_ms + cfg.interruption_lead_ms <= b.start_ms
                && a.end_ms >= to
                && b.end_ms >= to
        });
        if over {
            cuts.push((b.leg, b.start_ms));
        }
    }
    let mut spans: Vec<(u64, u64)> = turns.iter().map(|t| (t.start_ms, t.end_ms)).collect();
    spans.sort_unstable();
    let mut silences = Vec::new();
    let mut last_end: Option<u64> = None;
    for (start, end) in spans {
        if let Some(e) = last_end
            && cfg.dead_air_ms > 0
            && start >= e + cfg.dead_air_ms
        {
            silences.push(e);
        }
        last_end = Some(last_end.map_or(end, |e| e.max(end)));
    }
    (cuts, silences)
}

/// Pairs found starts with expected ones, each at most once, within the tolerance.
fn match_starts<T: PartialEq + Copy>(expected: &[(T, u64)], found: &[(T, u64)]) -> Hits {
    let mut used = vec![false; found.len()];
    let mut hits = Hits {
        expected: expected.len(),
        found: found.len(),
        ..Hits::default()
    };
    for &(key, at) in expected {
        if let Some(i) = (0..found.len()).find(|&i| {
            !used[i] && found[i].0 == key && found[i].1.abs_diff(at) <= TIMING_TOLERANCE_MS
        }) {
            used[i] = true;
            hits.matched += 1;
            let off = found[i].1.abs_diff(at);
            hits.offset_sum_ms += off;
            hits.offset_max_ms = hits.offset_max_ms.max(off);
        }
    }
    hits
}

/// Scores a call's timing signals against its turns.
pub fn judge_timing(turns: &[Transcript], cfg: &TurnConfig, events: &[Event]) -> TimingCounts {
    let (cuts, silences) = timing_truth(turns, cfg);
    let signals: Vec<&crate::domain::signal::Signal> = events
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) => Some(&s.signal),
            _ => None,
        })
        .collect();
    let of = |kind: SignalKind| -> Vec<(Leg, u64)> {
        signals
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| (s.leg, s.start_ms))
            .collect()
    };
    let silences: Vec<((), u64)> = silences.into_iter().map(|at| ((), at)).collect();
    let found_air: Vec<((), u64)> = of(SignalKind::DeadAir)
        .into_iter()
        .map(|(_, at)| ((), at))
        .collect();
    let rate = of(SignalKind::SpeakingRate);
    TimingCounts {
        interruptions: match_starts(&cuts, &of(SignalKind::Interruption)),
        dead_air: match_starts(&silences, &found_air),
        rate_customer: rate.iter().filter(|(l, _)| *l == Leg::Customer).count(),
        rate_agent: rate.iter().filter(|(l, _)| *l == Leg::Agent).count(),
    }
}

/// Compares a call's events with its expectation.
pub fn judge(name: &str, expect: &Expectation, text_mode: bool, events: &[Event]) -> CaseResult {
    let alerts: Vec<(u64, Vec<SignalKind>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some((a.at_ms, a.reasons.iter().map(|r| r.kind).collect())),
            _ => None,
        })
        .collect();
    let wanted = if text_mode {
        &expect.text_reasons
    } else {
        &expect.reasons
    };
    let (false_alerts, verdict, time_to_alert_ms, missing) = if expect.alert {
        let early = alerts
            .iter()
            .filter(|(at, _)| *at < expect.after_ms)
            .count();
        let after: Vec<_> = alerts
            .iter()
            .filter(|(at, _)| *at >= expect.after_ms)
            .collect();
        let seen: Vec<SignalKind> = after.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        let missing: Vec<SignalKind> = wanted
            .iter()
            .copied()
            .filter(|k| !seen.contains(k))
            .collect();
        let tta = after
            .first()
            .map(|(at, _)| *at as i64 - expect.said_by_ms.unwrap_or(expect.after_ms) as i64);
        let verdict = if early > 0 {
            Verdict::FalseAlert
        } else if after.is_empty() {
            Verdict::Missed
        } else if !missing.is_empty() {
            Verdict::WrongReasons
        } else {
            Verdict::Caught
        };
        (early, verdict, tta, missing)
    } else if alerts.is_empty() {
        (0, Verdict::Quiet, None, Vec::new())
    } else {
        (alerts.len(), Verdict::FalseAlert, None, Vec::new())
    };
    CaseResult {
        name: name.to_owned(),
        expected_alert: expect.alert,
        verdict,
        alerts,
        false_alerts,
        time_to_alert_ms,
        missing,
        error: None,
        words: None,
        terms: {
            let mut terms: Vec<String> = Vec::new();
            for e in events {
                if let Event::Alert(a) = e {
                    for t in a.reasons.iter().flat_map(|r| r.terms.iter()) {
                        if !terms.contains(t) {
                            terms.push(t.clone());
                        }
                    }
                }
            }
            terms
        },
        family: expect.family.clone(),
        lang: lang_of(name, expect),
        timing: None,
        explained: None,
    }
}

/// `zh` for a Mandarin scenario (by its language, else its name), `en` otherwise.
fn lang_of(name: &str, expect: &Expectation) -> &'static str {
    let zh = match expect.lang {
        Some(l) => l.code() == Some("zh"),
        None => name.starts_with("zh-") || name.starts_with("mandarin"),
    };
    if zh { "zh" } else { "en" }
}

/// Words for scoring a transcript: lower-case runs of letters, digits and apostrophes, and
/// each CJK character alone (Chinese has no spaces, so characters are its words here).
pub fn score_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        let cjk = matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF);
        if cjk || !(c.is_alphanumeric() || c == '\'') {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if cjk {
                out.push(c.to_string());
            }
        } else {
            word.extend(c.to_lowercase());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Word errors (substitutions, insertions, deletions: the edit distance) of `hypothesis`
/// against `reference`, and the reference's length.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> (usize, usize) {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[hypothesis.len()], reference.len())
}

/// A call's word errors, leg by leg, of its final transcript lines against the known turns.
fn leg_word_errors(reference: &[Transcript], events: &[Event]) -> (usize, usize) {
    let mut total = (0, 0);
    for leg in [Leg::Customer, Leg::Agent, Leg::Mixed] {
        let join = |lines: &mut dyn Iterator<Item = &Transcript>| {
            lines
                .filter(|t| t.leg == leg && t.is_final)
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let want = score_tokens(&join(&mut reference.iter()));
        let got = score_tokens(&join(&mut events.iter().filter_map(|e| match e {
            Event::Transcript(t) => Some(t),
            _ => None,
        })));
        let (e, n) = word_errors(&want, &got);
        total = (total.0 + e, total.1 + n);
    }
    total
}

/// Options for a run.
pub struct EvalOptions<'a> {
    pub cfg: &'a PipelineConfig,
    pub lexicon: Arc<Lexicon>,
    /// Use each scenario's known words instead of Whisper.
    pub text_mode: bool,
    /// Overrides the scenarios' languages.
    pub lang: Option<LanguageSetting>,
    /// Line noise added to the recording before analysis: (seed, RMS level as a fraction of
    /// full scale). None: the recording as it is.
    pub noise: Option<(u64, f32)>,
    /// Keep the call's events in readable form ([`CaseResult::explained`]).
    pub explain: bool,
    /// `noise`'s level is a factor over each channel's own floor ([`noise_floor`]), not an
    /// absolute RMS.
    pub noise_over_floor: bool,
}

/// Adds seeded white noise of RMS `level` (fraction of full scale) to every channel: another
/// sample of the line noise a call might have had. The same seed gives the same noise.
/// A channel's noise floor: the RMS of the 10 ms frame at the quietest 5 % (the line's hiss
/// between words; a call is silent far more often than that), at least -90 dBFS so that
/// digital silence still gets some noise.
pub fn noise_floor(samples: &[f32], sample_rate: u32) -> f32 {
    const LOWEST: f32 = 3.162_277_7e-5; // -90 dBFS

    let frame = (sample_rate as usize / 100).max(1);
    let mut rms: Vec<f32> = samples
        .chunks_exact(frame)
        .map(|f| (f.iter().map(|x| x * x).sum::<f32>() / frame as f32).sqrt())
        .collect();
    if rms.is_empty() {
        return LOWEST;
    }
    let quiet = rms.len() / 20;
    let (_, floor, _) = rms.select_nth_unstable_by(quiet, f32::total_cmp);
    floor.max(LOWEST)
}

pub fn add_noise(channels: &mut [Vec<f32>], seed: u64, level: f32) {
    // A uniform variable on [-1, 1] has an RMS of 1/sqrt(3).
    let amp = level * 3f32.sqrt();
    for (c, samples) in channels.iter_mut().enumerate() {
        let mut x = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
            | 1;
        for s in samples.iter_mut() {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            let u = r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            *s = (*s + amp * u).clamp(-1.0, 1.0);
        }
    }
}

/// A call's events as `analyze` prints them, each transcript line followed by every lexicon
/// term found in it (the auxiliary lists too: grievance, repeat, positive), so that a rule
/// that did not fire shows which of its parts were missing.
fn explain(events: &[Event], lexicon: &Lexicon) -> String {
    let mut lines = Vec::new();
    for e in events {
        let Some(text) = format_text(e) else {
            continue;
        };
        lines.push(text);
        if let Event::Transcript(t) = e {
            let found: Vec<String> = lexicon
                .scan(t.leg, &t.text)
                .iter()
                .map(|m| {
                    let words: String =
                        t.text.chars().skip(m.start).take(m.end - m.start).collect();
                    format!(
                        "{}{} \"{words}\"",
                        if m.negated {
                            "negated "
                        } else if m.reported {
                            "reported "
                        } else {
                            ""
                        },
                        m.category
                    )
                })
                .collect();
            if !found.is_empty() {
                lines.push(format!("{:20}   lexicon: {}", "", found.join(", ")));
            }
        }
    }
    lines.join("\n")
}

/// Runs one case.
pub fn run_case(case: &Case, opts: &EvalOptions<'_>, pool: Option<&AsrPool>) -> CaseResult {
    match analyse_case(case, opts, pool) {
        Ok(events) => {
            let mut r = judge(&case.name, &case.expect, opts.text_mode, &events);
            if opts.explain {
                r.explained = Some(explain(&events, &opts.lexicon));
            }
            if let Some(path) = &case.expect.transcript
                && let Ok(turns) = read_turns(path, &case.name, "")
            {
                if !opts.text_mode {
                    r.words = Some(leg_word_errors(&turns, &events));
                }
                r.timing = Some(judge_timing(&turns, &opts.cfg.detect.turns, &events));
            }
            r
        }
        Err(e) => CaseResult {
            name: case.name.clone(),
            expected_alert: case.expect.alert,
            verdict: Verdict::Failed,
            alerts: Vec::new(),
            false_alerts: 0,
            time_to_alert_ms: None,
            missing: Vec::new(),
            error: Some(e),
            words: None,
            terms: Vec::new(),
            family: case.expect.family.clone(),
            lang: lang_of(&case.name, &case.expect),
            timing: None,
            explained: None,
        },
    }
}

fn analyse_case(
    case: &Case,
    opts: &EvalOptions<'_>,
    pool: Option<&AsrPool>,
) -> Result<Vec<Event>, String> {
    let lang = opts.lang.or(case.expect.lang);
    let words = if opts.text_mode {
        let path = case
            .expect
            .transcript
            .as_ref()
            .ok_or("--text needs `transcript` in the expectation file")?;
        let code = lang.and_then(LanguageSetting::code).unwrap_or("en");
        Words::Given(read_turns(path, &case.name, code).map_err(|e| e.to_string())?)
    } else {
        Words::Whisper(pool.ok_or("no transcription workers")?)
    };
    let mut audio = read_wav(&case.wav).map_err(|e| e.to_string())?;
    if let Some((seed, level)) = opts.noise {
        if opts.noise_over_floor {
            let rate = audio.sample_rate;
            for (c, samples) in audio.channels.iter_mut().enumerate() {
                let level = level * noise_floor(samples, rate);
                add_noise(
                    std::slice::from_mut(samples),
                    seed.wrapping_add(c as u64),
                    level,
                );
            }
        } else {
            add_noise(&mut audio.channels, seed, level);
        }
    }
    let swapped;
    let cfg = match case.expect.legs {
        Some(legs) if legs != opts.cfg.audio.stereo_legs => {
            let mut c = opts.cfg.clone();
            c.audio.stereo_legs = legs;
            swapped = c;
            &swapped
        }
        _ => opts.cfg,
    };
    let ctx = AnalyzeContext {
        call_id: &case.name,
        cfg,
        lang,
        lexicon: Arc::clone(&opts.lexicon),
        words,
    };
    analyze_audio(audio, ctx, Instant::now())
        .map(|a| a.events)
        .map_err(|e: AnalyzeError| e.to_string())
}

/// Overall figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub calls: usize,
    pub alert_calls: usize,
    pub caught: usize,
    pub calm_calls: usize,
    pub false_alerts: usize,
    /// Calls with at least one false alert.
    pub false_alert_calls: usize,
    /// Calm calls with at least one alert.
    pub calm_false_alert_calls: usize,
    pub precision: f64,
    pub recall: f64,
    pub mean_time_to_alert_ms: Option<f64>,
    pub median_time_to_alert_ms: Option<i64>,
    pub max_time_to_alert_ms: Option<i64>,
    /// Calls that could not be analysed.
    pub failed: usize,
    /// Calls whose verdict is as expected.
    pub passed: usize,
    /// Word errors and reference words over the calls scored (Whisper runs only), English
    /// and Chinese (characters) apart.
    pub words_en: (usize, usize),
    pub words_zh: (usize, usize),
    /// The timing signals over the calls whose turns are known.
    pub timing: TimingCounts,
}

impl Totals {
    pub fn of(results: &[CaseResult]) -> Self {
        let alert_calls = results.iter().filter(|r| r.expected_alert).count();
        let caught = results
            .iter()
            .filter(|r| r.verdict == Verdict::Caught)
            .count();
        let false_alert_calls = results.iter().filter(|r| r.false_alerts > 0).count();
        let false_alerts = results.iter().map(|r| r.false_alerts).sum();
        let ttas: Vec<i64> = results
            .iter()
            .filter(|r| r.verdict == Verdict::Caught)
            .filter_map(|r| r.time_to_alert_ms)
            .collect();
        let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Self {
            calls: results.len(),
            alert_calls,
            caught,
            calm_calls: results.len() - alert_calls,
            false_alerts,
            false_alert_calls,
            calm_false_alert_calls: results
                .iter()
                .filter(|r| !r.expected_alert && r.false_alerts > 0)
                .count(),
            precision: ratio(caught, caught + false_alert_calls),
            recall: ratio(caught, alert_calls),
            mean_time_to_alert_ms: (!ttas.is_empty())
                .then(|| ttas.iter().sum::<i64>() as f64 / ttas.len() as f64),
            median_time_to_alert_ms: quantile(&ttas, 0.5),
            max_time_to_alert_ms: ttas.iter().copied().max(),
            failed: results
                .iter()
                .filter(|r| r.verdict == Verdict::Failed)
                .count(),
            passed: results.iter().filter(|r| r.verdict.ok()).count(),
            words_en: word_sum(results, false),
            words_zh: word_sum(results, true),
            timing: results.iter().filter_map(|r| r.timing).fold(
                TimingCounts::default(),
                |mut a, t| {
                    a.interruptions.add(t.interruptions);
                    a.dead_air.add(t.dead_air);
                    a.rate_customer += t.rate_customer;
                    a.rate_agent += t.rate_agent;
                    a
                },
            ),
        }
    }

    /// Calm calls with a false alert, per 50 calm calls (the goal's unit).
    pub fn false_per_50(&self) -> f64 {
        if self.calm_calls == 0 {
            0.0
        } else {
            self.calm_false_alert_calls as f64 * 50.0 / self.calm_calls as f64
        }
    }

    /// Every escalation caught after its justifying turn, no false alert, nothing failed.
    pub fn all_ok(&self) -> bool {
        self.passed == self.calls
    }
}

/// The value at fraction `q` (0..=1) of the sorted values, nearest rank; none when empty.
fn quantile(values: &[i64], q: f64) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let last = v.len().checked_sub(1)?;
    let i = ((last as f64) * q).round() as usize;
    v.get(i.min(last)).copied()
}

/// The per-language, per-family table: calls, recall, false alerts, time to alert (median and
/// 90th percentile, from the end of the justifying turn).
pub fn format_families(results: &[CaseResult]) -> String {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(&str, &str), Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        groups
            .entry((r.lang, r.family.as_str()))
            .or_default()
            .push(r);
    }
    let mut out = format!(
        "{:<4} {:<20} {:>5} {:>8} {:>7} {:>12} {:>9} {:>9}\n",
        "lang", "family", "calls", "caught", "recall", "false alerts", "median", "p90"
    );
    for ((lang, family), rs) in groups {
        let alerting: Vec<_> = rs.iter().filter(|r| r.expected_alert).collect();
        let caught = alerting
            .iter()
            .filter(|r| r.verdict == Verdict::Caught)
            .count();
        let falses = rs.iter().filter(|r| r.false_alerts > 0).count();
        let ttas: Vec<i64> = alerting
            .iter()
            .filter(|r| r.verdict == Verdict::Caught)
            .filter_map(|r| r.time_to_alert_ms)
            .collect();
        let (recall, caught) = if alerting.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.0}%", caught as f64 * 100.0 / alerting.len() as f64),
                format!("{caught}/{}", alerting.len()),
            )
        };
        let t = |q| quantile(&ttas, q).map_or("-".into(), seconds);
        out.push_str(&format!(
            "{:<4} {:<20} {:>5} {:>8} {:>7} {:>12} {:>9} {:>9}\n",
            lang,
            family,
            rs.len(),
            caught,
            recall,
            falses,
            t(0.5),
            t(0.9)
        ));
    }
    out
}

/// Word errors over the English (or the Chinese) scenarios.
fn word_sum(results: &[CaseResult], zh: bool) -> (usize, usize) {
    results
        .iter()
        .filter(|r| (r.lang == "zh") == zh)
        .filter_map(|r| r.words)
        .fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1))
}

fn seconds(ms: i64) -> String {
    format!("{:+.1} s", ms as f64 / 1000.0)
}

/// The per-call line of the report.
pub fn format_result(r: &CaseResult) -> String {
    let first = r
        .alerts
        .first()
        .map(|(at, _)| clock(*at))
        .unwrap_or_else(|| "-".into());
    let tta = r
        .time_to_alert_ms
        .map(seconds)
        .unwrap_or_else(|| "-".into());
    let mut reasons: Vec<&str> = r
        .alerts
        .iter()
        .flat_map(|(_, k)| k.iter().map(|k| k.as_str()))
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let mut note = reasons.join(", ");
    if !r.terms.is_empty() {
        note = format!("{note} [{}]", r.terms.join(" | "));
    }
    if !r.missing.is_empty() {
        let m: Vec<&str> = r.missing.iter().map(|k| k.as_str()).collect();
        note = format!("{note}  (missing: {})", m.join(", "));
    }
    if let Some(t) = &r.timing {
        if t.rate_customer + t.rate_agent > 0 {
            note = format!(
                "{note}  (speaking_rate: customer {}, agent {})",
                t.rate_customer, t.rate_agent
            );
        }
        for (what, h) in [("interruptions", t.interruptions), ("dead air", t.dead_air)] {
            if h.matched < h.expected || h.found > h.matched {
                note = format!(
                    "{note}  ({what}: {} of {} found, {} extra)",
                    h.matched,
                    h.expected,
                    h.found - h.matched
                );
            }
        }
    }
    if let Some(e) = &r.error {
        note = e.clone();
    }
    let wer = r
        .words
        .map_or("-".into(), |(e, n)| format!("{:.0}%", percent(e, n)));
    format!(
        "{:<24} {:<6} {:<12} {:>7} {:>9} {:>10} {:>5}  {}",
        r.name,
        if r.expected_alert { "alert" } else { "calm" },
        r.verdict.label(),
        r.alerts.len(),
        first,
        tta,
        wer,
        note
    )
}

pub fn header() -> String {
    format!(
        "{:<24} {:<6} {:<12} {:>7} {:>9} {:>10} {:>5}  {}",
        "scenario", "expect", "result", "alerts", "first", "to alert", "WER", "reasons"
    )
}

fn percent(errors: usize, words: usize) -> f64 {
    if words == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / words as f64
    }
}

/// The closing lines of the report.
pub fn format_totals(t: &Totals) -> String {
    let tta = match (t.mean_time_to_alert_ms, t.max_time_to_alert_ms) {
        (Some(mean), Some(max)) => format!(
            "time to alert after the justifying turn: median {:.1} s, mean {:.1} s, max {:.1} s",
            t.median_time_to_alert_ms.unwrap_or(0) as f64 / 1000.0,
            mean / 1000.0,
            max as f64 / 1000.0
        ),
        _ => "time to alert: no alert caught".into(),
    };
    let mut wer = Vec::new();
    for (what, (e, n)) in [
        ("English", t.words_en),
        ("Chinese (characters)", t.words_zh),
    ] {
        if n > 0 {
            wer.push(format!(
                "{what} {:.1}% ({e} errors in {n} words)",
                percent(e, n)
            ));
        }
    }
    let tta = if wer.is_empty() {
        tta
    } else {
        format!("{tta}\nword error rate: {}", wer.join(", "))
    };
    let tm = &t.timing;
    let hits = |h: &Hits| {
        let placed = if h.matched == 0 {
            String::new()
        } else {
            format!(
                " (starts off by {} ms on average, {} ms at most)",
                h.offset_sum_ms / h.matched as u64,
                h.offset_max_ms
            )
        };
        format!(
            "{} of {} found ({:.0}%), {} extra{placed}",
            h.matched,
            h.expected,
            if h.expected == 0 {
                100.0
            } else {
                h.matched as f64 * 100.0 / h.expected as f64
            },
            h.found - h.matched
        )
    };
    let tta = format!(
        "{tta}\ninterruptions: {}; dead air: {}; speaking_rate signals: customer {}, agent {}",
        hits(&tm.interruptions),
        hits(&tm.dead_air),
        tm.rate_customer,
        tm.rate_agent
    );
    format!(
        "recall {:.0}% ({}/{} escalating calls caught), precision {:.0}%, \
         false alerts {} (on {} call(s); {:.1} per 50 calm calls), {} calm call(s){}\n{tta}\n\
         {} passed, {} failed",
        t.recall * 100.0,
        t.caught,
        t.alert_calls,
        t.precision * 100.0,
        t.false_alerts,
        t.false_alert_calls,
        t.false_per_50(),
        t.calm_calls,
        if t.failed > 0 {
            format!(", {} could not be analysed", t.failed)
        } else {
            String::new()
        },
        t.passed,
        t.calls - t.passed,
    )
}

/// `callguard eval`: runs the scenarios and prints the report; fails unless every call went
/// as expected.
pub(super) fn run(args: EvalArgs) -> anyhow::Result<()> {
    let cfg = args.pipeline.config()?;
    let mut cases = discover(&args.dir)?;
    if let Some(only) = &args.only {
        cases.retain(|c| c.name.contains(only.as_str()));
    }
    if let Some(split) = &args.split {
        cases.retain(|c| c.expect.split.as_deref() == Some(split.as_str()));
    }
    if let Some(family) = &args.family {
        cases.retain(|c| &c.expect.family == family);
    }
    let text_only = if args.text {
        0
    } else {
        let before = cases.len();
        cases.retain(|c| c.expect.whisper);
        before - cases.len()
    };
    if cases.is_empty() {
        anyhow::bail!("no scenario in {} matches the filters", args.dir.display());
    }
    let lexicon = cfg.detect.load_lexicon()?;
    let pool = if args.text {
        None
    } else {
        let model = Model::load(&cfg.asr.model)?;
        Some(AsrPool::start(
            model,
            WorkerSettings::from_config(&cfg.asr),
        )?)
    };
    let pipeline = cfg.pipeline();
    let mut opts = EvalOptions {
        cfg: &pipeline,
        lexicon,
        text_mode: args.text,
        lang: args.pipeline.lang,
        noise: None,
        explain: args.explain,
        noise_over_floor: args.noise_over_floor,
    };
    println!(
        "callguard eval {}: {} scenario(s), words from {}{}",
        args.dir.display(),
        cases.len(),
        if args.text {
            "the scenario texts (--text)"
        } else {
            "Whisper"
        },
        if text_only > 0 {
            format!(" ({text_only} judged on their texts only left out: run --text for them)")
        } else {
            String::new()
        }
    );
    println!("{}", header());
    let mut results = Vec::new();
    for case in &cases {
        let r = run_case(case, &opts, pool.as_ref());
        println!("{}", format_result(&r));
        if let Some(text) = &r.explained {
            println!("{text}\n");
        }
        results.push(r);
    }
    let totals = Totals::of(&results);
    println!("\n{}", format_families(&results));
    println!("{}", format_totals(&totals));
    let mut flip_share = None;
    if args.noise_seeds > 0 {
        let level = 10f32.powf(args.noise_db / 20.0);
        let mut flipped = Vec::new();
        let mut runs: Vec<Vec<Verdict>> = results.iter().map(|r| vec![r.verdict]).collect();
        for seed in 1..=u64::from(args.noise_seeds) {
            opts.noise = Some((seed, level));
            for (case, verdicts) in cases.iter().zip(runs.iter_mut()) {
                verdicts.push(run_case(case, &opts, pool.as_ref()).verdict);
            }
        }
        for (case, verdicts) in cases.iter().zip(&runs) {
            if verdicts.iter().any(|v| v.ok() != verdicts[0].ok()) {
                let v: Vec<&str> = verdicts.iter().map(|v| v.label()).collect();
                flipped.push(format!("  {}: {}", case.name, v.join(", ")));
            }
        }
        let share = flipped.len() as f64 * 100.0 / cases.len() as f64;
        println!(
            "\nunder {} more sample(s) of added line noise at {} {}: {} of {} call(s) kept their outcome, {} flipped ({share:.1}%){}",
            args.noise_seeds,
            args.noise_db,
            if args.noise_over_floor {
                "dB over each channel's own floor"
            } else {
                "dBFS"
            },
            cases.len() - flipped.len(),
            cases.len(),
            flipped.len(),
            if flipped.is_empty() {
                String::new()
            } else {
                format!(
                    " (the recording as it is, then each sample):\n{}",
                    flipped.join("\n")
                )
            }
        );
        flip_share = Some(share);
    }
    if let (Some(max), Some(share)) = (args.max_flips, flip_share)
        && share > max
    {
        anyhow::bail!("{share:.1}% of the calls flipped with the noise sample (at most {max}%)");
    }
    if args.min_recall.is_some() || args.max_false_per_50.is_some() {
        // A goal: judged on the figures, not on every call.
        let recall = totals.recall * 100.0;
        let falses = totals.false_per_50();
        let mut short = Vec::new();
        if let Some(min) = args.min_recall
            && recall < min
        {
            short.push(format!("recall {recall:.1}% < {min}%"));
        }
        if let Some(max) = args.max_false_per_50
            && falses > max
        {
            short.push(format!(
                "{falses:.1} false alerts per 50 calm calls > {max}"
            ));
        }
        if totals.failed > 0 {
            short.push(format!("{} call(s) could not be analysed", totals.failed));
        }
        return if short.is_empty() {
            println!("goal met");
            Ok(())
        } else {
            anyhow::bail!("goal not met: {}", short.join("; "))
        };
    }
    if totals.all_ok() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} scenario(s) did not go as expected",
            totals.calls - totals.passed,
            totals.calls
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::{Alert, CustomerType, Evidence, Level, Reason};
    use crate::pipeline::risk::suggestion;

    fn alert(at: u64, kinds: &[SignalKind]) -> Event {
        Event::Alert(Alert {
            call_id: "c".into(),
            alert_id: "c-a1".into(),
            at_ms: at,
            level: Level::Escalate,
            score: 70.0,
            reasons: kinds
                .iter()
                .map(|&kind| Reason {
                    kind,
                    points: 70.0,
                    count: 1,
                    terms: vec![],
                })
                .collect(),
            evidence: Evidence::default(),
            customer_type: CustomerType::ProblemLed,
            suggestion: suggestion(CustomerType::ProblemLed, "en"),
        })
    }

    fn expect(alert: bool, after: u64, reasons: &[SignalKind]) -> Expectation {
        Expectation {
            alert,
            after_ms: after,
            said_by_ms: Some(after + 2000),
            reasons: reasons.to_vec(),
            text_reasons: reasons.to_vec(),
            lang: None,
            transcript: None,
            family: reasons.first().map_or("calm", |k| k.as_str()).into(),
            split: None,
            class: None,
            legs: None,
            whisper: true,
        }
    }

    #[test]
    fn verdicts() {
        use SignalKind::*;
        let e = expect(true, 10_000, &[ThreatMedia]);
        let r = judge(
            "x",
            &e,
            false,
            &[alert(13_000, &[ThreatMedia, RaisedVoice])],
        );
        assert_eq!(r.verdict, Verdict::Caught);
        assert_eq!(r.time_to_alert_ms, Some(1000));
        assert_eq!(judge("x", &e, false, &[]).verdict, Verdict::Missed);
        assert_eq!(
            judge("x", &e, false, &[alert(5000, &[ThreatMedia])]).verdict,
            Verdict::FalseAlert
        );
        let r = judge("x", &e, false, &[alert(12_000, &[Churn])]);
        assert_eq!(r.verdict, Verdict::WrongReasons);
        assert_eq!(r.missing, vec![ThreatMedia]);
        let calm = expect(false, 0, &[]);
        assert_eq!(judge("x", &calm, false, &[]).verdict, Verdict::Quiet);
        let r = judge("x", &calm, false, &[alert(1, &[Churn]), alert(2, &[Churn])]);
        assert_eq!((r.verdict, r.false_alerts), (Verdict::FalseAlert, 2));
    }

    #[test]
    fn totals_count_precision_and_recall() {
        use SignalKind::*;
        let e = expect(true, 0, &[Churn]);
        let calm = expect(false, 0, &[]);
        let results = vec![
            judge("a", &e, false, &[alert(1000, &[Churn])]),
            judge("b", &e, false, &[]),
            judge("c", &calm, false, &[alert(1000, &[Churn])]),
            judge("d", &calm, false, &[]),
        ];
        let t = Totals::of(&results);
        assert_eq!((t.caught, t.alert_calls, t.false_alerts), (1, 2, 1));
        assert!((t.recall - 0.5).abs() < 1e-9 && (t.precision - 0.5).abs() < 1e-9);
        assert!(!t.all_ok());
        assert!(format_totals(&t).contains("recall 50%"));
        // One of two calm calls alerted: 25 per 50.
        assert_eq!(t.calm_false_alert_calls, 1);
        assert!((t.false_per_50() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn the_family_table_groups_by_language_and_family() {
        use SignalKind::*;
        let mut results = Vec::new();
        for (i, at) in [3000, 4000, 6000].into_iter().enumerate() {
            // said_by 2000 after 0: times to alert 1 s, 2 s, 4 s.
            let r = judge(
                &format!("en-{i}"),
                &expect(true, 0, &[Churn]),
                false,
                &[alert(at, &[Churn])],
            );
            results.push(r);
        }
        results.push(judge("en-3", &expect(true, 0, &[Churn]), false, &[]));
        let mut zh = judge(
            "zh-calm",
            &expect(false, 0, &[]),
            false,
            &[alert(1, &[ThreatMedia])],
        );
        zh.lang = "zh";
        results.push(zh);
        let table = format_families(&results);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3, "{table}");
        assert_eq!(
            rows[1],
            [
                "en", "churn", "4", "3/4", "75%", "0", "+2.0", "s", "+4.0", "s"
            ],
            "{table}"
        );
        assert_eq!(
            rows[2],
            ["zh", "calm", "1", "-", "-", "1", "-", "-"],
            "{table}"
        );
        assert_eq!(quantile(&[5, 1, 3], 0.5), Some(3));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn added_noise_has_its_level_and_the_same_seed_gives_the_same_noise() {
        let silent = || vec![vec![0.0f32; 80_000], vec![0.0f32; 80_000]];
        let level = 10f32.powf(-50.0 / 20.0);
        let (mut a, mut b, mut c) = (silent(), silent(), silent());
        add_noise(&mut a, 1, level);
        add_noise(&mut b, 1, level);
        add_noise(&mut c, 2, level);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Each channel its own noise, at the asked RMS level (within 0.5 dB).
        assert_ne!(a[0], a[1]);
        for ch in &a {
            let rms = (ch.iter().map(|x| x * x).sum::<f32>() / ch.len() as f32).sqrt();
            let db = 20.0 * rms.log10();
            assert!((db + 50.0).abs() < 0.5, "{db} dBFS");
            let mean = ch.iter().sum::<f32>() / ch.len() as f32;
            assert!(mean.abs() < level / 10.0, "{mean}");
        }
    }

    #[test]
    fn the_noise_floor_is_the_hiss_between_words() {
        // 8 kHz: one second of hiss at -70 dBFS, then speech-like tone at -20 dBFS for nine.
        let mut x = vec![vec![0.0f32; 8000]];
        add_noise(&mut x, 3, 10f32.powf(-70.0 / 20.0));
        let mut samples = x.remove(0);
        let mut tone = vec![vec![0.0f32; 72_000]];
        add_noise(&mut tone, 4, 10f32.powf(-70.0 / 20.0));
        for (i, s) in tone[0].iter_mut().enumerate() {
            *s += 0.1 * (i as f32 * 0.3).sin() * std::f32::consts::SQRT_2;
        }
        samples.extend_from_slice(&tone[0]);
        let floor_db = 20.0 * noise_floor(&samples, 8000).log10();
        assert!((floor_db + 70.0).abs() < 2.0, "{floor_db}");
        // Digital silence still gets a floor.
        let silence = 20.0 * noise_floor(&vec![0.0; 8000], 8000).log10();
        assert!((silence + 90.0).abs() < 0.1, "{silence}");
    }

    #[test]
    fn word_error_rate_counts_edits_per_word_and_per_chinese_character() {
        let t = |s: &str| score_tokens(s);
        assert_eq!(
            t("I'll call the PRESS, now!"),
            ["i'll", "call", "the", "press", "now"]
        );
        assert_eq!(t("我要投诉, OK"), ["我", "要", "投", "诉", "ok"]);
        // One substitution, one deletion, one insertion.
        let (e, n) = word_errors(&t("call the press today"), &t("call a press please today"));
        assert_eq!((e, n), (2, 4), "the->a and an inserted please");
        assert_eq!(word_errors(&t("a b c"), &t("a c")), (1, 3));
        assert_eq!(word_errors(&t("我要投诉"), &t("我要投诉")), (0, 4));
        assert_eq!(word_errors(&t(""), &t("noise")), (1, 0));
        assert_eq!(word_errors(&t("words"), &t("")), (1, 1));

        // Per leg, final lines only: words on the wrong leg are errors twice over.
        let line = |leg: Leg, text: &str, is_final: bool| Transcript {
            call_id: "c".into(),
            leg,
            start_ms: 0,
            end_ms: 1,
            at_ms: 1,
            text: text.into(),
            lang: "en".into(),
            is_final,
        };
        let reference = [
            line(Leg::Customer, "I want a refund", true),
            line(Leg::Agent, "let me check", true),
        ];
        let events = [
            Event::Transcript(line(Leg::Customer, "I want", false)),
            Event::Transcript(line(Leg::Customer, "I want a refund", true)),
            Event::Transcript(line(Leg::Customer, "let me", true)),
            Event::Transcript(line(Leg::Agent, "check", true)),
        ];
        assert_eq!(leg_word_errors(&reference, &events), (4, 7));
    }

    #[test]
    fn expectation_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.expect.toml");
        std::fs::write(
            &p,
            "alert = true\nreasons = [\"threat_media\"]\nafter_ms = 5\n",
        )
        .unwrap();
        let e = read_expectation(&p).unwrap();
        assert_eq!(e.reasons, vec![SignalKind::ThreatMedia]);
        assert_eq!(e.text_reasons, e.reasons);
        std::fs::write(&p, "alert = true\nreasons = [\"shouting\"]\n").unwrap();
        assert!(
            read_expectation(&p)
                .unwrap_err()
                .to_string()
                .contains("shouting")
        );
        std::fs::write(
            &p,
            "alert = true\nreasons = [\"churn\"]\nlegs = [\"agent\", \"customer\"]\nsplit = \"test\"\n",
        )
        .unwrap();
        let e = read_expectation(&p).unwrap();
        assert_eq!(e.legs, Some([Leg::Agent, Leg::Customer]));
        assert_eq!(
            (e.family.as_str(), e.split.as_deref()),
            ("churn", Some("test"))
        );
        for bad in [
            "legs = [\"agent\", \"agent\"]",
            "split = \"train\"",
            "family = \"anger\"",
        ] {
            std::fs::write(&p, format!("alert = true\n{bad}\n")).unwrap();
            assert!(read_expectation(&p).is_err(), "{bad}");
        }
        std::fs::write(&p, "alert = true\nwhen = 3\n").unwrap();
        assert!(
            read_expectation(&p)
                .unwrap_err()
                .to_string()
                .contains("when")
        );
        // A scenario without its recording is an error naming it.
        assert!(
            discover(dir.path())
                .unwrap_err()
                .to_string()
                .contains("x.wav")
        );
    }
}
