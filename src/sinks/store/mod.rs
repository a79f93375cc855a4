//! The durable call store: every call the daemon monitored, in SQLite under the data directory
//! (`<data_dir>/callguard.db`), and the read side the history API, the CLI and exports use.
//!
//! What it keeps, per call: where it came from and its metadata, its legs, language and agent,
//! when it started and ended and how (`hangup`, `disconnected`, `source_error`, or `recovered`
//! when the daemon died mid-call), its highest risk, the final transcript lines, the detectors'
//! signals, the risk points over time, the transfer prompts with who accepted or dismissed them
//! (when, why, how long they waited), QA flags and QA notes, and where its recording is.
//!
//! | module   | what it does |
//! |----------|--------------|
//! | `db`     | [`Store`]: opening (WAL, migrations, crash recovery), the writes, the retention sweep |
//! | `schema` | the schema as numbered migration steps (`PRAGMA user_version`) |
//! | `fts`    | full-text search over transcripts that works for Chinese as well as English |
//! | `query`  | the read side: [`CallFilter`] lists, [`CallDetail`], [`StoreReader`] |
//! | `export` | a call's transcript as WebVTT, SRT and JSON |
//! | `filter` | [`filter::ListRequest`]: a list of calls as users ask for it, checked into a [`CallFilter`] |
//! | `recording` | each call's audio as a WAV written as it arrives, playable after a crash (`repair`) |
//! | `writer` | [`StoreWriter`]: the store on its own thread behind a bounded channel |
//!
//! This folder has the crate's one import cycle, on purpose: `mod.rs` re-exports [`Store`],
//! [`StoreReader`], [`StoreHandle`] and the exports so that callers name one path, while
//! `db`, `query`, `writer` and `export` use the row types defined here. It is a facade, not a
//! dependency: nothing in `mod.rs` calls their code.
//!
//! How it is meant to be used: the daemon opens one [`Store`] (it takes a lock file, so a second
//! process cannot open it for writing) and hands it to [`StoreWriter::start`]; call tasks
//! `await` [`StoreHandle::record_committed`] before they broadcast an event, so nothing is only
//! broadcast and what a screen saw survives a crash ([`StoreHandle::record`] only queues). Readers (HTTP handlers, the CLI) open
//! [`StoreReader`]s of their own; WAL lets them read while the writer writes.
//!
//! What it does not do: redaction (the store keeps exactly the text it is given; recordings can
//! silence spans they are told about), deleting recording files (the sweep returns the expired paths; the caller deletes them and calls
//! [`Store::mark_audio_deleted`]), authorisation (an agent-scoped caller must set
//! [`CallFilter::agent`] itself), and anything over the network. Partial transcripts are never
//! stored. Events still queued to the writer when the process is killed are lost; everything
//! committed survives, and the next [`Store::open`] marks calls left open as `recovered`.

pub mod db;
pub mod export;
pub mod filter;
pub mod fts;
pub mod query;
pub mod recording;
pub mod schema;
pub mod writer;

/// The call store (`<data_dir>/callguard.db`): how long call contents are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Days after a call ends before its transcript, signals, QA flags, notes and the prompts'
    /// full text are deleted (0..36500; 0 = keep for ever). The call row, its risk curve and
    /// who accepted or dismissed its prompts stay, for statistics.
    pub transcript_retention_days: u32,
    /// Days after a call ends before its recording is deleted (0..36500; 0 = keep for ever).
    pub audio_retention_days: u32,
    /// Seconds between retention sweeps (60..86400).
    pub sweep_interval_s: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            transcript_retention_days: 365,
            audio_retention_days: 90,
            sweep_interval_s: 3600,
        }
    }
}

impl StoreConfig {
    /// Checks the ranges; called by [`Config::validate`].
    pub fn validate(&self) -> Result<(), String> {
        for (name, days) in [
            ("transcript_retention_days", self.transcript_retention_days),
            ("audio_retention_days", self.audio_retention_days),
        ] {
            if days > 36_500 {
                return Err(format!(
                    "store.{name} = {days} is over 36500 (use 0 to keep for ever)"
                ));
            }
        }
        if !(60..=86_400).contains(&self.sweep_interval_s) {
            return Err(format!(
                "store.sweep_interval_s = {} is outside 60..86400",
                self.sweep_interval_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::alert::{Alert, Level, QaFlag, Summary};
use crate::domain::alert::{AlertState, Decision};
use crate::domain::call::{EndReason, SourceKind};
use crate::domain::leg::Leg;
use crate::domain::signal::{Signal, SignalKind};

pub use db::{LOCK_FILE, Store};
pub use export::{to_json, to_srt, to_vtt};
pub use query::StoreReader;
pub use schema::DB_FILE;
pub use writer::{Replicated, StoreHandle, StoreWriter, WriterStats};

/// A stored call's own id: the store's row number, unique for ever. (The phone system's
/// `call_id` is not: the sound-card call is always `device`, and a replayed file keeps its name
/// across restarts.)
pub type CallKey = i64;

/// A QA note's id.
pub type NoteId = i64;

/// Why the store could not do something. Each message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("call store {}: {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "call store {} is in use by another callguard process (it holds {})",
        .path.display(),
        .path.with_file_name(LOCK_FILE).display()
    )]
    Locked { path: PathBuf },
    #[error("call store {}: {what}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "call store {} has schema version {found}, newer than this callguard knows ({supported}): \
         upgrade callguard",
        .path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "call store {} has schema version {found}, this callguard needs {expected}: \
         start `callguard serve` once to migrate it",
        .path.display()
    )]
    NeedsMigration {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A cluster message stored before (a redelivery): an expected state, nothing changed.
    #[error("cluster message {0} was stored before")]
    AlreadyApplied(String),
    #[error("call store {}: no call {call_id:?} (events for a call must follow its start)", .path.display())]
    UnknownCall { path: PathBuf, call_id: String },
    #[error("call store {}: no stored call with id {id}", .path.display())]
    NoSuchCall { path: PathBuf, id: CallKey },
    #[error("call store {}: {what}: {why}", .path.display())]
    Invalid {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("the call store's writer thread has stopped")]
    Closed,
    #[error("call store: the write was lost with its batch: {0}")]
    Lost(String),
}

/// `rusqlite` results with the database path and what was being done attached.
pub(crate) trait Ctx<T> {
    fn ctx(self, path: &Path, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, path: &Path, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            what,
            source,
        })
    }
}

/// How a call ended, as stored. `live` while it is going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not ended yet.
    Live,
    /// The phone system said the call is over.
    Hangup,
    /// The connection closed without saying so.
    Disconnected,
    /// The source reported an error (its text is the call's `end_detail`).
    SourceError,
    /// The daemon stopped (crash, kill, power loss) while the call was going on; the end is
    /// the call's last stored event.
    Recovered,
    /// In a cluster: the edge holding the call stopped (its heartbeats ended), so a hub closed
    /// the call with its last state (the edge's name is the call's `end_detail`).
    LostEdge,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Live,
        Outcome::Hangup,
        Outcome::Disconnected,
        Outcome::SourceError,
        Outcome::Recovered,
        Outcome::LostEdge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Live => "live",
            Outcome::Hangup => "hangup",
            Outcome::Disconnected => "disconnected",
            Outcome::SourceError => "source_error",
            Outcome::Recovered => "recovered",
            Outcome::LostEdge => "lost_edge",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The outcome and detail text of an end reason.
    pub fn of(reason: &EndReason) -> (Outcome, Option<String>) {
        match reason {
            EndReason::Hangup => (Outcome::Hangup, None),
            EndReason::Disconnected => (Outcome::Disconnected, None),
            EndReason::SourceError(e) => (Outcome::SourceError, Some(e.clone())),
            EndReason::LostEdge(edge) => (
                Outcome::LostEdge,
                Some(format!("edge {edge} stopped sending heartbeats")),
            ),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call in a list: everything but its contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRow {
    /// The store's id for the call (the `<id>` of `/api/calls/<id>`).
    pub id: CallKey,
    /// The phone system's id.
    pub call_id: String,
    pub source: SourceKind,
    pub legs: Vec<Leg>,
    pub sample_rate: u32,
    /// The source's language, else the first final transcript line's.
    pub language: Option<String>,
    pub agent: Option<String>,
    pub started_unix_ms: u64,
    /// None while the call is live.
    pub ended_unix_ms: Option<u64>,
    /// Call-audio length: the summary's, else the last event's time.
    pub duration_ms: u64,
    pub max_score: f32,
    pub max_level: Level,
    /// Transfer prompts.
    pub alerts: u32,
    pub qa_flags: u32,
    /// Every signal kind seen in the call (kept after the transcript is swept).
    pub reasons: Vec<SignalKind>,
    pub outcome: Outcome,
    /// The source's error text for `source_error`; what happened for `recovered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_detail: Option<String>,
    /// A recording was kept and has not been deleted.
    pub has_audio: bool,
    /// The recording file on the server: never sent to clients.
    #[serde(skip)]
    pub recording_path: Option<PathBuf>,
    /// The recording was deleted by the retention sweep.
    pub audio_deleted: bool,
    /// The transcript, signals, QA flags and notes were deleted by the retention sweep.
    pub transcript_deleted: bool,
    /// With a full-text query: the first matching transcript line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// One final transcript line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRow {
    pub leg: Leg,
    pub start_ms: u64,
    pub end_ms: u64,
    pub at_ms: u64,
    pub lang: String,
    pub text: String,
}

/// A point of the risk-over-time plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskPoint {
    pub at_ms: u64,
    pub score: f32,
    pub level: Level,
}

/// A transfer prompt and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    pub alert_id: String,
    pub at_ms: u64,
    pub level: Level,
    pub score: f32,
    pub state: AlertState,
    /// Re-sent to every supervisor because nobody acted on it in time.
    pub escalated: bool,
    /// Wall-clock time the prompt went out, when the hub reported on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_unix_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The prompt in full (reasons, evidence, suggestion); None once the transcript is swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
}

/// A QA note on a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub id: NoteId,
    pub author: String,
    pub created_unix_ms: u64,
    pub text: String,
}

/// Everything stored about one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallDetail {
    pub call: CallRow,
    /// What the source sent (custom parameters, raw metadata).
    pub metadata: serde_json::Value,
    /// Final transcript lines, in call-time order.
    pub segments: Vec<SegmentRow>,
    pub signals: Vec<Signal>,
    pub risk: Vec<RiskPoint>,
    pub alerts: Vec<AlertRecord>,
    pub qa_flags: Vec<QaFlag>,
    pub notes: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

/// Which calls to list. Every field is optional; the default lists the newest 50.
/// Deserialises from the API's query parameters (`?q=..&level=watch&limit=20`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CallFilter {
    /// Full text over the final transcript lines: words (all must occur somewhere in the call),
    /// `"quoted phrases"` (within one line) and `prefix*`. Chinese words match as written
    /// (`投诉`). There are no operators: punctuation and FTS syntax are plain text.
    pub q: Option<String>,
    /// Calls started at or after this (Unix ms).
    pub from: Option<u64>,
    /// Calls started before this (Unix ms).
    pub to: Option<u64>,
    /// Calls whose highest level reached at least this.
    pub level: Option<Level>,
    /// Calls with a signal (or prompt reason) of this kind.
    pub reason: Option<SignalKind>,
    pub outcome: Option<Outcome>,
    /// Only this agent's calls (set it for agent-scoped tokens).
    pub agent: Option<String>,
    /// Page size, 1..=500 (clamped); 50 by default.
    pub limit: u32,
    pub offset: u64,
}

impl Default for CallFilter {
    fn default() -> Self {
        Self {
            q: None,
            from: None,
            to: None,
            level: None,
            reason: None,
            outcome: None,
            agent: None,
            limit: DEFAULT_PAGE,
            offset: 0,
        }
    }
}

/// Calls per page when the filter does not say.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page.
pub const MAX_PAGE: u32 = 500;

/// One page of a list, newest first, with the number of matches in all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// A recording past its retention, for the caller to delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiredRecording {
    pub id: CallKey,
    pub call_id: String,
    pub path: PathBuf,
}

/// What a retention sweep did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepReport {
    /// Calls whose transcript (and signals, QA flags, notes, full prompts) were deleted now.
    pub transcripts_deleted: u64,
    /// Transcript lines deleted.
    pub segments_deleted: u64,
    /// Recordings past `audio_days` not yet marked deleted: delete each file, then call
    /// [`Store::mark_audio_deleted`]. Until then each sweep lists them again.
    pub expired_recordings: Vec<ExpiredRecording>,
}
