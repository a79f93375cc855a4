//! The read side: lists of calls with filters and paging, one call in full. Used through
//! [`Store`](super::Store) by the writing process, or through a [`StoreReader`], a read-only
//! connection of its own (WAL lets readers work while the writer writes; open one per thread).

use std::path::{Path, PathBuf};

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params_from_iter};

use crate::domain::alert::{AlertState, Decision};
use crate::domain::alert::{Level, QaFlag, Summary};
use crate::domain::call::SourceKind;
use crate::domain::leg::Leg;
use crate::domain::signal::{Signal, SignalKind};
use crate::sinks::store::schema::{self, BUSY_TIMEOUT, DB_FILE, SCHEMA_VERSION, level_num};
use crate::sinks::store::{
    AlertRecord, CallDetail, CallFilter, CallKey, CallRow, Ctx, MAX_PAGE, Note, Outcome, Page,
    RiskPoint, SegmentRow, StoreError, fts,
};

/// A read-only connection to the call store.
pub struct StoreReader {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("path", &self.path)
            .finish()
    }
}

impl StoreReader {
    /// Opens the store of `data_dir` for reading. It must exist and be at this build's schema
    /// version (the writing [`Store`](super::Store) creates and migrates it).
    pub fn open(data_dir: &Path) -> Result<StoreReader, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Io {
                path,
                what: "no call store here",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        // Read-write flags so that SQLite may create the WAL index if no writer is running;
        // `query_only` then refuses any write.
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .ctx(&path, "cannot open the database")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx(&path, "cannot set the busy timeout")?;
        conn.execute_batch("PRAGMA query_only = ON")
            .ctx(&path, "cannot set query_only")?;
        let found = schema::version(&conn).ctx(&path, "cannot read the schema version")?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::NeedsMigration {
                path,
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(StoreReader { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A page of stored calls; see [`CallFilter`].
    pub fn list_calls(&self, filter: &CallFilter) -> Result<Page<CallRow>, StoreError> {
        list_calls(&self.conn, &self.path, filter)
    }

    /// Everything stored about a call.
    pub fn get_call(&self, id: CallKey) -> Result<Option<CallDetail>, StoreError> {
        get_call(&self.conn, &self.path, id)
    }

    /// The stored calls with this phone-system id, newest first.
    pub fn find_calls(&self, call_id: &str) -> Result<Vec<CallKey>, StoreError> {
        find_calls(&self.conn, &self.path, call_id)
    }
}

const CALL_COLUMNS: &str = "c.id, c.call_id, c.source, c.legs, c.sample_rate, c.language, \
    c.agent, c.started_unix_ms, c.ended_unix_ms, c.duration_ms, c.max_score, c.max_level, \
    c.alert_count, c.qa_flag_count, c.reasons, c.outcome, c.end_detail, c.recording_path, \
    c.audio_deleted, c.transcript_deleted";

/// Segments (by id) whose text matches an FTS5 expression bound at `?n`.
fn arg(v: Value, args: &mut Vec<Value>) -> usize {
    args.push(v);
    args.len()
}

fn fts_segments(n: usize) -> String {
    format!("SELECT rowid FROM segments_fts WHERE segments_fts MATCH ?{n}")
}

pub(crate) fn list_calls(
    conn: &Connection,
    path: &Path,
    filter: &CallFilter,
) -> Result<Page<CallRow>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(from) = filter.from {
        let n = arg(Value::Integer(super::db::ms(from)), &mut args);
        clauses.push(format!("c.started_unix_ms >= ?{n}"));
    }
    if let Some(to) = filter.to {
        let n = arg(Value::Integer(super::db::ms(to)), &mut args);
        clauses.push(format!("c.started_unix_ms < ?{n}"));
    }
    if let Some(level) = filter.level {
        let n = arg(Value::Integer(level_num(level)), &mut args);
        clauses.push(format!("c.max_level >= ?{n}"));
    }
    if let Some(kind) = filter.reason {
        let n = arg(Value::Text(format!(",{},", kind.as_str())), &mut args);
        clauses.push(format!("instr(c.reasons, ?{n}) > 0"));
    }
    if let Some(outcome) = filter.outcome {
        let n = arg(Value::Text(outcome.as_str().to_owned()), &mut args);
        clauses.push(format!("c.outcome = ?{n}"));
    }
    if let Some(agent) = &filter.agent {
        let n = arg(Value::Text(agent.clone()), &mut args);
        clauses.push(format!("c.agent = ?{n}"));
    }
    let terms = filter
        .q
        .as_deref()
        .map(fts::match_terms)
        .unwrap_or_default();
    for term in &terms {
        let n = arg(Value::Text(term.clone()), &mut args);
        clauses.push(format!(
            "c.id IN (SELECT s.call FROM segments s WHERE s.id IN ({}))",
            fts_segments(n)
        ));
    }
    let where_ = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };

    let total: i64 = conn
        .prepare(&format!("SELECT count(*) FROM calls c {where_}"))
        .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
        .ctx(path, "cannot count calls")?;

    let limit = filter.limit.clamp(1, MAX_PAGE);
    let offset = filter.offset.min(i64::MAX as u64);
    let n_limit = arg(Value::Integer(i64::from(limit)), &mut args);
    let n_offset = arg(Value::Integer(offset as i64), &mut args);
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM calls c {where_}
         ORDER BY c.started_unix_ms DESC, c.id DESC LIMIT ?{n_limit} OFFSET ?{n_offset}"
    );
    let mut stmt = conn.prepare(&sql).ctx(path, "cannot list calls")?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), call_row)
        .ctx(path, "cannot list calls")?;
    let mut items = Vec::new();
    for row in rows {
        items.push(row.ctx(path, "cannot read a call")?);
    }
    if let Some(first) = terms.first()
        && !items.is_empty()
    {
        // One pass over the text index for the whole page (a query per call would run the
        // match once per call): every matching line of these calls, the earliest kept.
        let ids: Vec<String> = items.iter().map(|c| c.id.to_string()).collect();
        let mut snip = conn
            .prepare(&format!(
                "SELECT call, text FROM segments WHERE call IN ({}) AND id IN ({})
                 ORDER BY call, start_ms, id",
                ids.join(","),
                fts_segments(1)
            ))
            .ctx(path, "cannot find snippets")?;
        let rows = snip
            .query_map([first], |r| {
                Ok((r.get::<_, CallKey>(0)?, r.get::<_, String>(1)?))
            })
            .ctx(path, "cannot find snippets")?;
        let mut first_line: std::collections::HashMap<CallKey, String> =
            std::collections::HashMap::new();
        for row in rows {
            let (call, text) = row.ctx(path, "cannot find snippets")?;
            first_line.entry(call).or_insert(text);
        }
        for item in &mut items {
            item.snippet = first_line.remove(&item.id);
        }
    }
    Ok(Page {
        items,
        total: total.max(0) as u64,
        limit,
        offset,
    })
}

pub(crate) fn find_calls(
    conn: &Connection,
    path: &Path,
    call_id: &str,
) -> Result<Vec<CallKey>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM calls WHERE call_id = ?1 ORDER BY id DESC")
        .ctx(path, "cannot look calls up")?;
    let rows = stmt
        .query_map([call_id], |r| r.get(0))
        .ctx(path, "cannot look calls up")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx(path, "cannot look calls up")
}

pub(crate) fn get_call(
    conn: &Connection,
    path: &Path,
    id: CallKey,
) -> Result<Option<CallDetail>, StoreError> {
    let head = conn
        .query_row(
            &format!("SELECT {CALL_COLUMNS}, c.metadata, c.summary FROM calls c WHERE c.id = ?1"),
            [id],
            |r| {
                let call = call_row(r)?;
                let metadata: String = r.get(20)?;
                let metadata = parse_json::<serde_json::Value>(20, &metadata)?;
                let summary = r
                    .get::<_, Option<String>>(21)?
                    .map(|s| parse_json::<Summary>(21, &s))
                    .transpose()?;
                Ok((call, metadata, summary))
            },
        )
        .optional()
        .ctx(path, "cannot read the call")?;
    let Some((call, metadata, summary)) = head else {
        return Ok(None);
    };
    let segments = all(
        conn,
        "SELECT leg, start_ms, end_ms, at_ms, lang, text FROM segments WHERE call = ?1
         ORDER BY start_ms, end_ms, id",
        id,
        |r| {
            Ok(SegmentRow {
                leg: parse_leg(0, &r.get::<_, String>(0)?)?,
                start_ms: get_ms(r, 1)?,
                end_ms: get_ms(r, 2)?,
                at_ms: get_ms(r, 3)?,
                lang: r.get(4)?,
                text: r.get(5)?,
            })
        },
    )
    .ctx(path, "cannot read the transcript")?;
    let signals = all(
        conn,
        "SELECT body FROM signals WHERE call = ?1 ORDER BY at_ms, id",
        id,
        |r| parse_json::<Signal>(0, &r.get::<_, String>(0)?),
    )
    .ctx(path, "cannot read the signals")?;
    let risk = all(
        conn,
        "SELECT at_ms, score, level FROM risk_points WHERE call = ?1 ORDER BY at_ms, id",
        id,
        |r| {
            Ok(RiskPoint {
                at_ms: get_ms(r, 0)?,
                score: r.get::<_, f64>(1)? as f32,
                level: level_of(r.get(2)?),
            })
        },
    )
    .ctx(path, "cannot read the risk points")?;
    let alerts = all(
        conn,
        "SELECT alert_id, at_ms, level, score, state, escalated, fired_unix_ms, decided_by,
             decided_role, decided_unix_ms, time_to_ack_ms, decision_reason, body
         FROM alerts WHERE call = ?1 ORDER BY id",
        id,
        alert_record,
    )
    .ctx(path, "cannot read the alerts")?;
    let qa_flags = all(
        conn,
        "SELECT body FROM qa_flags WHERE call = ?1 ORDER BY at_ms, id",
        id,
        |r| parse_json::<QaFlag>(0, &r.get::<_, String>(0)?),
    )
    .ctx(path, "cannot read the QA flags")?;
    let notes = all(
        conn,
        "SELECT id, author, created_unix_ms, text FROM qa_notes WHERE call = ?1
         ORDER BY created_unix_ms, id",
        id,
        |r| {
            Ok(Note {
                id: r.get(0)?,
                author: r.get(1)?,
                created_unix_ms: get_ms(r, 2)?,
                text: r.get(3)?,
            })
        },
    )
    .ctx(path, "cannot read the notes")?;
    Ok(Some(CallDetail {
        call,
        metadata,
        segments,
        signals,
        risk,
        alerts,
        qa_flags,
        notes,
        summary,
    }))
}

fn all<T>(
    conn: &Connection,
    sql: &str,
    id: CallKey,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([id], f)?;
    rows.collect()
}

fn bad_value(idx: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, why.into())
}

fn parse_json<T: serde::de::DeserializeOwned>(idx: usize, s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| bad_value(idx, format!("stored JSON unreadable: {e}")))
}

/// A stored serde unit-enum name (`"customer"`) back into its type.
fn parse_name<T: serde::de::DeserializeOwned>(idx: usize, s: &str) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| bad_value(idx, format!("unknown stored value {s:?}")))
}

fn parse_leg(idx: usize, s: &str) -> rusqlite::Result<Leg> {
    parse_name(idx, s)
}

fn get_ms(r: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(idx)?.max(0) as u64)
}

fn get_opt_ms(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(idx)?.map(|v| v.max(0) as u64))
}

fn level_of(n: i64) -> Level {
    match n {
        ..=0 => Level::Calm,
        1 => Level::Watch,
        _ => Level::Escalate,
    }
}

fn call_row(r: &Row<'_>) -> rusqlite::Result<CallRow> {
    let reasons: String = r.get(14)?;
    let outcome: String = r.get(15)?;
    let recording: Option<String> = r.get(17)?;
    let audio_deleted: bool = r.get(18)?;
    Ok(CallRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        source: parse_name::<SourceKind>(2, &r.get::<_, String>(2)?)?,
        legs: parse_json(3, &r.get::<_, String>(3)?)?,
        sample_rate: r.get(4)?,
        language: r.get(5)?,
        agent: r.get(6)?,
        started_unix_ms: get_ms(r, 7)?,
        ended_unix_ms: get_opt_ms(r, 8)?,
        duration_ms: get_ms(r, 9)?,
        max_score: r.get::<_, f64>(10)? as f32,
        max_level: level_of(r.get(11)?),
        alerts: r.get(12)?,
        qa_flags: r.get(13)?,
        reasons: reasons.split(',').filter_map(SignalKind::parse).collect(),
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| bad_value(15, format!("unknown outcome {outcome:?}")))?,
        end_detail: r.get(16)?,
        has_audio: recording.is_some() && !audio_deleted,
        recording_path: recording.map(PathBuf::from),
        audio_deleted,
        transcript_deleted: r.get(19)?,
        snippet: None,
    })
}

fn alert_record(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    let state: String = r.get(4)?;
    let state = match state.as_str() {
        "open" => AlertState::Open,
        "accepted" => AlertState::Accepted,
        "dismissed" => AlertState::Dismissed,
        other => return Err(bad_value(4, format!("unknown alert state {other:?}"))),
    };
    let decision = match r.get::<_, Option<String>>(7)? {
        Some(by) => Some(Decision {
            by,
            role: parse_name(8, &r.get::<_, String>(8)?)?,
            at_unix_ms: get_opt_ms(r, 9)?.unwrap_or(0),
            time_to_ack_ms: get_opt_ms(r, 10)?.unwrap_or(0),
            reason: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(AlertRecord {
        alert_id: r.get(0)?,
        at_ms: get_ms(r, 1)?,
        level: level_of(r.get(2)?),
        score: r.get::<_, f64>(3)? as f32,
        state,
        escalated: r.get(5)?,
        fired_unix_ms: get_opt_ms(r, 6)?,
        decision,
        alert: r
            .get::<_, Option<String>>(12)?
            .map(|s| parse_json(12, &s))
            .transpose()?,
    })
}
