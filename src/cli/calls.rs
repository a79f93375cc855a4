//! `callguard calls list|show|export`: the call store from a terminal. Reading opens a
//! [`StoreReader`] (fine while the daemon runs). Times in and out are UTC: dates are
//! `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` or Unix milliseconds (`domain::clock`).
//!
//! Also [`open_store`], for `analyze --store`: the writing [`Store`], whose lock file a
//! running daemon holds, so that it then fails with a message saying so. What `analyze --store`
//! writes is the egress step's (`sinks::egress::store_recorded_call`), the daemon's own order.
//!
//! Text output (`list`, `show`) replaces control characters in stored text, so that a
//! transcript or a note cannot drive the terminal.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use crate::cli::format::{clock, format_text};
use crate::domain::alert::AlertState;
use crate::domain::alert::{Level, RiskUpdate};
use crate::domain::call::SourceKind;
use crate::domain::clock::format_utc;
use crate::domain::event::{Event, SignalEvent, Transcript, sort_events};
use crate::sinks::store::filter::ListRequest;
use crate::sinks::store::{
    AlertRecord, CallDetail, CallFilter, CallKey, CallRow, DB_FILE, Store, StoreError, StoreReader,
    to_json, to_srt, to_vtt,
};

/// Indent of the notes under a transcript line (as `analyze --format text` prints them).
const NOTE: &str = "                    ";

/// `calls list` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table for people.
    Text,
    /// One JSON object (the stored call row) per line.
    Jsonl,
}

/// `calls show` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// Header, transcript with findings and prompts inline, notes.
    Text,
    /// Everything stored about the call, as one JSON document.
    Json,
}

/// `calls export` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// WebVTT subtitles with `<v Customer>` / `<v Agent>` voice tags.
    Vtt,
    /// SubRip subtitles with a `Customer: ` prefix.
    Srt,
    /// The call, its transcript lines, signals and prompts.
    Json,
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Opens the store of `data_dir` for reading, with a helpful error when there is none.
pub fn open_reader(data_dir: &Path) -> Result<StoreReader> {
    if !data_dir.join(DB_FILE).is_file() {
        bail!(
            "no call store in {}: `callguard serve` or `callguard analyze --store` creates one \
             (--data-dir picks another folder)",
            data_dir.display()
        );
    }
    Ok(StoreReader::open(data_dir)?)
}

/// The stored call `id` names: the store's numeric id, else a phone-system call id that only
/// one stored call has. Several calls with that call id is an error listing them.
pub fn resolve(reader: &StoreReader, id: &str) -> Result<CallDetail> {
    let id = id.trim();
    if let Ok(key) = id.parse::<CallKey>()
        && let Some(detail) = reader.get_call(key)?
    {
        return Ok(detail);
    }
    let keys = reader.find_calls(id)?;
    match keys.as_slice() {
        [] => {
            bail!("no stored call {id:?} (neither an id from `callguard calls list` nor a call id)")
        }
        [key] => reader
            .get_call(*key)?
            .ok_or_else(|| anyhow!("stored call {key} disappeared while being read")),
        many => {
            let mut listed = Vec::new();
            for key in many.iter().take(10) {
                if let Some(d) = reader.get_call(*key)? {
                    listed.push(format!(
                        "{key} (started {})",
                        format_utc(d.call.started_unix_ms)
                    ));
                }
            }
            bail!(
                "call id {id:?} matches {} stored calls: {}{}; give one of these ids",
                many.len(),
                listed.join(", "),
                if many.len() > 10 { ", ..." } else { "" }
            )
        }
    }
}

/// `calls list`.
pub fn list(
    data_dir: &Path,
    request: &ListRequest,
    format: ListFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let filter = request.filter().map_err(|e| anyhow!(e))?;
    let reader = open_reader(data_dir)?;
    let page = reader.list_calls(&filter)?;
    match format {
        ListFormat::Jsonl => {
            for row in &page.items {
                let line = serde_json::to_string(row).context("encoding a call")?;
                writeln!(out, "{line}").context("writing output")?;
            }
        }
        ListFormat::Text => {
            if !page.items.is_empty() {
                write!(out, "{}", format_table(&page.items)).context("writing output")?;
            }
        }
    }
    out.flush().context("writing output")?;
    // Hints for people on stderr; stdout stays the calls.
    if page.total == 0 {
        let empty = reader
            .list_calls(&CallFilter {
                limit: 1,
                ..CallFilter::default()
            })?
            .total
            == 0;
        if empty {
            eprintln!(
                "no calls stored in {} yet (the daemon and `callguard analyze --store` add them)",
                data_dir.display()
            );
        } else {
            eprintln!("no stored calls match");
        }
    } else if page.items.is_empty() {
        eprintln!(
            "no calls at --offset {} ({} match)",
            page.offset, page.total
        );
    } else {
        let shown_to = page.offset + page.items.len() as u64;
        if page.offset > 0 || shown_to < page.total {
            eprintln!(
                "calls {}-{} of {}{}",
                page.offset + 1,
                shown_to,
                page.total,
                if shown_to < page.total {
                    format!(" (--offset {shown_to} for more)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

/// Replaces control characters (but line breaks) so stored text cannot drive a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(|x| printable(x.trim()))
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn source_name(s: SourceKind) -> String {
    crate::sinks::store::db::name(&s)
}

/// The readable table of `calls list`: a header, one row per call, and the matching line under
/// it when there was a full-text query.
pub fn format_table(rows: &[CallRow]) -> String {
    let header = [
        "ID",
        "CALL",
        "STARTED (UTC)",
        "LENGTH",
        "SOURCE",
        "AGENT",
        "LEVEL",
        "ALERTS",
        "OUTCOME",
        "REASONS",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let started = format_utc(r.started_unix_ms);
            [
                r.id.to_string(),
                cut(&one_line(&r.call_id), 32),
                started.trim_end_matches(" UTC").to_owned(),
                clock(r.duration_ms),
                source_name(r.source),
                cut(&one_line(r.agent.as_deref().unwrap_or("-")), 16),
                format!("{} {:.0}", r.max_level.as_str(), r.max_score),
                r.alerts.to_string(),
                r.outcome.as_str().to_owned(),
                if r.reasons.is_empty() {
                    "-".to_owned()
                } else {
                    r.reasons
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |fields: &[String]| {
        let mut s = String::new();
        for (i, (f, w)) in fields.iter().zip(widths).enumerate() {
            if i + 1 == fields.len() {
                s.push_str(f);
            } else {
                s.push_str(f);
                s.push_str(&" ".repeat(w.saturating_sub(f.chars().count()) + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('\n');
    for (row, r) in cells.iter().zip(rows) {
        out.push_str(&line(row));
        out.push('\n');
        if let Some(snippet) = &r.snippet {
            out.push_str(&format!("    > {}\n", cut(&one_line(snippet), 120)));
        }
    }
    out
}

/// `calls show`.
pub fn show(data_dir: &Path, id: &str, format: ShowFormat, out: &mut dyn Write) -> Result<()> {
    let reader = open_reader(data_dir)?;
    let detail = resolve(&reader, id)?;
    let text = match format {
        ShowFormat::Text => format_detail(&detail),
        ShowFormat::Json => {
            let mut s = serde_json::to_string_pretty(&detail).context("encoding the call")?;
            s.push('\n');
            s
        }
    };
    out.write_all(text.as_bytes()).context("writing output")?;
    out.flush().context("writing output")
}

fn alert_decision(a: &AlertRecord) -> String {
    let escalated = if a.escalated {
        " (escalated: re-sent to every supervisor)"
    } else {
        ""
    };
    let state = match a.state {
        AlertState::Open => {
            return format!("{NOTE}   open: nobody accepted or dismissed it{escalated}");
        }
        AlertState::Accepted => "accepted",
        AlertState::Dismissed => "dismissed",
    };
    match &a.decision {
        Some(d) => format!(
            "{NOTE}   {state} by {} ({}) {:.1} s after the prompt, at {}{escalated}{}",
            one_line(&d.by),
            d.role,
            d.time_to_ack_ms as f64 / 1000.0,
            format_utc(d.at_unix_ms),
            if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", one_line(&d.reason))
            }
        ),
        None => format!("{NOTE}   {state}{escalated}"),
    }
}

fn alert_block(a: &AlertRecord) -> String {
    let head = match &a.alert {
        Some(alert) => format_text(&Event::Alert(alert.clone())).unwrap_or_default(),
        None => format!(
            "{NOTE}!! TRANSFER PROMPT {} at {}: score {:.0}, {} (details deleted by the \
             retention policy)",
            a.alert_id,
            clock(a.at_ms),
            a.score,
            a.level.as_str()
        ),
    };
    format!("{head}\n{}", alert_decision(a))
}

/// The readable form of a stored call (`calls show`): a header, then the transcript with the
/// signals, level changes, QA flags and transfer prompts (and what became of each) inline, as
/// `analyze --format text` prints them, then the summary line and the QA notes.
pub fn format_detail(detail: &CallDetail) -> String {
    let c = &detail.call;
    let mut lines = vec![format!("call {}: {}", c.id, c.call_id)];
    let legs: Vec<&str> = c.legs.iter().map(|l| l.as_str()).collect();
    lines.push(format!(
        "  source     {}, legs {}, {} Hz{}",
        source_name(c.source),
        legs.join("+"),
        c.sample_rate,
        c.language
            .as_deref()
            .map(|l| format!(", language {l}"))
            .unwrap_or_default()
    ));
    lines.push(format!(
        "  started    {}{}",
        format_utc(c.started_unix_ms),
        match c.ended_unix_ms {
            Some(e) => format!(", ended {}", format_utc(e)),
            None => String::new(),
        }
    ));
    lines.push(format!(
        "  outcome    {}{}, length {}",
        c.outcome,
        c.end_detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        clock(c.duration_ms)
    ));
    lines.push(format!(
        "  agent      {}",
        c.agent.as_deref().unwrap_or("-")
    ));
    lines.push(format!(
        "  risk       max {} (score {:.0}), {} transfer prompt(s), {} QA flag(s)",
        c.max_level.as_str(),
        c.max_score,
        c.alerts,
        c.qa_flags
    ));
    if !c.reasons.is_empty() {
        let r: Vec<&str> = c.reasons.iter().map(|k| k.as_str()).collect();
        lines.push(format!("  reasons    {}", r.join(", ")));
    }
    lines.push(format!(
        "  recording  {}",
        match (&c.recording_path, c.audio_deleted) {
            (_, true) => "deleted by the retention policy".to_owned(),
            (Some(p), false) => p.display().to_string(),
            (None, false) => "none".to_owned(),
        }
    ));
    match &detail.metadata {
        serde_json::Value::Null => {}
        serde_json::Value::Object(m) if m.is_empty() => {}
        m => lines.push(format!("  metadata   {m}")),
    }
    lines.push(String::new());

    if c.transcript_deleted {
        lines.push(
            "(the transcript, signals, QA flags and notes were deleted by the retention policy)"
                .into(),
        );
    } else if detail.segments.is_empty() {
        lines.push("(no transcript)".into());
    }

    // Everything but the prompts as events, in call-time order; the prompts merged in after
    // what happened at the same moment, each with its decision.
    let call_id = &c.call_id;
    let mut events: Vec<Event> = Vec::new();
    for s in &detail.segments {
        events.push(Event::Transcript(Transcript {
            call_id: call_id.clone(),
            leg: s.leg,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            at_ms: s.at_ms,
            text: s.text.clone(),
            lang: s.lang.clone(),
            is_final: true,
        }));
    }
    for s in &detail.signals {
        events.push(Event::Signal(SignalEvent {
            call_id: call_id.clone(),
            signal: s.clone(),
        }));
    }
    let mut level = Level::Calm;
    for p in &detail.risk {
        if p.level != level {
            events.push(Event::Risk(RiskUpdate {
                call_id: call_id.clone(),
                at_ms: p.at_ms,
                score: p.score,
                level: p.level,
                previous_level: Some(level),
                reasons: Vec::new(),
            }));
            level = p.level;
        }
    }
    for f in &detail.qa_flags {
        events.push(Event::QaFlag(f.clone()));
    }
    sort_events(&mut events);
    let mut alerts: Vec<&AlertRecord> = detail.alerts.iter().collect();
    alerts.sort_by_key(|a| a.at_ms);
    let mut alerts = alerts.into_iter().peekable();
    for e in &events {
        while let Some(a) = alerts.peek()
            && a.at_ms < e.at_ms()
        {
            lines.push(alert_block(a));
            alerts.next();
        }
        if let Some(l) = format_text(e) {
            lines.push(l);
        }
    }
    for a in alerts {
        lines.push(alert_block(a));
    }
    if let Some(s) = &detail.summary {
        lines.push(format_text(&Event::Summary(s.clone())).unwrap_or_default());
    }
    if !detail.notes.is_empty() {
        lines.push(String::new());
        lines.push("notes:".into());
        for n in &detail.notes {
            let text = printable(&n.text).replace('\n', "\n    ");
            lines.push(format!(
                "  {} {} (note {}):\n    {}",
                format_utc(n.created_unix_ms),
                one_line(&n.author),
                n.id,
                text
            ));
        }
    }
    let mut out = printable(&lines.join("\n"));
    out.push('\n');
    out
}

/// `calls export`: to the `output` file (saying so on stderr), else to `out`.
pub fn export(
    data_dir: &Path,
    id: &str,
    format: ExportFormat,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let reader = open_reader(data_dir)?;
    let detail = resolve(&reader, id)?;
    if detail.call.transcript_deleted {
        eprintln!(
            "call {}: the transcript was deleted by the retention policy; the export has none",
            detail.call.id
        );
    }
    let mut text = match format {
        ExportFormat::Vtt => to_vtt(&detail),
        ExportFormat::Srt => to_srt(&detail),
        ExportFormat::Json => to_json(&detail),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match output {
        Some(path) => {
            std::fs::write(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote call {} to {}", detail.call.id, path.display());
        }
        None => {
            out.write_all(text.as_bytes()).context("writing output")?;
            out.flush().context("writing output")?;
        }
    }
    Ok(())
}

/// `callguard calls list|show|export`.
pub(super) fn run(cmd: super::CallsCommand) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        super::CallsCommand::List(a) => {
            let request = crate::sinks::store::filter::ListRequest {
                q: a.q,
                from: a.from,
                to: a.to,
                level: a.level,
                reason: a.reason,
                outcome: a.outcome,
                agent: a.agent,
                limit: a.limit,
                offset: a.offset,
            };
            list(&a.data_dir, &request, a.format, &mut out)
        }
        super::CallsCommand::Show {
            id,
            data_dir,
            format,
        } => show(&data_dir, &id, format, &mut out),
        super::CallsCommand::Export {
            id,
            format,
            output,
            data_dir,
        } => export(&data_dir, &id, format, output.as_deref(), &mut out),
    }
}

/// Opens the store of `data_dir` for writing; a running daemon holding it is said plainly.
pub(super) fn open_store(data_dir: &Path) -> Result<Store> {
    match Store::open(data_dir) {
        Ok(s) => Ok(s),
        Err(e @ StoreError::Locked { .. }) => Err(anyhow!(
            "{e}: a running `callguard serve` keeps it open; stop the daemon or store into \
             another --data-dir"
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::leg::Leg;
    use crate::domain::signal::SignalKind;
    use crate::pipeline::assess::CallAssessor;
    use crate::pipeline::audio::wav::DecodedAudio;
    use crate::pipeline::audio::wav::{SampleFormat, read_wav};
    use crate::pipeline::detect::lexicon::Lexicon;
    use crate::pipeline::offline::{CallInputs, detect_call};
    use crate::sinks::egress::{RecordedCall, StoredCall, store_recorded_call};
    use crate::sinks::store::Outcome;
    use std::sync::Arc;

    #[test]
    fn control_characters_are_not_printed() {
        assert_eq!(printable("a\x1b[2Jb\tc\nd"), "a\u{fffd}[2Jb c\nd");
        assert_eq!(one_line(" a\r\n b "), "a b");
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    const CARD: &str = "4111 1111 1111 1111";

    fn said() -> String {
        format!("This is a disgrace, I will tell the press about this, my card is {CARD} ok")
    }

    /// Four seconds of steady tone on both legs at 8 kHz, and what the detectors make of a
    /// customer who threatens the press and reads out a card number from 1 s to 3 s.
    fn call(cfg: &Config) -> (DecodedAudio, Vec<Event>) {
        let rate = 8000;
        let tone: Vec<f32> = (0..4 * rate)
            .map(|i| 0.3 * (i as f32 * 0.2).sin() + 0.1)
            .collect();
        let audio = DecodedAudio {
            sample_rate: rate as u32,
            channels: vec![tone.clone(), tone],
            format: SampleFormat::Pcm { bits: 16 },
            truncated: false,
        };
        let t = Transcript {
            call_id: "file-call".into(),
            leg: Leg::Customer,
            start_ms: 1000,
            end_ms: 3000,
            at_ms: 3000,
            text: said(),
            lang: "en".into(),
            is_final: true,
        };
        let agent = Transcript {
            call_id: "file-call".into(),
            leg: Leg::Agent,
            start_ms: 3100,
            end_ms: 3900,
            at_ms: 3900,
            text: "I understand, let me help".into(),
            lang: "en".into(),
            is_final: true,
        };
        let monitor = CallAssessor::new(
            "file-call",
            cfg.pipeline().assessor(),
            Arc::new(Lexicon::builtin()),
            &[Leg::Customer, Leg::Agent],
        );
        let inputs = CallInputs {
            transcripts: vec![t, agent],
            ..CallInputs::default()
        };
        let events = detect_call(monitor, inputs, 4000);
        (audio, events)
    }

    fn store_it(dir: &Path, silence: bool) -> (StoredCall, CallDetail) {
        let mut cfg = Config::default();
        cfg.redact.silence_audio = silence;
        let (audio, events) = call(&cfg);
        assert!(
            events.iter().any(|e| matches!(e, Event::Alert(_))),
            "the scenario should raise a prompt: {events:?}"
        );
        let store = open_store(dir).unwrap();
        let stored = store_recorded_call(
            store,
            RecordedCall {
                call_id: "file-call",
                file: Path::new("somewhere/file-call.wav"),
                audio,
                stereo_legs: cfg.audio.stereo_legs,
                events,
                duration_ms: 4000,
                redact: &cfg.redact,
                data_dir: dir,
                now_unix_ms: 1_714_521_600_000,
            },
        )
        .unwrap();
        let detail = StoreReader::open(dir)
            .unwrap()
            .get_call(stored.id)
            .unwrap()
            .unwrap();
        (stored, detail)
    }

    #[test]
    fn a_stored_file_call_is_redacted_ended_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (stored, detail) = store_it(dir.path(), false);
        assert_eq!(stored.redacted, 1);
        let c = &detail.call;
        assert_eq!(c.source, SourceKind::File);
        assert_eq!(c.outcome, Outcome::Hangup);
        assert_eq!(c.started_unix_ms, 1_714_521_600_000 - 4000);
        assert_eq!(c.ended_unix_ms, Some(1_714_521_600_000));
        assert_eq!(c.duration_ms, 4000);
        assert!(c.alerts >= 1 && c.reasons.contains(&SignalKind::ThreatMedia));
        assert_eq!(c.legs, vec![Leg::Customer, Leg::Agent]);

        // No card number anywhere: transcript, evidence, the whole stored call, the exports.
        let json = serde_json::to_string(&detail).unwrap();
        assert!(!json.contains("4111"), "{json}");
        assert!(json.contains("[card]"), "{json}");
        let text = format_detail(&detail);
        assert!(!text.contains("4111"), "{text}");
        assert!(
            text.contains("customer This is a disgrace, I will"),
            "{text}"
        );
        assert!(text.contains("!! TRANSFER PROMPT"), "{text}");
        assert!(
            text.contains("open: nobody accepted or dismissed it"),
            "{text}"
        );
        assert!(text.contains("  source     file, legs customer+agent, 8000 Hz"));
        assert!(!to_vtt(&detail).contains("4111"));
        // Redaction changed the text only: the detectors had judged the raw words.
        assert!(
            detail
                .signals
                .iter()
                .any(|s| s.kind == SignalKind::ThreatMedia)
        );

        // The recording: stereo, the call's length, the tone untouched without silence_audio.
        let rec = stored.recording.as_ref().unwrap();
        assert_eq!(rec.path, dir.path().join("recordings/file-call.wav"));
        assert_eq!(
            c.recording_path.as_deref(),
            Some(std::path::absolute(&rec.path).unwrap().as_path())
        );
        let wav = read_wav(&rec.path).unwrap();
        assert_eq!((wav.sample_rate, wav.channels.len()), (8000, 2));
        assert_eq!(wav.channels[0].len(), 32_000);
        assert!(wav.channels[0].iter().filter(|x| **x == 0.0).count() < 10);
    }

    #[test]
    fn silence_audio_zeroes_the_redacted_share_of_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (stored, detail) = store_it(dir.path(), true);
        let rec = stored.recording.unwrap();
        let wav = read_wav(&rec.path).unwrap();
        // Where the card number sits in the text, as a share of the 1000..3000 ms segment.
        let text = said();
        let chars = text.chars().count() as f64;
        let at = text.find(CARD).unwrap() as f64;
        let (a, b) = (
            1000.0 + at / chars * 2000.0,
            1000.0 + (at + CARD.len() as f64) / chars * 2000.0,
        );
        let sample = |ms: f64| (ms * 8.0) as usize;
        let customer = &wav.channels[0];
        assert!(
            customer[sample(a) + 2..sample(b) - 2]
                .iter()
                .all(|x| *x == 0.0)
        );
        let zeros = customer.iter().filter(|x| **x == 0.0).count();
        let span = sample(b) - sample(a);
        assert!(
            zeros <= span + 20,
            "{zeros} zero samples for a {span}-sample span"
        );
        // The agent channel and the rest of the customer's are untouched.
        assert!(wav.channels[1].iter().filter(|x| **x == 0.0).count() < 10);
        assert!(
            customer[..sample(a) - 8]
                .iter()
                .filter(|x| **x == 0.0)
                .count()
                < 10
        );
        assert!(detail.call.has_audio);
    }

    #[test]
    fn storing_the_same_call_twice_keeps_both_recordings() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = store_it(dir.path(), false);
        let (second, _) = store_it(dir.path(), false);
        assert_ne!(first.id, second.id);
        assert_eq!(
            second.recording.unwrap().path,
            dir.path().join("recordings/file-call-1.wav")
        );
        let reader = StoreReader::open(dir.path()).unwrap();
        let e = resolve(&reader, "file-call").unwrap_err().to_string();
        assert!(e.contains("matches 2 stored calls"), "{e}");
        assert_eq!(
            resolve(&reader, &first.id.to_string()).unwrap().call.id,
            first.id
        );
        let e = resolve(&reader, "nope").unwrap_err().to_string();
        assert!(e.contains("no stored call \"nope\""), "{e}");
    }

    #[test]
    fn a_locked_store_says_a_daemon_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let e = open_store(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another callguard process"), "{e}");
        assert!(e.contains("callguard serve"), "{e}");
    }

    #[test]
    fn decisions_and_notes_are_shown() {
        use crate::domain::access::Role;
        use crate::domain::alert::{AlertStatus, Decision};
        let dir = tempfile::tempdir().unwrap();
        let (stored, detail) = store_it(dir.path(), false);
        let alert_id = detail.alerts[0].alert_id.clone();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .alert_decided(&AlertStatus {
                call_id: "file-call".into(),
                alert_id,
                state: AlertState::Dismissed,
                escalated: true,
                fired_unix_ms: 1_714_521_600_000,
                decision: Some(Decision {
                    by: "alice".into(),
                    role: Role::Supervisor,
                    at_unix_ms: 1_714_521_612_300,
                    time_to_ack_ms: 12_300,
                    reason: "already handled".into(),
                }),
            })
            .unwrap();
        store
            .add_note(
                stored.id,
                "bob",
                "call back\x1b[31m tomorrow",
                1_714_521_700_000,
            )
            .unwrap();
        let text = format_detail(&store.get_call(stored.id).unwrap().unwrap());
        assert!(
            text.contains(
                "dismissed by alice (supervisor) 12.3 s after the prompt, at 2024-05-01 00:00:12 \
                 UTC (escalated: re-sent to every supervisor): already handled"
            ),
            "{text}"
        );
        assert!(
            text.contains("notes:\n  2024-05-01 00:01:40 UTC bob"),
            "{text}"
        );
        assert!(text.contains("call back\u{fffd}[31m tomorrow"), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
