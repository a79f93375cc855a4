//! [`Store`]: the one writing connection to `<data_dir>/callguard.db`.
//!
//! Opening creates the data directory and the database if needed, takes an exclusive lock on
//! `callguard.db.lock` (one writer per database; readers need no lock), sets WAL,
//! `synchronous=NORMAL`, foreign keys and a busy timeout, applies the schema's migrations, and
//! then recovers: every call still `live` (the daemon died mid-call) is marked `recovered`,
//! ended at its last stored event. Everything committed before a crash is kept: WAL with
//! `synchronous=NORMAL` may lose the last transactions on power loss, never consistency.
//!
//! Writes are blocking and meant for one thread (see `writer`). Each method is one
//! transaction; [`Store::record_batch`] and the writer put many writes in one transaction, each
//! in a savepoint of its own, so one bad write is rolled back alone.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::domain::alert::Level;
use crate::domain::alert::{AlertState, AlertStatus};
use crate::domain::call::{CallInfo, EndReason};
use crate::domain::event::Event;
use crate::sinks::store::query;
use crate::sinks::store::schema::{
    self, BUSY_TIMEOUT, DB_FILE, MigrateError, SCHEMA_VERSION, level_num,
};
use crate::sinks::store::{
    CallDetail, CallFilter, CallKey, CallRow, Ctx, ExpiredRecording, NoteId, Outcome, Page,
    StoreError, SweepReport, fts,
};

/// The lock file held by the process that writes the database.
pub const LOCK_FILE: &str = "callguard.db.lock";
/// How often, and how far apart, a held lock is tried again before the store is busy (1 s).
const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The longest QA note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// The longest note author name, in characters.
pub const MAX_AUTHOR_CHARS: usize = 128;

const DAY_MS: u64 = 86_400_000;

/// The writing side of the call store. See the module docs.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Held (locked) for as long as the store is open.
    _lock: File,
    recovered: u64,
    migrated_from: u32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Days a cluster message's id is remembered: past the event stream's retention, after
/// which JetStream cannot redeliver it.
const APPLIED_DAYS: u32 = 2;

/// One write, borrowed: what [`Store`]'s methods and the writer thread apply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write<'a> {
    /// The write, unless a write with this id (a cluster message's) was applied before; then
    /// [`StoreError::AlreadyApplied`] and nothing changes. The time is when it is applied.
    Once(&'a str, u64, &'a Write<'a>),
    CallStarted(&'a CallInfo, u64),
    Event(&'a Event),
    AlertDecided(&'a AlertStatus),
    CallEnded(&'a str, &'a EndReason, u64),
    /// A call a hub ended as `lost_edge` is going on after all (its edge was cut off).
    CallResumed(&'a str),
    SetRecording(&'a str, &'a Path),
    AddNote(CallKey, &'a str, &'a str, u64),
    MarkAudioDeleted(CallKey),
    DeleteCall(CallKey),
}

/// What a batch did: how many writes were applied and why the others were not.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub written: usize,
    /// Index in the batch and error of each write that was rolled back.
    pub failed: Vec<(usize, StoreError)>,
}

pub(crate) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn score(v: f32) -> f64 {
    if v.is_finite() { f64::from(v) } else { 0.0 }
}

/// A serde unit enum's name (`"customer"`, `"twilio"`).
pub(crate) fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Only the project's own serde types are stored, which cannot fail to serialise
    // (non-finite floats become null); never panic if one could.
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn alert_state(s: AlertState) -> &'static str {
    match s {
        AlertState::Open => "open",
        AlertState::Accepted => "accepted",
        AlertState::Dismissed => "dismissed",
    }
}

/// Adds a signal kind to `calls.reasons` (`,kind,kind,`) if it is not there yet: SQL for an
/// `UPDATE calls SET reasons = ...` with the kind as `?2`.
const ADD_REASON: &str = "CASE WHEN instr(reasons, ',' || ?2 || ',') > 0 THEN reasons \
                          ELSE reasons || ?2 || ',' END";

impl Store {
    /// Opens (creating if needed) the store of `data_dir`: lock, pragmas, migrations, recovery.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        // Transcripts are personal data: the directory and the files are the owner's only
        // (SQLite gives the WAL and shared-memory files the database file's mode).
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(data_dir).map_err(|source| StoreError::Io {
            path: path.clone(),
            what: "cannot create the data directory",
            source,
        })?;
        if !path.exists() {
            let mut opts = OpenOptions::new();
            opts.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            opts.open(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                what: "cannot create the database file",
                source,
            })?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(LOCK_FILE))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                what: "cannot open the lock file",
                source,
            })?;
        // A lock held a moment longer than its store lives is not another daemon: a child
        // process forked elsewhere in this process (a test running sox, `pip`) shares the lock's
        // file description until it execs, and a daemon being restarted may still be exiting.
        // So a held lock is retried briefly before the store is called busy.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries < LOCK_RETRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
                Err(TryLockError::Error(source)) => {
                    return Err(StoreError::Io {
                        path,
                        what: "cannot lock the lock file",
                        source,
                    });
                }
            }
        }
        let mut conn = Connection::open(&path).ctx(&path, "cannot open the database")?;
        configure(&conn, &path)?;
        let migrated_from = match schema::migrate(&mut conn, SCHEMA_VERSION) {
            Ok(v) => v,
            Err(MigrateError::TooNew(found)) => {
                return Err(StoreError::TooNew {
                    path,
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Err(MigrateError::Sqlite(e)) => {
                return Err(e).ctx(&path, "cannot migrate the schema");
            }
        };
        let recovered = conn
            .execute(
                "UPDATE calls SET outcome = 'recovered',
                     end_detail = 'callguard stopped before the call ended',
                     ended_unix_ms = started_unix_ms + last_at_ms,
                     duration_ms = max(duration_ms, last_at_ms)
                 WHERE outcome = 'live'",
                [],
            )
            .ctx(&path, "cannot recover unfinished calls")? as u64;
        if recovered > 0 {
            tracing::warn!(
                calls = recovered,
                "call store: calls left open by an earlier run marked recovered"
            );
        }
        Ok(Store {
            conn,
            path,
            _lock: lock,
            recovered,
            migrated_from,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls that [`Store::open`] found unfinished and marked `recovered`.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// The schema version the database had before [`Store::open`] migrated it (0: new).
    pub fn migrated_from(&self) -> u32 {
        self.migrated_from
    }

    /// A call began: a new stored call, returned. A call with the same `call_id` still live
    /// (its end was never reported) is closed first, as `recovered`.
    pub fn call_started(
        &mut self,
        info: &CallInfo,
        started_unix_ms: u64,
    ) -> Result<CallKey, StoreError> {
        self.one(Write::CallStarted(info, started_unix_ms))
    }

    /// Records one event of a started call. Partial transcripts are ignored.
    pub fn record(&mut self, event: &Event) -> Result<(), StoreError> {
        self.one(Write::Event(event)).map(drop)
    }

    /// Records events in one transaction, each in a savepoint: a failing event is rolled back
    /// and reported, the others are kept. `Err` only when the transaction itself failed.
    pub fn record_batch(&mut self, events: &[Event]) -> Result<BatchResult, StoreError> {
        let writes: Vec<Write<'_>> = events.iter().map(Write::Event).collect();
        let (results, result) = self.apply(&writes);
        result?;
        let mut out = BatchResult::default();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) => out.written += 1,
                Err(e) => out.failed.push((i, e)),
            }
        }
        Ok(out)
    }

    /// A supervisor accepted or dismissed a prompt, or the hub re-sent it escalated. A
    /// decision is never overwritten by a later `open` status.
    pub fn alert_decided(&mut self, status: &AlertStatus) -> Result<(), StoreError> {
        self.one(Write::AlertDecided(status)).map(drop)
    }

    /// The call ended. Ending an already ended call changes nothing.
    pub fn call_ended(
        &mut self,
        call_id: &str,
        reason: &EndReason,
        ended_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.one(Write::CallEnded(call_id, reason, ended_unix_ms))
            .map(drop)
    }

    /// Where the call's recording is.
    pub fn set_recording(&mut self, call_id: &str, path: &Path) -> Result<(), StoreError> {
        self.one(Write::SetRecording(call_id, path)).map(drop)
    }

    /// Adds a QA note to a stored call. Author: 1..128 characters; text: 1..10000.
    pub fn add_note(
        &mut self,
        id: CallKey,
        author: &str,
        text: &str,
        now_unix_ms: u64,
    ) -> Result<NoteId, StoreError> {
        self.one(Write::AddNote(id, author, text, now_unix_ms))
    }

    /// Notes that the call's recording file is gone (after the sweep listed it).
    pub fn mark_audio_deleted(&mut self, id: CallKey) -> Result<(), StoreError> {
        self.one(Write::MarkAudioDeleted(id)).map(drop)
    }

    /// Deletes an ended call and everything stored about it (transcript, index, signals,
    /// prompts, QA flags and notes). A live call is refused. The recording file is the
    /// caller's to delete (read [`CallRow::recording_path`](super::CallRow) first).
    pub fn delete_call(&mut self, id: CallKey) -> Result<(), StoreError> {
        self.one(Write::DeleteCall(id)).map(drop)
    }

    /// The retention sweep, in one transaction. For ended calls that ended more than
    /// `transcript_days` before `now_unix_ms`: deletes the transcript, signals, QA flags, notes
    /// and the prompts' full text (the call row, its risk points, its prompts' decisions and
    /// its reason kinds stay, for statistics). Lists the recordings of calls that ended more
    /// than `audio_days` ago and are not yet marked deleted. 0 days keeps for ever.
    pub fn sweep(
        &mut self,
        now_unix_ms: u64,
        transcript_days: u32,
        audio_days: u32,
    ) -> Result<SweepReport, StoreError> {
        let path = self.path.clone();
        let cutoff = |days: u32| ms(now_unix_ms.saturating_sub(u64::from(days) * DAY_MS));
        let mut report = SweepReport::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(&path, "cannot begin the sweep")?;
        if transcript_days > 0 {
            let cut = cutoff(transcript_days);
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS sweep_calls (id INTEGER PRIMARY KEY)",
                [],
            )
            .ctx(&path, "sweep")?;
            tx.execute("DELETE FROM temp.sweep_calls", [])
                .ctx(&path, "sweep")?;
            report.transcripts_deleted =
                tx.execute(
                    "INSERT INTO temp.sweep_calls SELECT id FROM calls
                     WHERE outcome != 'live' AND transcript_deleted = 0 AND ended_unix_ms < ?1",
                    [cut],
                )
                .ctx(&path, "sweep: selecting calls")? as u64;
            if report.transcripts_deleted > 0 {
                tx.execute(
                    "DELETE FROM segments_fts WHERE rowid IN (SELECT id FROM segments
                     WHERE call IN (SELECT id FROM temp.sweep_calls))",
                    [],
                )
                .ctx(&path, "sweep: deleting the text index")?;
                report.segments_deleted =
                    tx.execute(
                        "DELETE FROM segments WHERE call IN (SELECT id FROM temp.sweep_calls)",
                        [],
                    )
                    .ctx(&path, "sweep: deleting transcripts")? as u64;
                tx.execute_batch(
                    "DELETE FROM signals WHERE call IN (SELECT id FROM temp.sweep_calls);
                     DELETE FROM qa_flags WHERE call IN (SELECT id FROM temp.sweep_calls);
                     DELETE FROM qa_notes WHERE call IN (SELECT id FROM temp.sweep_calls);
                     UPDATE alerts SET body = NULL WHERE call IN (SELECT id FROM temp.sweep_calls);
                     UPDATE calls SET transcript_deleted = 1
                         WHERE id IN (SELECT id FROM temp.sweep_calls);
                     DELETE FROM temp.sweep_calls;",
                )
                .ctx(&path, "sweep: deleting call contents")?;
            }
        }
        // Cluster message ids outlive any redelivery (JetStream keeps events a day).
        tx.execute(
            "DELETE FROM applied WHERE at_unix_ms < ?1",
            [cutoff(APPLIED_DAYS)],
        )
        .ctx(&path, "sweep: forgetting old cluster message ids")?;
        if audio_days > 0 {
            let mut stmt = tx
                .prepare(
                    "SELECT id, call_id, recording_path FROM calls
                     WHERE recording_path IS NOT NULL AND audio_deleted = 0
                       AND outcome != 'live' AND ended_unix_ms < ?1
                     ORDER BY id",
                )
                .ctx(&path, "sweep: listing recordings")?;
            let rows = stmt
                .query_map([cutoff(audio_days)], |r| {
                    Ok(ExpiredRecording {
                        id: r.get(0)?,
                        call_id: r.get(1)?,
                        path: PathBuf::from(r.get::<_, String>(2)?),
                    })
                })
                .ctx(&path, "sweep: listing recordings")?;
            for row in rows {
                report
                    .expired_recordings
                    .push(row.ctx(&path, "sweep: listing recordings")?);
            }
        }
        tx.commit().ctx(&path, "cannot commit the sweep")?;
        if report.transcripts_deleted > 0 {
            // Keeps the planner's statistics fresh; harmless when nothing is due.
            self.conn
                .execute_batch("PRAGMA optimize")
                .ctx(&path, "sweep: optimize")?;
        }
        Ok(report)
    }

    /// A page of stored calls; see [`CallFilter`].
    pub fn list_calls(&self, filter: &CallFilter) -> Result<Page<CallRow>, StoreError> {
        query::list_calls(&self.conn, &self.path, filter)
    }

    /// Everything stored about a call.
    pub fn get_call(&self, id: CallKey) -> Result<Option<CallDetail>, StoreError> {
        query::get_call(&self.conn, &self.path, id)
    }

    /// The stored calls with this phone-system id, newest first.
    pub fn find_calls(&self, call_id: &str) -> Result<Vec<CallKey>, StoreError> {
        query::find_calls(&self.conn, &self.path, call_id)
    }

    fn one(&mut self, write: Write<'_>) -> Result<i64, StoreError> {
        let (mut results, result) = self.apply(&[write]);
        result?;
        results.pop().unwrap_or(Ok(0))
    }

    /// Applies writes in one transaction, each in its own savepoint. Returns each write's
    /// result (a new id, or 0) and the transaction's; when the transaction fails, nothing was
    /// kept, whatever the writes' results say.
    pub(crate) fn apply(
        &mut self,
        writes: &[Write<'_>],
    ) -> (Vec<Result<i64, StoreError>>, Result<(), StoreError>) {
        let path = self.path.clone();
        // Immediate: the write lock is taken (waiting out the busy timeout) at the start, so
        // no write fails halfway for a lock.
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return (Vec::new(), Err(e).ctx(&path, "cannot begin a transaction")),
        };
        let mut results = Vec::with_capacity(writes.len());
        for w in writes {
            let sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => return (results, Err(e).ctx(&path, "cannot begin a savepoint")),
            };
            let r = write_one(&sp, &path, *w);
            let r = match r {
                Ok(v) => sp
                    .commit()
                    .ctx(&path, "cannot release a savepoint")
                    .map(|()| v),
                // Dropping the savepoint rolls it back.
                Err(e) => Err(e),
            };
            results.push(r);
        }
        let committed = tx.commit().ctx(&path, "cannot commit");
        (results, committed)
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(path, "cannot set the busy timeout")?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .ctx(path, "cannot switch to WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid {
            path: path.to_owned(),
            what: "journal mode",
            why: format!("SQLite kept journal_mode {mode:?} instead of WAL"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .ctx(path, "cannot set pragmas")
}

/// The stored call an event of `call_id` belongs to: the live one, else the latest.
fn resolve(conn: &Connection, path: &Path, call_id: &str) -> Result<CallKey, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM calls WHERE call_id = ?1 ORDER BY outcome = 'live' DESC, id DESC LIMIT 1",
    )
    .and_then(|mut s| s.query_row([call_id], |r| r.get(0)).optional())
    .ctx(path, "cannot look the call up")?
    .ok_or_else(|| StoreError::UnknownCall {
        path: path.to_owned(),
        call_id: call_id.to_owned(),
    })
}

fn exec(
    conn: &Connection,
    path: &Path,
    what: &'static str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .ctx(path, what)
}

fn write_one(conn: &Connection, path: &Path, w: Write<'_>) -> Result<i64, StoreError> {
    match w {
        Write::Once(id, now, inner) => {
            let fresh = exec(
                conn,
                path,
                "noting a cluster message",
                "INSERT OR IGNORE INTO applied (id, at_unix_ms) VALUES (?1, ?2)",
                params![id, ms(now)],
            )?;
            if fresh == 0 {
                return Err(StoreError::AlreadyApplied(id.to_owned()));
            }
            write_one(conn, path, *inner)
        }
        Write::CallStarted(info, started) => {
            exec(
                conn,
                path,
                "closing the call's earlier unfinished run",
                "UPDATE calls SET outcome = 'recovered',
                     end_detail = 'a new call with the same id started before this one ended',
                     ended_unix_ms = started_unix_ms + last_at_ms,
                     duration_ms = max(duration_ms, last_at_ms)
                 WHERE call_id = ?1 AND outcome = 'live'",
                [&info.call_id],
            )?;
            exec(
                conn,
                path,
                "storing a new call",
                "INSERT INTO calls (call_id, source, legs, sample_rate, language, agent, metadata,
                     started_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    info.call_id,
                    name(&info.source),
                    json(&info.legs),
                    info.sample_rate,
                    info.lang.as_deref().filter(|l| !l.is_empty()),
                    info.agent.as_deref().filter(|a| !a.is_empty()),
                    json(&info.metadata),
                    ms(started),
                ],
            )?;
            Ok(conn.last_insert_rowid())
        }
        Write::Event(event) => write_event(conn, path, event).map(|()| 0),
        Write::AlertDecided(status) => {
            let id = resolve(conn, path, &status.call_id)?;
            let d = status.decision.as_ref();
            exec(
                conn,
                path,
                "storing an alert decision",
                "INSERT INTO alerts (call, alert_id, state, escalated, fired_unix_ms, decided_by,
                     decided_role, decided_unix_ms, time_to_ack_ms, decision_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (call, alert_id) DO UPDATE SET
                     state = excluded.state, escalated = max(escalated, excluded.escalated),
                     fired_unix_ms = excluded.fired_unix_ms, decided_by = excluded.decided_by,
                     decided_role = excluded.decided_role,
                     decided_unix_ms = excluded.decided_unix_ms,
                     time_to_ack_ms = excluded.time_to_ack_ms,
                     decision_reason = excluded.decision_reason
                 WHERE alerts.state = 'open' OR excluded.state != 'open'",
                params![
                    id,
                    status.alert_id,
                    alert_state(status.state),
                    status.escalated,
                    ms(status.fired_unix_ms),
                    d.map(|d| d.by.as_str()),
                    d.map(|d| d.role.as_str()),
                    d.map(|d| ms(d.at_unix_ms)),
                    d.map(|d| ms(d.time_to_ack_ms)),
                    d.map(|d| d.reason.as_str()).filter(|r| !r.is_empty()),
                ],
            )?;
            exec(
                conn,
                path,
                "counting alerts",
                "UPDATE calls SET alert_count = (SELECT count(*) FROM alerts WHERE call = ?1)
                 WHERE id = ?1",
                [id],
            )?;
            Ok(0)
        }
        Write::CallEnded(call_id, reason, ended) => {
            let id = resolve(conn, path, call_id)?;
            let (outcome, detail) = Outcome::of(reason);
            exec(
                conn,
                path,
                "ending the call",
                "UPDATE calls SET outcome = ?2, end_detail = ?3, ended_unix_ms = ?4,
                     duration_ms = max(duration_ms, last_at_ms)
                 WHERE id = ?1 AND outcome = 'live'",
                params![id, outcome.as_str(), detail, ms(ended)],
            )?;
            Ok(0)
        }
        Write::CallResumed(call_id) => {
            let id = resolve(conn, path, call_id)?;
            exec(
                conn,
                path,
                "resuming the call",
                "UPDATE calls SET outcome = 'live', end_detail = NULL, ended_unix_ms = NULL
                 WHERE id = ?1 AND outcome = 'lost_edge'",
                [id],
            )?;
            Ok(0)
        }
        Write::SetRecording(call_id, rec) => {
            let id = resolve(conn, path, call_id)?;
            exec(
                conn,
                path,
                "storing the recording path",
                "UPDATE calls SET recording_path = ?2, audio_deleted = 0 WHERE id = ?1",
                params![id, rec.to_string_lossy()],
            )?;
            Ok(0)
        }
        Write::AddNote(id, author, text, now) => {
            let bad = |what: &'static str, why: &str| StoreError::Invalid {
                path: path.to_owned(),
                what,
                why: why.to_owned(),
            };
            let author = author.trim();
            let text = text.trim();
            if author.is_empty() || author.chars().count() > MAX_AUTHOR_CHARS {
                return Err(bad("note author", "must be 1..128 characters"));
            }
            if author.chars().any(char::is_control) {
                return Err(bad("note author", "must not contain control characters"));
            }
            if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
                return Err(bad("note", "must be 1..10000 characters"));
            }
            if text.contains('\0') {
                return Err(bad("note", "must not contain NUL characters"));
            }
            let n = exec(
                conn,
                path,
                "storing a note",
                "INSERT INTO qa_notes (call, author, created_unix_ms, text)
                 SELECT id, ?2, ?3, ?4 FROM calls WHERE id = ?1",
                params![id, author, ms(now), text],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchCall {
                    path: path.to_owned(),
                    id,
                });
            }
            Ok(conn.last_insert_rowid())
        }
        Write::MarkAudioDeleted(id) => {
            let n = exec(
                conn,
                path,
                "marking the recording deleted",
                "UPDATE calls SET audio_deleted = 1 WHERE id = ?1",
                [id],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchCall {
                    path: path.to_owned(),
                    id,
                });
            }
            Ok(0)
        }
        Write::DeleteCall(id) => {
            let live: Option<String> = conn
                .prepare_cached("SELECT outcome FROM calls WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
                .ctx(path, "finding the call to delete")?;
            match live.as_deref() {
                None => {
                    return Err(StoreError::NoSuchCall {
                        path: path.to_owned(),
                        id,
                    });
                }
                Some("live") => {
                    return Err(StoreError::Invalid {
                        path: path.to_owned(),
                        what: "deleting a call",
                        why: "the call is still live".into(),
                    });
                }
                Some(_) => {}
            }
            // The text index is not a foreign-key child: its rows go first, by segment id.
            exec(
                conn,
                path,
                "deleting the call's text index",
                "DELETE FROM segments_fts WHERE rowid IN (SELECT id FROM segments WHERE call = ?1)",
                [id],
            )?;
            exec(
                conn,
                path,
                "deleting the call",
                "DELETE FROM calls WHERE id = ?1",
                [id],
            )?;
            Ok(0)
        }
    }
}

fn write_event(conn: &Connection, path: &Path, event: &Event) -> Result<(), StoreError> {
    if let Event::Transcript(t) = event
        && (!t.is_final || t.text.trim().is_empty())
    {
        return Ok(());
    }
    let id = resolve(conn, path, event.call_id())?;
    let at = ms(event.at_ms());
    exec(
        conn,
        path,
        "updating the call",
        "UPDATE calls SET last_at_ms = max(last_at_ms, ?2) WHERE id = ?1",
        params![id, at],
    )?;
    let add_reason = |kind: &str| {
        exec(
            conn,
            path,
            "updating the call's reasons",
            &format!("UPDATE calls SET reasons = {ADD_REASON} WHERE id = ?1"),
            params![id, kind],
        )
    };
    let raise = |score_: f32, level: Level| {
        exec(
            conn,
            path,
            "updating the call's risk",
            "UPDATE calls SET max_score = max(max_score, ?2), max_level = max(max_level, ?3)
             WHERE id = ?1",
            params![id, score(score_), level_num(level)],
        )
    };
    match event {
        Event::Transcript(t) => {
            exec(
                conn,
                path,
                "storing a transcript line",
                "INSERT INTO segments (call, leg, start_ms, end_ms, at_ms, lang, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    t.leg.as_str(),
                    ms(t.start_ms),
                    ms(t.end_ms),
                    at,
                    t.lang,
                    t.text
                ],
            )?;
            let seg = conn.last_insert_rowid();
            exec(
                conn,
                path,
                "indexing a transcript line",
                "INSERT INTO segments_fts (rowid, text) VALUES (?1, ?2)",
                params![seg, fts::index_text(&t.text)],
            )?;
            exec(
                conn,
                path,
                "updating the call's language",
                "UPDATE calls SET language = coalesce(language, nullif(?2, '')) WHERE id = ?1",
                params![id, t.lang],
            )?;
        }
        Event::Signal(s) => {
            exec(
                conn,
                path,
                "storing a signal",
                "INSERT INTO signals (call, kind, leg, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    s.signal.kind.as_str(),
                    s.signal.leg.as_str(),
                    at,
                    json(&s.signal)
                ],
            )?;
            add_reason(s.signal.kind.as_str())?;
        }
        Event::Risk(r) => {
            exec(
                conn,
                path,
                "storing a risk point",
                "INSERT INTO risk_points (call, at_ms, score, level) VALUES (?1, ?2, ?3, ?4)",
                params![id, at, score(r.score), level_num(r.level)],
            )?;
            raise(r.score, r.level)?;
        }
        Event::Alert(a) => {
            exec(
                conn,
                path,
                "storing an alert",
                "INSERT INTO alerts (call, alert_id, at_ms, level, score, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (call, alert_id) DO UPDATE SET at_ms = excluded.at_ms,
                     level = excluded.level, score = excluded.score, body = excluded.body",
                params![
                    id,
                    a.alert_id,
                    at,
                    level_num(a.level),
                    score(a.score),
                    json(a)
                ],
            )?;
            exec(
                conn,
                path,
                "counting alerts",
                "UPDATE calls SET alert_count = (SELECT count(*) FROM alerts WHERE call = ?1)
                 WHERE id = ?1",
                [id],
            )?;
            raise(a.score, a.level)?;
            for r in &a.reasons {
                add_reason(r.kind.as_str())?;
            }
        }
        Event::QaFlag(f) => {
            exec(
                conn,
                path,
                "storing a QA flag",
                "INSERT INTO qa_flags (call, kind, leg, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, f.kind.as_str(), f.leg.as_str(), at, json(f)],
            )?;
            exec(
                conn,
                path,
                "counting QA flags",
                "UPDATE calls SET qa_flag_count = qa_flag_count + 1 WHERE id = ?1",
                [id],
            )?;
            add_reason(f.kind.as_str())?;
        }
        Event::Summary(s) => {
            exec(
                conn,
                path,
                "storing the summary",
                "UPDATE calls SET summary = ?2, duration_ms = max(duration_ms, ?3) WHERE id = ?1",
                params![id, json(s), ms(s.duration_ms)],
            )?;
            raise(s.max_score, s.max_level)?;
        }
    }
    Ok(())
}
