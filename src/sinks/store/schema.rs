//! The schema, as numbered migration steps. `PRAGMA user_version` is the number of the last
//! step applied; [`migrate`] applies the missing ones in order, each in its own immediate
//! transaction, so a database is always at one version or the next, never between. A step is
//! never edited once released: a change is a new step at the end of [`MIGRATIONS`].
//!
//! Conventions: times in calls are call-audio milliseconds (`*_ms`), wall-clock times Unix
//! milliseconds (`*_unix_ms`); levels are integers (0 calm, 1 watch, 2 escalate) so that "at
//! least watch" is a comparison; signal kinds of a call are kept in `calls.reasons` as
//! `,kind,kind,` so that the reason filter survives the transcript sweep; events are kept whole
//! as JSON (`body`) next to the columns that queries need.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::domain::alert::Level;
use crate::sinks::store::fts;

/// The database file in the data directory.
pub const DB_FILE: &str = "callguard.db";

/// How long a statement waits for another connection's lock before failing.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A risk level as the schema stores it: an integer, so that "at least watch" is a comparison.
pub(crate) fn level_num(l: Level) -> i64 {
    match l {
        Level::Calm => 0,
        Level::Watch => 1,
        Level::Escalate => 2,
    }
}

/// One step: what it does, and the function that does it inside the step's transaction.
pub struct Migration {
    pub version: u32,
    pub what: &'static str,
    pub apply: fn(&Transaction) -> rusqlite::Result<()>,
}

/// Every step, in order; `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "calls, transcript segments, signals, risk points, alerts, QA flags and notes",
        apply: v1_tables,
    },
    Migration {
        version: 2,
        what: "full-text index over transcript segments (Chinese and English), filled from the segments",
        apply: v2_fulltext,
    },
    Migration {
        version: 3,
        what: "ids of the cluster messages already stored, so a redelivered one is stored once",
        apply: v3_applied,
    },
];

/// The version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn v1_tables(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "
        CREATE TABLE calls (
            id                 INTEGER PRIMARY KEY,
            call_id            TEXT NOT NULL,
            source             TEXT NOT NULL,
            legs               TEXT NOT NULL,              -- JSON array of legs
            sample_rate        INTEGER NOT NULL,
            language           TEXT,
            agent              TEXT,
            metadata           TEXT NOT NULL DEFAULT 'null', -- JSON
            started_unix_ms    INTEGER NOT NULL,
            ended_unix_ms      INTEGER,                    -- NULL while live
            last_at_ms         INTEGER NOT NULL DEFAULT 0, -- latest event time, for recovery
            duration_ms        INTEGER NOT NULL DEFAULT 0,
            max_score          REAL NOT NULL DEFAULT 0,
            max_level          INTEGER NOT NULL DEFAULT 0,
            alert_count        INTEGER NOT NULL DEFAULT 0,
            qa_flag_count      INTEGER NOT NULL DEFAULT 0,
            reasons            TEXT NOT NULL DEFAULT ',',
            outcome            TEXT NOT NULL DEFAULT 'live',
            end_detail         TEXT,
            summary            TEXT,                       -- JSON of the summary event
            recording_path     TEXT,
            audio_deleted      INTEGER NOT NULL DEFAULT 0,
            transcript_deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX calls_started ON calls(started_unix_ms, id);
        CREATE INDEX calls_call_id ON calls(call_id, id);
        CREATE INDEX calls_agent ON calls(agent, started_unix_ms);
        CREATE INDEX calls_ended ON calls(ended_unix_ms);
        CREATE INDEX calls_live ON calls(outcome) WHERE outcome = 'live';

        CREATE TABLE segments (
            id       INTEGER PRIMARY KEY,
            call     INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            leg      TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms   INTEGER NOT NULL,
            at_ms    INTEGER NOT NULL,
            lang     TEXT NOT NULL,
            text     TEXT NOT NULL
        );
        CREATE INDEX segments_call ON segments(call, start_ms);

        CREATE TABLE signals (
            id    INTEGER PRIMARY KEY,
            call  INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            kind  TEXT NOT NULL,
            leg   TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            body  TEXT NOT NULL
        );
        CREATE INDEX signals_call ON signals(call, at_ms);

        CREATE TABLE risk_points (
            id    INTEGER PRIMARY KEY,
            call  INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            at_ms INTEGER NOT NULL,
            score REAL NOT NULL,
            level INTEGER NOT NULL
        );
        CREATE INDEX risk_points_call ON risk_points(call, at_ms);

        CREATE TABLE alerts (
            id              INTEGER PRIMARY KEY,
            call            INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            alert_id        TEXT NOT NULL,
            at_ms           INTEGER NOT NULL DEFAULT 0,
            level           INTEGER NOT NULL DEFAULT 2,
            score           REAL NOT NULL DEFAULT 0,
            body            TEXT,                   -- the alert event; NULL once swept
            state           TEXT NOT NULL DEFAULT 'open',
            escalated       INTEGER NOT NULL DEFAULT 0,
            fired_unix_ms   INTEGER,
            decided_by      TEXT,
            decided_role    TEXT,
            decided_unix_ms INTEGER,
            time_to_ack_ms  INTEGER,
            decision_reason TEXT,
            UNIQUE (call, alert_id)
        );

        CREATE TABLE qa_flags (
            id    INTEGER PRIMARY KEY,
            call  INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            kind  TEXT NOT NULL,
            leg   TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            body  TEXT NOT NULL
        );
        CREATE INDEX qa_flags_call ON qa_flags(call, at_ms);

        CREATE TABLE qa_notes (
            id              INTEGER PRIMARY KEY,
            call            INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            author          TEXT NOT NULL,
            created_unix_ms INTEGER NOT NULL,
            text            TEXT NOT NULL
        );
        CREATE INDEX qa_notes_call ON qa_notes(call, created_unix_ms);
        ",
    )
}

fn v2_fulltext(tx: &Transaction) -> rusqlite::Result<()> {
    // Contentless: the text lives in `segments`; the index holds the spaced copy
    // (`fts::index_text`) under the segment's id, and rows can still be deleted.
    tx.execute_batch(
        "CREATE VIRTUAL TABLE segments_fts USING fts5(
             text,
             content = '',
             contentless_delete = 1,
             tokenize = 'porter unicode61 remove_diacritics 2'
         );",
    )?;
    let mut read = tx.prepare("SELECT id, text FROM segments")?;
    let mut write = tx.prepare("INSERT INTO segments_fts(rowid, text) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let text: String = row.get(1)?;
        write.execute(rusqlite::params![id, fts::index_text(&text)])?;
    }
    Ok(())
}

fn v3_applied(tx: &Transaction) -> rusqlite::Result<()> {
    // One row per cluster message a hub stored (`callguard.evt.*`, docs/cluster.md); pruned by
    // the retention sweep once JetStream can no longer redeliver it.
    tx.execute_batch(
        "CREATE TABLE applied (
             id          TEXT PRIMARY KEY,
             at_unix_ms  INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX applied_at ON applied(at_unix_ms);",
    )
}

/// The database's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Why [`migrate`] stopped.
#[derive(Debug)]
pub enum MigrateError {
    Sqlite(rusqlite::Error),
    /// The database is newer than this build.
    TooNew(u32),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// Brings the database to `target` (at most [`SCHEMA_VERSION`]) and returns the version it
/// had. Each step runs in an immediate transaction that re-reads the version, so two processes
/// migrating at once apply each step once.
pub fn migrate(conn: &mut Connection, target: u32) -> Result<u32, MigrateError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(found));
    }
    for step in MIGRATIONS.iter().take(target as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? >= step.version {
            continue;
        }
        (step.apply)(&tx)?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
        tracing::info!(
            version = step.version,
            what = step.what,
            "call store migrated"
        );
    }
    Ok(found)
}
