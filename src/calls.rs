//! `callguard calls list|show|export`: the call store from a terminal, and
//! `callguard analyze --store`: a recording analysed offline, written into the store as a call
//! of its own (source `file`), so that it is reviewed like the daemon's calls.
//!
//! Reading opens a [`StoreReader`] (fine while the daemon runs); storing opens the writing
//! [`Store`], whose lock file a running daemon holds, so `analyze --store` then fails with a
//! message saying so. Times in and out are UTC: dates are `YYYY-MM-DD`,
//! `YYYY-MM-DDTHH:MM[:SS]` or Unix milliseconds.
//!
//! What `analyze --store` writes, in the daemon's order: the detectors have judged the raw
//! words; each event is then redacted per `[redact]` (`redact::redact_event`) and stored; the
//! decoded audio is written to `<data_dir>/recordings/<call>.wav` (stereo customer/agent, or
//! mono), with the redacted spans silenced when `[redact] silence_audio` is on (each span
//! placed proportionally within its transcript segment); the call ends as `hangup`, at the
//! time of the analysis, and starts the call's length before that.
//!
//! Text output (`list`, `show`) replaces control characters in stored text, so that a
//! transcript or a note cannot drive the terminal.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use crate::analyze::{clock, format_text, split_legs};
use crate::audio::Leg;
use crate::audio::wav::DecodedAudio;
use crate::detect::SignalKind;
use crate::event::{Event, SignalEvent, Transcript, sort_events};
use crate::hub::protocol::AlertState;
use crate::redact::{RedactConfig, Redactor, redact_event};
use crate::risk::{Level, RiskUpdate};
use crate::source::{CallInfo, EndReason, SourceKind};
use crate::store::recording::{Recording, RecordingInfo, unused_path};
use crate::store::{
    AlertRecord, CallDetail, CallFilter, CallKey, CallRow, DB_FILE, Outcome, Store, StoreError,
    StoreReader, to_json, to_srt, to_vtt,
};

/// The folder of the data directory that recordings go to.
pub const RECORDINGS_DIR: &str = "recordings";

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

/// What `calls list` asks for; dates still as typed.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub q: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub level: Option<Level>,
    pub reason: Option<SignalKind>,
    pub outcome: Option<Outcome>,
    pub agent: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

impl ListRequest {
    /// The store filter, with the dates parsed (`--to` with a date alone includes that day).
    pub fn filter(&self) -> Result<CallFilter> {
        self.filter_named("--from", "--to").map_err(|e| anyhow!(e))
    }

    /// [`filter`](Self::filter) with the date parameters called as the caller's users know
    /// them (`from`/`to` in the HTTP API), so errors name what they typed.
    pub fn filter_named(&self, from_name: &str, to_name: &str) -> Result<CallFilter, String> {
        let from = self
            .from
            .as_deref()
            .map(|s| parse_time(s, false).map_err(|e| format!("{from_name} {e}")))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|s| parse_time(s, true).map_err(|e| format!("{to_name} {e}")))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(format!(
                "{from_name} ({}) is not before {to_name} ({})",
                format_utc(f),
                format_utc(t)
            ));
        }
        Ok(CallFilter {
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
            from,
            to,
            level: self.level,
            reason: self.reason,
            outcome: self.outcome,
            agent: self.agent.clone(),
            limit: self.limit,
            offset: self.offset,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Times

const DAY_MS: u64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses a time given on the command line, as Unix ms: `YYYY-MM-DD` (midnight UTC, or the
/// next midnight with `end_of_day`, so that `--to 2024-05-01` includes that day),
/// `YYYY-MM-DDTHH:MM[:SS]` (UTC; a space for the `T` and a trailing `Z` are fine), or Unix
/// milliseconds. The error says what was wrong and what is accepted.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<u64, String> {
    const FORMS: &str = "use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or Unix milliseconds";
    let t = s.trim();
    let bad = |why: &str| format!("{s:?}: {why}; {FORMS}");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|_| bad("too large"));
    }
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    let (date, time) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(t[i + 1..].trim())),
        None => (t, None),
    };
    let num = |part: &str, len: usize| -> Option<u32> {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let (Some(y), Some(mo), Some(day)) = (
        d.first().and_then(|p| num(p, 4)),
        d.get(1).and_then(|p| num(p, 2)),
        d.get(2).and_then(|p| num(p, 2)),
    ) else {
        return Err(bad("not a date"));
    };
    if d.len() != 3 {
        return Err(bad("not a date"));
    }
    let y = i64::from(y);
    if y < 1970 {
        return Err(bad("before 1970"));
    }
    if !(1..=12).contains(&mo) || day == 0 || day > days_in_month(y, mo) {
        return Err(bad("no such day"));
    }
    let mut ms = days_from_civil(y, mo, day) as u64 * DAY_MS;
    match time {
        None => {
            if end_of_day {
                ms += DAY_MS;
            }
        }
        Some(time) => {
            let p: Vec<&str> = time.split(':').collect();
            let (Some(h), Some(mi)) = (
                p.first().and_then(|x| num(x, 2)),
                p.get(1).and_then(|x| num(x, 2)),
            ) else {
                return Err(bad("not a time of day"));
            };
            let sec = match p.get(2) {
                Some(x) => num(x, 2).ok_or_else(|| bad("not a time of day"))?,
                None => 0,
            };
            if p.len() > 3 || h > 23 || mi > 59 || sec > 59 {
                return Err(bad("not a time of day"));
            }
            ms += (u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(sec)) * 1000;
        }
    }
    Ok(ms)
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
    let filter = request.filter()?;
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
    crate::store::db::name(&s)
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

// ---------------------------------------------------------------------------------------------
// Storing an analysed recording

/// Opens the store of `data_dir` for writing; a running daemon holding it is said plainly.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    match Store::open(data_dir) {
        Ok(s) => Ok(s),
        Err(e @ StoreError::Locked { .. }) => Err(anyhow!(
            "{e}: a running `callguard serve` keeps it open; stop the daemon or store into \
             another --data-dir"
        )),
        Err(e) => Err(e.into()),
    }
}

/// One analysed recording to store.
#[derive(Debug)]
pub struct FileCall<'a> {
    pub call_id: &'a str,
    /// The analysed file (kept in the call's metadata).
    pub file: &'a Path,
    /// The decoded audio, at its own rate: the recording is made of it.
    pub audio: DecodedAudio,
    /// Which leg each channel of a stereo file is (`audio.stereo_legs`).
    pub stereo_legs: [Leg; 2],
    /// The analysis' events, raw: detection has run on them.
    pub events: Vec<Event>,
    /// The call's length.
    pub duration_ms: u64,
    pub redact: &'a RedactConfig,
    pub data_dir: &'a Path,
    /// When it is stored: the call ends then.
    pub now_unix_ms: u64,
}

/// What [`store_file_call`] stored.
#[derive(Debug)]
pub struct StoredCall {
    pub id: CallKey,
    pub recording: Option<RecordingInfo>,
    /// Transcript spans redacted.
    pub redacted: usize,
}

/// Stores an analysed recording as a call of source `file`: the call, its redacted events, its
/// recording (with the redacted spans silenced when `silence_audio`), its end (`hangup`).
/// When events or the recording fail the call is still ended and kept, and the error says
/// which call it is.
pub fn store_file_call(store: &mut Store, call: FileCall<'_>) -> Result<StoredCall> {
    let FileCall {
        call_id,
        file,
        audio,
        stereo_legs,
        mut events,
        duration_ms,
        redact,
        data_dir,
        now_unix_ms,
    } = call;
    let rate = audio.sample_rate;
    let format = audio.format.to_string();
    let truncated = audio.truncated;
    let legs = split_legs(audio, stereo_legs);
    let info = CallInfo {
        call_id: call_id.to_owned(),
        source: SourceKind::File,
        legs: legs.iter().map(|(l, _)| *l).collect(),
        sample_rate: rate,
        lang: None,
        agent: None,
        metadata: serde_json::json!({
            "file": std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
            "format": format,
            "truncated": truncated,
        }),
    };

    // Redact as the daemon does: detection already ran on the raw words.
    let redactor = Redactor::new(redact);
    let mut silences: Vec<(Leg, u64, u64)> = Vec::new();
    let mut redacted = 0;
    for e in &mut events {
        let original = match e {
            Event::Transcript(t) => Some((t.leg, t.start_ms, t.end_ms, t.text.clone())),
            _ => None,
        };
        let spans = redact_event(&redactor, e);
        redacted += spans.len();
        if let Some((leg, start, end, text)) = original
            && redactor.silence_audio()
        {
            // Whisper times segments, not words: silence the same share of the segment as the
            // span is of its text.
            let len = end.saturating_sub(start) as f64;
            for span in &spans {
                let (a, b) = span.position(&text);
                let s = start + (f64::from(a) * len).floor() as u64;
                let e = (start + (f64::from(b) * len).ceil() as u64).min(end);
                if s < e {
                    silences.push((leg, s, e));
                }
            }
        }
    }

    let started = now_unix_ms.saturating_sub(duration_ms);
    let id = store.call_started(&info, started)?;
    let mut problems: Vec<String> = Vec::new();
    match store.record_batch(&events) {
        Ok(batch) => {
            if let Some((_, e)) = batch.failed.first() {
                problems.push(format!(
                    "{} of {} events were not stored (first: {e})",
                    batch.failed.len(),
                    events.len()
                ));
            }
        }
        Err(e) => problems.push(format!("its events were not stored: {e}")),
    }
    let recording = match write_recording(data_dir, call_id, rate, &legs, &silences) {
        Ok(info) => {
            let path = std::path::absolute(&info.path).unwrap_or_else(|_| info.path.clone());
            if let Err(e) = store.set_recording(call_id, &path) {
                problems.push(format!("its recording path was not stored: {e}"));
            }
            Some(info)
        }
        Err(e) => {
            problems.push(format!("its recording failed: {e:#}"));
            None
        }
    };
    store.call_ended(call_id, &EndReason::Hangup, now_unix_ms)?;
    if !problems.is_empty() {
        bail!("stored as call {id}, but {}", problems.join("; "));
    }
    Ok(StoredCall {
        id,
        recording,
        redacted,
    })
}

/// Writes the legs' samples into a new recording, a second of each leg in turn (a recording
/// lets one leg run only so far ahead of the other), with `silences` zeroed.
fn write_recording(
    data_dir: &Path,
    call_id: &str,
    rate: u32,
    legs: &[(Leg, Vec<f32>)],
    silences: &[(Leg, u64, u64)],
) -> Result<RecordingInfo> {
    let path = unused_path(&data_dir.join(RECORDINGS_DIR), call_id);
    let leg_list: Vec<Leg> = legs.iter().map(|(l, _)| *l).collect();
    let mut rec = Recording::create(&path, rate, &leg_list)?;
    let result = (|| -> Result<RecordingInfo> {
        for &(leg, start, end) in silences {
            rec.silence(leg, start, end)?;
        }
        let step = (rate as usize).max(1);
        let frames = legs.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        let mut at = 0;
        while at < frames {
            for (leg, samples) in legs {
                let end = (at + step).min(samples.len());
                if at < end {
                    rec.write(*leg, at as u64, &samples[at..end])?;
                }
            }
            at += step;
        }
        let info = rec.finish()?;
        if let Some(why) = &info.incomplete {
            bail!("recording {} is incomplete: {why}", info.path.display());
        }
        Ok(info)
    })();
    if result.is_err() {
        // Ours and incomplete: do not leave a broken file behind.
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// For `analyze --store`: stores the analysis (see [`store_file_call`]); prints nothing.
pub fn store_analysis(
    store: &mut Store,
    analysis: crate::analyze::Analysis,
    audio: DecodedAudio,
    file: &Path,
    cfg: &crate::config::Config,
    data_dir: &Path,
) -> Result<StoredCall> {
    store_file_call(
        store,
        FileCall {
            call_id: &analysis.call_id,
            file,
            audio,
            stereo_legs: cfg.audio.stereo_legs,
            events: analysis.events,
            duration_ms: analysis.audio.duration_ms,
            redact: &cfg.redact,
            data_dir,
            now_unix_ms: crate::clock::unix_ms(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect_call;
    use crate::audio::wav::{SampleFormat, read_wav};
    use crate::config::Config;
    use crate::detect::lexicon::Lexicon;
    use crate::monitor::CallMonitor;
    use std::sync::Arc;

    #[test]
    fn dates_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1970-01-01", false), Ok(0));
        assert_eq!(parse_time("1970-01-01", true), Ok(DAY_MS));
        assert_eq!(parse_time("2024-05-01", false), Ok(1_714_521_600_000));
        assert_eq!(
            parse_time("2024-05-01T12:34", false),
            Ok(1_714_521_600_000 + (12 * 3600 + 34 * 60) * 1000)
        );
        assert_eq!(
            parse_time("2024-05-01 12:34:56Z", true),
            Ok(1_714_521_600_000 + (12 * 3600 + 34 * 60 + 56) * 1000)
        );
        assert_eq!(parse_time("2024-02-29", false), Ok(1_709_164_800_000));
        assert_eq!(parse_time("1714521600000", false), Ok(1_714_521_600_000));
        for bad in [
            "",
            "yesterday",
            "2024-5-1",
            "2024-13-01",
            "2023-02-29",
            "2024-04-31",
            "2024-05-01T25:00",
            "2024-05-01T12",
            "2024-05-01T12:00:00:00",
            "1969-12-31",
            "2024-05-01-02",
            "99999999999999999999999",
        ] {
            let e = parse_time(bad, false).unwrap_err();
            assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn utc_formatting_round_trips_with_parsing() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        for ms in [0, 951_782_400_000u64, 1_714_567_496_000, 4_102_444_799_000] {
            let s = format_utc(ms);
            let back = parse_time(s.trim_end_matches(" UTC"), false).unwrap();
            assert_eq!(back, ms, "{s}");
        }
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn list_request_checks_its_dates() {
        let r = ListRequest {
            from: Some("2024-05-02".into()),
            to: Some("2024-05-01".into()),
            limit: 50,
            ..ListRequest::default()
        };
        assert!(r.filter().unwrap_err().to_string().contains("not before"));
        let r = ListRequest {
            from: Some("2024-05-01".into()),
            to: Some("2024-05-01".into()),
            limit: 50,
            ..ListRequest::default()
        };
        let f = r.filter().unwrap();
        assert_eq!(f.to.unwrap() - f.from.unwrap(), DAY_MS);
        let r = ListRequest {
            to: Some("soon".into()),
            ..ListRequest::default()
        };
        let e = r.filter().unwrap_err().to_string();
        assert!(e.starts_with("--to \"soon\""), "{e}");
    }

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
        let monitor = CallMonitor::new("file-call", cfg, Arc::new(Lexicon::builtin()));
        let events = detect_call(monitor, vec![t, agent], Vec::new(), 4000);
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
        let mut store = open_store(dir).unwrap();
        let stored = store_file_call(
            &mut store,
            FileCall {
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
        let detail = store.get_call(stored.id).unwrap().unwrap();
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
        use crate::hub::auth::Role;
        use crate::hub::protocol::{AlertStatus, Decision};
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
