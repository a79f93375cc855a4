//! The store against real SQLite databases in temporary directories.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;

use crate::domain::access::Role;
use crate::domain::alert::{AlertState, AlertStatus, Decision};
use crate::domain::call::CallInfo;
use crate::domain::event::Event;
use crate::sinks::store::schema::{self, SCHEMA_VERSION};
use crate::sinks::store::*;

/// 2026-11-19 00:00 UTC.
const T0: u64 = 1_795_565_600_000;
const DAY: u64 = 86_400_000;

fn info(call_id: &str, agent: Option<&str>) -> CallInfo {
    serde_json::from_value(json!({
        "call_id": call_id, "source": "twilio", "legs": ["customer", "agent"],
        "sample_rate": 8000, "agent": agent,
        "metadata": {"streamSid": "MZ42", "customParameters": {"queue": "billing"}}
    }))
    .unwrap()
}

fn ev(v: serde_json::Value) -> Event {
    serde_json::from_value(v).unwrap()
}

fn line(call: &str, leg: &str, start: u64, end: u64, text: &str, lang: &str) -> Event {
    ev(
        json!({"type": "transcript", "call_id": call, "leg": leg, "start_ms": start,
              "end_ms": end, "at_ms": end + 220, "text": text, "lang": lang, "final": true}),
    )
}

fn partial(call: &str, leg: &str, start: u64, end: u64, text: &str) -> Event {
    ev(
        json!({"type": "transcript", "call_id": call, "leg": leg, "start_ms": start,
              "end_ms": end, "at_ms": end, "text": text, "lang": "en", "final": false}),
    )
}

fn alert(call: &str, n: u32, at: u64, kind: &str, quote: &str) -> Event {
    ev(
        json!({"type": "alert", "call_id": call, "alert_id": format!("{call}-a{n}"), "at_ms": at,
        "level": "escalate", "score": 100.0,
        "reasons": [{"kind": kind, "points": 70.0, "count": 1, "terms": ["journalist"]},
                    {"kind": "raised_voice", "points": 34.8, "count": 1}],
        "evidence": {"quotes": [{"leg": "customer", "start_ms": 16500, "end_ms": 21020, "text": quote}],
                     "raised_voice": [{"leg": "customer", "start_ms": 18470, "end_ms": 19070,
                                       "db_over_baseline": 7.7, "cues": ["loudness", "pitch"]}]},
        "customer_type": "problem_led",
        "suggestion": {"lang": "en", "opening": "I'm very sorry for the experience you've had.",
                       "steps": ["Step 1: process the refund today."],
                       "deadline": "A senior person on the call within 10 minutes."}}),
    )
}

const PRESS: &str = "This is a disgrace, I will call a journalist and tell the press about this.";

/// A whole English call as the live pipeline emits it (partials included).
fn en_call(call: &str) -> Vec<Event> {
    vec![
        line(
            call,
            "agent",
            0,
            5400,
            "Good morning, thank you for calling Northwind customer service.",
            "en",
        ),
        partial(call, "customer", 6000, 7000, "My washing mashine"),
        line(
            call,
            "customer",
            6000,
            11000,
            "My washing machine was supposed to be delivered on Monday and it never came.",
            "en",
        ),
        partial(
            call,
            "customer",
            16500,
            18520,
            "This is a disgrace, I will call a",
        ),
        ev(
            json!({"type": "signal", "call_id": call, "kind": "raised_voice", "leg": "customer",
            "at_ms": 19390, "start_ms": 18470, "end_ms": 19070,
            "raised": {"db_over_baseline": 7.69, "duration_ms": 600, "pitch_rise_semitones": 2.99,
                       "tilt_change_db": -0.89, "rate_ratio": null, "cues": ["loudness", "pitch"]}}),
        ),
        ev(
            json!({"type": "risk", "call_id": call, "at_ms": 19390, "score": 35.0, "level": "watch",
            "previous_level": "calm", "reasons": [{"kind": "raised_voice", "points": 35.0, "count": 1}]}),
        ),
        line(call, "customer", 16500, 21020, PRESS, "en"),
        ev(
            json!({"type": "signal", "call_id": call, "kind": "threat_media", "leg": "customer",
            "at_ms": 21020, "start_ms": 16500, "end_ms": 21020, "terms": ["journalist", "the press"],
            "lexicon_terms": ["journalist|journalists", "the press"],
            "quotes": [{"leg": "customer", "start_ms": 16500, "end_ms": 21020, "text": PRESS}]}),
        ),
        ev(
            json!({"type": "risk", "call_id": call, "at_ms": 21020, "score": 100.0, "level": "escalate",
            "previous_level": "watch", "reasons": [{"kind": "threat_media", "points": 70.0, "count": 1}]}),
        ),
        alert(call, 1, 21020, "threat_media", PRESS),
        line(
            call,
            "agent",
            22000,
            25000,
            "That is not my problem. Read the manual yourself.",
            "en",
        ),
        ev(
            json!({"type": "signal", "call_id": call, "kind": "agent_conduct", "leg": "agent",
            "at_ms": 25220, "start_ms": 22000, "end_ms": 25000, "terms": ["not my problem"]}),
        ),
        ev(
            json!({"type": "qa_flag", "call_id": call, "at_ms": 25220, "kind": "agent_conduct",
            "leg": "agent", "terms": ["not my problem"],
            "quotes": [{"leg": "agent", "start_ms": 22000, "end_ms": 25000,
                        "text": "That is not my problem. Read the manual yourself."}],
            "hint": "Acknowledge the feeling first."}),
        ),
        ev(
            json!({"type": "summary", "call_id": call, "at_ms": 26678, "duration_ms": 26678,
            "max_score": 100.0, "max_level": "escalate", "alerts": [format!("{call}-a1")],
            "reasons": [{"kind": "raised_voice", "count": 1}, {"kind": "threat_media", "count": 1}],
            "qa_flags": 1, "customer_type": "problem_led"}),
        ),
    ]
}

/// A Chinese call: complaint, lawyer, media threat.
fn zh_call(call: &str) -> Vec<Event> {
    vec![
        line(call, "agent", 0, 2500, "您好，请问有什么可以帮您？", "zh"),
        line(
            call,
            "customer",
            3000,
            7000,
            "我要投诉你们，洗衣机坏了三次了！",
            "zh",
        ),
        line(
            call,
            "customer",
            8000,
            12000,
            "再不解决我就找律师，还要找媒体曝光。",
            "zh",
        ),
        ev(
            json!({"type": "signal", "call_id": call, "kind": "threat_legal", "leg": "customer",
            "at_ms": 12220, "start_ms": 8000, "end_ms": 12000, "terms": ["律师"]}),
        ),
        ev(
            json!({"type": "risk", "call_id": call, "at_ms": 12220, "score": 45.0, "level": "watch",
            "previous_level": "calm", "reasons": [{"kind": "threat_legal", "points": 45.0, "count": 1}]}),
        ),
    ]
}

fn decision(call: &str, n: u32, state: AlertState, reason: &str) -> AlertStatus {
    AlertStatus {
        call_id: call.into(),
        alert_id: format!("{call}-a{n}"),
        state,
        escalated: false,
        fired_unix_ms: T0 + 21_020,
        decision: (state != AlertState::Open).then(|| Decision {
            by: "sue".into(),
            role: Role::Supervisor,
            at_unix_ms: T0 + 25_310,
            time_to_ack_ms: 4290,
            reason: reason.into(),
        }),
    }
}

fn record_all(store: &mut Store, events: &[Event]) {
    for e in events {
        store.record(e).unwrap();
    }
}

/// Stores a whole call that started at `start` and returns its key.
fn stored_call(store: &mut Store, call: &str, start: u64, events: &[Event]) -> CallKey {
    let id = store
        .call_started(&info(call, Some("1042")), start)
        .unwrap();
    record_all(store, events);
    store
        .call_ended(call, &EndReason::Hangup, start + 30_000)
        .unwrap();
    id
}

fn q(store: &Store, text: &str) -> Vec<String> {
    let filter = CallFilter {
        q: Some(text.into()),
        ..CallFilter::default()
    };
    let page = store
        .list_calls(&filter)
        .unwrap_or_else(|e| panic!("query {text:?}: {e}"));
    page.items.into_iter().map(|c| c.call_id).collect()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

// ---- opening and migrations ----

#[test]
fn a_new_database_gets_the_latest_schema_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    assert_eq!(store.path(), data.join("callguard.db"));
    assert_eq!(store.migrated_from(), 0);
    assert_eq!(store.recovered(), 0);
    let conn = store.conn();
    assert_eq!(schema::version(conn).unwrap(), SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(count(conn, "PRAGMA foreign_keys"), 1);
    assert_eq!(count(conn, "PRAGMA synchronous"), 1, "NORMAL");
    let fts5: i64 = count(conn, "SELECT sqlite_compileoption_used('ENABLE_FTS5')");
    assert_eq!(fts5, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in [DB_FILE, "callguard.db-wal", "callguard.db-shm"] {
            let mode = std::fs::metadata(data.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    drop(store);
    let again = Store::open(&data).unwrap();
    assert_eq!(again.migrated_from(), SCHEMA_VERSION);
}

#[test]
fn an_old_version_database_is_migrated_and_its_lines_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate(&mut conn, 1).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), 1);
        conn.execute_batch(&format!(
            "INSERT INTO calls (id, call_id, source, legs, sample_rate, started_unix_ms, outcome,
                 ended_unix_ms)
             VALUES (1, 'old-1', 'audiofork', '[\"customer\",\"agent\"]', 8000, {T0}, 'hangup',
                 {});
             INSERT INTO segments (call, leg, start_ms, end_ms, at_ms, lang, text) VALUES
                 (1, 'customer', 0, 3000, 3000, 'zh', '我要投诉！'),
                 (1, 'customer', 4000, 7000, 7000, 'en', 'I want my refund now.');",
            T0 + 10_000
        ))
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.migrated_from(), 1);
    assert_eq!(schema::version(store.conn()).unwrap(), SCHEMA_VERSION);
    assert_eq!(q(&store, "投诉"), vec!["old-1"]);
    assert_eq!(q(&store, "refunds"), vec!["old-1"]);
    let detail = store.get_call(1).unwrap().unwrap();
    assert_eq!(detail.segments.len(), 2);
    assert_eq!(detail.call.outcome, Outcome::Hangup);
}

#[test]
fn a_newer_database_is_refused_and_garbage_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));
    let err = StoreReader::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), vec![b'x'; 4096]).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("callguard.db"), "{err}");
}

#[test]
fn only_one_process_writes_and_readers_need_a_migrated_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = StoreReader::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no call store here"), "{err}");
    {
        let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        schema::migrate(&mut conn, 1).unwrap();
    }
    let err = StoreReader::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::NeedsMigration { found: 1, .. }),
        "{err}"
    );
    let store = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("callguard.db.lock"), "{err}");
    let reader = StoreReader::open(dir.path()).unwrap();
    assert_eq!(reader.list_calls(&CallFilter::default()).unwrap().total, 0);
    drop(store);
    Store::open(dir.path()).unwrap();
}

// ---- writing and reading a call ----

#[test]
fn a_whole_call_is_recorded_from_its_events_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.call_started(&info("CA42", Some("1042")), T0).unwrap();
    record_all(&mut store, &en_call("CA42"));
    store
        .alert_decided(&decision("CA42", 1, AlertState::Accepted, ""))
        .unwrap();
    store
        .set_recording("CA42", Path::new("/var/lib/callguard/rec/CA42.wav"))
        .unwrap();
    store
        .call_ended("CA42", &EndReason::Hangup, T0 + 27_000)
        .unwrap();
    let note = store
        .add_note(id, "qa-lin", "Agent needs coaching on tone.", T0 + DAY)
        .unwrap();

    let d = store.get_call(id).unwrap().unwrap();
    let c = &d.call;
    assert_eq!((c.id, c.call_id.as_str()), (id, "CA42"));
    assert_eq!(c.source, crate::domain::call::SourceKind::Twilio);
    assert_eq!(c.legs, vec![Leg::Customer, Leg::Agent]);
    assert_eq!(c.sample_rate, 8000);
    assert_eq!(c.language.as_deref(), Some("en"));
    assert_eq!(c.agent.as_deref(), Some("1042"));
    assert_eq!(
        (c.started_unix_ms, c.ended_unix_ms),
        (T0, Some(T0 + 27_000))
    );
    assert_eq!(c.duration_ms, 26_678);
    assert_eq!((c.max_score, c.max_level), (100.0, Level::Escalate));
    assert_eq!((c.alerts, c.qa_flags), (1, 1));
    assert_eq!(
        c.reasons,
        vec![
            SignalKind::RaisedVoice,
            SignalKind::ThreatMedia,
            SignalKind::AgentConduct
        ]
    );
    assert_eq!(c.outcome, Outcome::Hangup);
    assert_eq!(c.end_detail, None);
    assert!(c.has_audio && !c.audio_deleted && !c.transcript_deleted);
    assert_eq!(
        c.recording_path.as_deref(),
        Some(Path::new("/var/lib/callguard/rec/CA42.wav"))
    );
    assert_eq!(d.metadata["customParameters"]["queue"], "billing");

    // Finals only, in call-time order.
    let texts: Vec<&str> = d.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts.len(), 4);
    assert!(texts[1].starts_with("My washing machine"));
    assert_eq!(d.segments[2].leg, Leg::Customer);
    assert_eq!(
        (
            d.segments[2].start_ms,
            d.segments[2].end_ms,
            d.segments[2].at_ms
        ),
        (16500, 21020, 21240)
    );
    let kinds: Vec<SignalKind> = d.signals.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            SignalKind::RaisedVoice,
            SignalKind::ThreatMedia,
            SignalKind::AgentConduct
        ]
    );
    assert_eq!(
        d.signals[0].raised.as_ref().unwrap().cues,
        ["loudness", "pitch"]
    );
    assert_eq!(d.signals[1].quotes[0].text, PRESS);
    let risk: Vec<(u64, f32, Level)> = d.risk.iter().map(|p| (p.at_ms, p.score, p.level)).collect();
    assert_eq!(
        risk,
        vec![(19390, 35.0, Level::Watch), (21020, 100.0, Level::Escalate)]
    );
    assert_eq!(d.alerts.len(), 1);
    let a = &d.alerts[0];
    assert_eq!(a.alert_id, "CA42-a1");
    assert_eq!(a.state, AlertState::Accepted);
    assert_eq!(a.fired_unix_ms, Some(T0 + 21_020));
    let dec = a.decision.as_ref().unwrap();
    assert_eq!((dec.by.as_str(), dec.role), ("sue", Role::Supervisor));
    assert_eq!((dec.at_unix_ms, dec.time_to_ack_ms), (T0 + 25_310, 4290));
    let full = a.alert.as_ref().unwrap();
    assert_eq!(full.evidence.quotes[0].text, PRESS);
    assert_eq!(Event::Alert(full.clone()), en_call("CA42")[9]);
    assert_eq!(d.qa_flags.len(), 1);
    assert_eq!(d.qa_flags[0].hint, "Acknowledge the feeling first.");
    assert_eq!(d.notes.len(), 1);
    assert_eq!(d.notes[0].id, note);
    assert_eq!(d.notes[0].author, "qa-lin");
    assert_eq!(d.summary.as_ref().unwrap().qa_flags, 1);

    // The API's JSON: the recording's server path stays out of it.
    let v = serde_json::to_value(&d).unwrap();
    assert!(v["call"].get("recording_path").is_none());
    assert_eq!(v["call"]["has_audio"], true);
    assert_eq!(v["call"]["outcome"], "hangup");
    assert_eq!(v["alerts"][0]["decision"]["by"], "sue");

    assert_eq!(store.find_calls("CA42").unwrap(), vec![id]);
    assert!(store.get_call(id + 1).unwrap().is_none());
}

#[test]
fn decisions_stick_and_escalations_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let id = stored_call(
        &mut store,
        "c1",
        T0,
        &[alert("c1", 1, 5000, "complaint", "x")],
    );
    let mut escalated = decision("c1", 1, AlertState::Open, "");
    escalated.escalated = true;
    store.alert_decided(&escalated).unwrap();
    store
        .alert_decided(&decision(
            "c1",
            1,
            AlertState::Dismissed,
            "customer calmed down",
        ))
        .unwrap();
    // A late `open` status never undoes the decision.
    store
        .alert_decided(&decision("c1", 1, AlertState::Open, ""))
        .unwrap();
    // A decision on a prompt whose alert event never came is still kept.
    store
        .alert_decided(&decision("c1", 2, AlertState::Accepted, ""))
        .unwrap();
    let d = store.get_call(id).unwrap().unwrap();
    assert_eq!(d.call.alerts, 2);
    let a = &d.alerts[0];
    assert_eq!(a.state, AlertState::Dismissed);
    assert!(a.escalated);
    assert_eq!(a.decision.as_ref().unwrap().reason, "customer calmed down");
    assert!(d.alerts[1].alert.is_none());
    assert_eq!(d.alerts[1].state, AlertState::Accepted);
}

#[test]
fn writes_for_unknown_calls_and_bad_notes_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let err = store
        .record(&line("ghost", "customer", 0, 1, "boo", "en"))
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownCall { .. }), "{err}");
    assert!(store.call_ended("ghost", &EndReason::Hangup, T0).is_err());
    assert!(matches!(
        store.add_note(7, "qa", "hi", T0).unwrap_err(),
        StoreError::NoSuchCall { id: 7, .. }
    ));
    let id = stored_call(&mut store, "c1", T0, &[]);
    let long = "x".repeat(10_001);
    for (author, text) in [
        ("", "x"),
        ("qa", "  "),
        ("a\nb", "x"),
        ("qa", long.as_str()),
    ] {
        let err = store.add_note(id, author, text, T0).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    }
    // A partial is ignored, not an error, even for an unknown call.
    store
        .record(&partial("ghost", "customer", 0, 1, "b"))
        .unwrap();
    let batch = vec![
        line("c1", "customer", 0, 1000, "one", "en"),
        line("ghost", "customer", 0, 1000, "lost", "en"),
        line("c1", "customer", 1000, 2000, "two", "en"),
    ];
    let r = store.record_batch(&batch).unwrap();
    assert_eq!(r.written, 2);
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].0, 1);
    assert_eq!(store.get_call(id).unwrap().unwrap().segments.len(), 2);
    assert_eq!(count(store.conn(), "SELECT count(*) FROM segments_fts"), 2);
}

#[test]
fn a_reused_call_id_is_a_new_call_and_events_go_to_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let first = stored_call(
        &mut store,
        "device",
        T0,
        &[line("device", "mixed", 0, 900, "first", "en")],
    );
    let second = store.call_started(&info("device", None), T0 + DAY).unwrap();
    store
        .record(&line("device", "mixed", 0, 900, "second", "en"))
        .unwrap();
    // Started again without an end: the second run is closed as recovered.
    let third = store
        .call_started(&info("device", None), T0 + 2 * DAY)
        .unwrap();
    store
        .record(&line("device", "mixed", 0, 900, "third", "en"))
        .unwrap();
    assert_eq!(
        store.find_calls("device").unwrap(),
        vec![third, second, first]
    );
    let text = |id| {
        store.get_call(id).unwrap().unwrap().segments[0]
            .text
            .clone()
    };
    assert_eq!(
        (text(first), text(second), text(third)),
        ("first".into(), "second".into(), "third".into())
    );
    let second = store.get_call(second).unwrap().unwrap().call;
    assert_eq!(second.outcome, Outcome::Recovered);
    assert_eq!(second.ended_unix_ms, Some(T0 + DAY + 1120));
    assert!(second.end_detail.unwrap().contains("same id"));
}

// ---- crashes ----

#[test]
fn a_call_cut_off_by_a_crash_is_recovered_with_every_committed_line() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = en_call("CA7").into_iter().take(10).collect(); // up to the alert
    {
        let mut store = Store::open(dir.path()).unwrap();
        stored_call(&mut store, "done", T0 - DAY, &[]);
        store.call_started(&info("CA7", None), T0).unwrap();
        record_all(&mut store, &events);
        // Dropped without call_ended: the daemon died.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovered(), 1);
    let id = store.find_calls("CA7").unwrap()[0];
    let d = store.get_call(id).unwrap().unwrap();
    assert_eq!(d.call.outcome, Outcome::Recovered);
    // Ended at its last event: the press line, known at 21020 + 220 ms.
    assert_eq!(d.call.ended_unix_ms, Some(T0 + 21_240));
    assert_eq!(d.call.duration_ms, 21_240);
    assert_eq!(d.segments.len(), 3);
    assert_eq!(d.alerts.len(), 1);
    assert_eq!(d.call.max_level, Level::Escalate);
    let done = store.find_calls("done").unwrap()[0];
    assert_eq!(
        store.get_call(done).unwrap().unwrap().call.outcome,
        Outcome::Hangup
    );
    assert_eq!(
        store
            .list_calls(&CallFilter {
                outcome: Some(Outcome::Live),
                ..CallFilter::default()
            })
            .unwrap()
            .total,
        0
    );
}

#[test]
fn a_killed_process_leaves_a_database_that_opens_consistent() {
    // The files as a `kill -9` leaves them: copied while the store is open and mid-call,
    // the WAL not yet checkpointed into the database file.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.call_started(&info("CA9", None), T0).unwrap();
    record_all(&mut store, &zh_call("CA9"));
    let killed = tempfile::tempdir().unwrap();
    for name in [DB_FILE, "callguard.db-wal"] {
        std::fs::copy(dir.path().join(name), killed.path().join(name)).unwrap();
    }
    let recovered = Store::open(killed.path()).unwrap();
    assert_eq!(recovered.recovered(), 1);
    let ok: String = recovered
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let d = recovered.get_call(1).unwrap().unwrap();
    assert_eq!(d.segments.len(), 3);
    assert_eq!(d.call.outcome, Outcome::Recovered);
    assert_eq!(q(&recovered, "律师"), vec!["CA9"]);
    drop(store);
}

// ---- full-text search ----

fn search_fixture() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    stored_call(&mut store, "en", T0, &en_call("en"));
    stored_call(&mut store, "zh", T0 + 1000, &zh_call("zh"));
    stored_call(
        &mut store,
        "mixed",
        T0 + 2000,
        &[line(
            "mixed",
            "mixed",
            0,
            3000,
            "我想要refund退款, thanks. Café au lait?",
            "zh",
        )],
    );
    (dir, store)
}

#[test]
fn chinese_words_are_found_as_written() {
    let (_dir, store) = search_fixture();
    for word in ["投诉", "律师", "曝光", "媒体曝光", "洗衣机", "投"] {
        assert_eq!(q(&store, word), vec!["zh"], "{word}");
    }
    assert!(
        q(&store, "诉投").is_empty(),
        "characters must stand side by side"
    );
    assert!(
        q(&store, "律师曝光").is_empty(),
        "a phrase, not a bag of characters"
    );
    assert_eq!(
        q(&store, "律师 曝光"),
        vec!["zh"],
        "both terms, anywhere in the call"
    );
    assert_eq!(q(&store, "退款"), vec!["mixed"]);
    assert_eq!(q(&store, "refund退款"), vec!["mixed"]);
    assert_eq!(q(&store, "律师 refund"), Vec::<String>::new());
    let filter = CallFilter {
        q: Some("曝光".into()),
        ..CallFilter::default()
    };
    let page = store.list_calls(&filter).unwrap();
    assert_eq!(
        page.items[0].snippet.as_deref(),
        Some("再不解决我就找律师，还要找媒体曝光。")
    );
}

#[test]
fn english_words_phrases_and_prefixes_are_found() {
    let (_dir, store) = search_fixture();
    assert_eq!(q(&store, "journalist"), vec!["en"]);
    assert_eq!(q(&store, "JOURNALIST"), vec!["en"]);
    assert_eq!(q(&store, "journalists"), vec!["en"], "stemmed");
    assert_eq!(q(&store, "deliver"), vec!["en"], "stemmed");
    assert_eq!(q(&store, "\"the press\""), vec!["en"]);
    assert!(q(&store, "\"press the\"").is_empty());
    assert_eq!(q(&store, "journ*"), vec!["en"]);
    assert_eq!(
        q(&store, "washing manual"),
        vec!["en"],
        "terms in different lines"
    );
    assert!(q(&store, "washing \"read the press\"").is_empty());
    assert_eq!(q(&store, "cafe"), vec!["mixed"], "diacritics folded");
    assert_eq!(q(&store, "refund"), vec!["mixed"]);
    assert!(q(&store, "lawyer").is_empty());
    // Partials were never stored, so never found.
    assert!(q(&store, "mashine").is_empty());
}

#[test]
fn fts_syntax_in_a_query_is_plain_text_and_never_an_error() {
    let (_dir, store) = search_fixture();
    let all = vec!["mixed".to_string(), "zh".into(), "en".into()];
    for blank in [
        "", "   ", "\"", "\"\"", "\"\"\"", "*", "**", "-", "--", "()", "^", ":", "'", "\\", "😀",
        "\u{301}", "\u{3000}",
    ] {
        assert_eq!(q(&store, blank), all, "{blank:?} is no filter");
    }
    for (query, expect) in [
        ("NEAR", vec![]),
        ("NEAR(journalist press)", vec![]),
        ("journalist NEAR press", vec![]),
        ("journalist AND", vec!["en"]),
        ("journalist OR lawyer", vec![]),
        ("NOT journalist", vec!["en"]),
        ("-journalist", vec!["en"]),
        ("journalist*", vec!["en"]),
        ("*journalist", vec!["en"]),
        ("jour*nalist", vec![]),
        ("text:journalist", vec![]),
        ("{text}:journalist", vec![]),
        ("^journalist", vec!["en"]),
        ("journalist)", vec!["en"]),
        ("(journalist", vec!["en"]),
        ("\"journalist", vec!["en"]),
        ("journalist\"", vec!["en"]),
        ("'journalist'", vec!["en"]),
        ("%journalist_", vec!["en"]),
        ("journalist;DROP TABLE calls", vec![]),
        ("投诉\"律师", vec!["zh"]),
        ("投诉*", vec!["zh"]),
        ("a\0b", vec![]),
    ] {
        assert_eq!(q(&store, query), expect, "{query:?}");
    }
    let long = "journalist ".repeat(400);
    assert_eq!(q(&store, &long), vec!["en"]);
}

// ---- filters and paging ----

#[test]
fn filters_combine_and_pages_are_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // Ten calls an hour apart, alternating agents; every third escalates with a media threat.
    for i in 0..10u64 {
        let call = format!("c{i}");
        let agent = if i % 2 == 0 { "1042" } else { "2077" };
        store
            .call_started(&info(&call, Some(agent)), T0 + i * 3_600_000)
            .unwrap();
        let mut events = vec![line(
            &call,
            "customer",
            0,
            2000,
            &format!("call number {i}"),
            "en",
        )];
        if i % 3 == 0 {
            events.extend(
                en_call(&call)
                    .into_iter()
                    .filter(|e| matches!(e, Event::Signal(_) | Event::Risk(_) | Event::Alert(_))),
            );
        }
        record_all(&mut store, &events);
        let end = if i == 4 {
            EndReason::SourceError("stream reset".into())
        } else {
            EndReason::Hangup
        };
        if i != 9 {
            store
                .call_ended(&call, &end, T0 + i * 3_600_000 + 60_000)
                .unwrap();
        }
    }
    let ids = |f: CallFilter| -> (Vec<String>, u64) {
        let page = store.list_calls(&f).unwrap();
        (
            page.items.into_iter().map(|c| c.call_id).collect(),
            page.total,
        )
    };
    let all = CallFilter::default;
    assert_eq!(ids(all()).1, 10);
    assert_eq!(ids(all()).0[..3], ["c9", "c8", "c7"]);
    let page = |limit, offset| {
        ids(CallFilter {
            limit,
            offset,
            ..all()
        })
    };
    assert_eq!(
        page(3, 0),
        (vec!["c9".into(), "c8".into(), "c7".into()], 10)
    );
    assert_eq!(page(3, 9), (vec!["c0".into()], 10));
    assert_eq!(page(3, 10), (vec![], 10));
    assert_eq!(page(0, 0).0.len(), 1, "limit clamped to at least 1");
    assert_eq!(
        store
            .list_calls(&CallFilter {
                limit: 10_000,
                ..all()
            })
            .unwrap()
            .limit,
        MAX_PAGE
    );

    let (escalated, n) = ids(CallFilter {
        level: Some(Level::Escalate),
        ..all()
    });
    assert_eq!(
        (escalated, n),
        (vec!["c9".into(), "c6".into(), "c3".into(), "c0".into()], 4)
    );
    assert_eq!(
        ids(CallFilter {
            level: Some(Level::Watch),
            ..all()
        })
        .1,
        4
    );
    assert_eq!(
        ids(CallFilter {
            level: Some(Level::Calm),
            ..all()
        })
        .1,
        10
    );
    assert_eq!(
        ids(CallFilter {
            reason: Some(SignalKind::ThreatMedia),
            ..all()
        })
        .1,
        4
    );
    assert_eq!(
        ids(CallFilter {
            reason: Some(SignalKind::Churn),
            ..all()
        })
        .1,
        0
    );
    assert_eq!(
        ids(CallFilter {
            outcome: Some(Outcome::Live),
            ..all()
        })
        .0,
        vec!["c9"]
    );
    assert_eq!(
        ids(CallFilter {
            outcome: Some(Outcome::SourceError),
            ..all()
        })
        .0,
        vec!["c4"]
    );
    assert_eq!(
        ids(CallFilter {
            agent: Some("2077".into()),
            ..all()
        })
        .1,
        5
    );
    assert_eq!(
        ids(CallFilter {
            from: Some(T0 + 3 * 3_600_000),
            to: Some(T0 + 6 * 3_600_000),
            ..all()
        })
        .0,
        vec!["c5", "c4", "c3"],
        "from inclusive, to exclusive"
    );
    let combined = CallFilter {
        q: Some("number".into()),
        agent: Some("1042".into()),
        level: Some(Level::Escalate),
        from: Some(T0 + 1),
        ..all()
    };
    assert_eq!(ids(combined).0, vec!["c6"]);
    assert_eq!(
        ids(CallFilter {
            q: Some("\"number 7\"".into()),
            ..all()
        })
        .0,
        vec!["c7"]
    );

    // The API parses its query string into a filter.
    let f: CallFilter =
        serde_json::from_value(json!({"q": "refund", "level": "watch", "reason": "complaint", "outcome": "recovered", "limit": 20}))
            .unwrap();
    assert_eq!(
        (f.level, f.reason, f.outcome, f.limit, f.offset),
        (
            Some(Level::Watch),
            Some(SignalKind::Complaint),
            Some(Outcome::Recovered),
            20,
            0
        )
    );
}

// ---- exports ----

fn small_call() -> (tempfile::TempDir, CallDetail) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let id = store.call_started(&info("s1", None), T0).unwrap();
    record_all(
        &mut store,
        &[
            line(
                "s1",
                "customer",
                1200,
                3400,
                "I want a refund & <now>",
                "en",
            ),
            line(
                "s1",
                "agent",
                3500,
                5000,
                "Let me check.\nOne moment.",
                "en",
            ),
            line("s1", "mixed", 3_725_000, 3_727_500, "我要投诉", "zh"),
            ev(
                json!({"type": "signal", "call_id": "s1", "kind": "complaint", "leg": "customer",
                      "at_ms": 3620, "start_ms": 1200, "end_ms": 3400, "terms": ["refund"]}),
            ),
            alert("s1", 1, 3620, "complaint", "I want a refund & <now>"),
        ],
    );
    store
        .call_ended("s1", &EndReason::Disconnected, T0 + 3_730_000)
        .unwrap();
    let d = store.get_call(id).unwrap().unwrap();
    (dir, d)
}

#[test]
fn webvtt_export_has_voice_tags_and_escapes() {
    let (_dir, d) = small_call();
    assert_eq!(
        to_vtt(&d),
        "WEBVTT\n\
         \n\
         00:00:01.200 --> 00:00:03.400\n\
         <v Customer>I want a refund &amp; &lt;now&gt;\n\
         \n\
         00:00:03.500 --> 00:00:05.000\n\
         <v Agent>Let me check. One moment.\n\
         \n\
         01:02:05.000 --> 01:02:07.500\n\
         <v Caller>我要投诉\n"
    );
}

#[test]
fn srt_export_is_numbered_with_speaker_prefixes() {
    let (_dir, d) = small_call();
    assert_eq!(
        to_srt(&d),
        "1\n00:00:01,200 --> 00:00:03,400\nCustomer: I want a refund & <now>\n\
         \n\
         2\n00:00:03,500 --> 00:00:05,000\nAgent: Let me check. One moment.\n\
         \n\
         3\n01:02:05,000 --> 01:02:07,500\nCaller: 我要投诉\n"
    );
}

#[test]
fn json_export_has_the_call_segments_signals_and_alerts() {
    let (_dir, d) = small_call();
    let v: serde_json::Value = serde_json::from_str(&to_json(&d)).unwrap();
    // Through text, as the export is: f32 values print shortest (7.7, not 7.699999809).
    let alert_line = alert("s1", 1, 3620, "complaint", "I want a refund & <now>").to_json_line();
    let mut alert_body: serde_json::Value = serde_json::from_str(&alert_line).unwrap();
    alert_body.as_object_mut().unwrap().remove("type");
    assert_eq!(
        v,
        json!({
            "call": {
                "id": 1, "call_id": "s1", "source": "twilio", "legs": ["customer", "agent"],
                "sample_rate": 8000, "language": "en", "agent": null,
                "started_unix_ms": T0, "ended_unix_ms": T0 + 3_730_000, "duration_ms": 3_727_720,
                "max_score": 100.0, "max_level": "escalate", "alerts": 1, "qa_flags": 0,
                "reasons": ["complaint", "raised_voice"],
                "outcome": "disconnected", "has_audio": false, "audio_deleted": false,
                "transcript_deleted": false
            },
            "segments": [
                {"leg": "customer", "start_ms": 1200, "end_ms": 3400, "at_ms": 3620, "lang": "en", "text": "I want a refund & <now>"},
                {"leg": "agent", "start_ms": 3500, "end_ms": 5000, "at_ms": 5220, "lang": "en", "text": "Let me check.\nOne moment."},
                {"leg": "mixed", "start_ms": 3_725_000, "end_ms": 3_727_500, "at_ms": 3_727_720, "lang": "zh", "text": "我要投诉"}
            ],
            "signals": [
                {"kind": "complaint", "leg": "customer", "at_ms": 3620, "start_ms": 1200, "end_ms": 3400, "terms": ["refund"]}
            ],
            "alerts": [
                {"alert_id": "s1-a1", "at_ms": 3620, "level": "escalate", "score": 100.0, "state": "open",
                 "escalated": false, "alert": alert_body}
            ]
        })
    );
}

// ---- retention ----

#[test]
fn the_sweep_deletes_old_transcripts_and_lists_old_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let now = T0 + 1000 * DAY;
    let mut keys = Vec::new();
    for (call, age_days) in [("old", 400), ("mid", 100), ("new", 1)] {
        let start = now - age_days * DAY;
        let id = stored_call(&mut store, call, start, &en_call(call));
        store
            .set_recording(call, Path::new(&format!("/rec/{call}.wav")))
            .unwrap();
        store
            .alert_decided(&decision(call, 1, AlertState::Dismissed, "calmed down"))
            .unwrap();
        store.add_note(id, "qa", "note", start + DAY).unwrap();
        keys.push(id);
    }
    // Live for 500 days (a stuck call): never swept while live.
    store
        .call_started(&info("live", None), now - 500 * DAY)
        .unwrap();
    record_all(&mut store, &zh_call("live"));
    let (old, mid, new) = (keys[0], keys[1], keys[2]);

    assert_eq!(
        store.sweep(now, 0, 0).unwrap(),
        SweepReport::default(),
        "0 keeps for ever"
    );
    let r = store.sweep(now, 365, 90).unwrap();
    assert_eq!(r.transcripts_deleted, 1);
    assert_eq!(r.segments_deleted, 4);
    let paths: Vec<_> = r
        .expired_recordings
        .iter()
        .map(|e| (e.id, e.path.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        paths,
        vec![(old, "/rec/old.wav".into()), (mid, "/rec/mid.wav".into())]
    );

    let d = store.get_call(old).unwrap().unwrap();
    assert!(d.call.transcript_deleted);
    assert!(
        d.segments.is_empty()
            && d.signals.is_empty()
            && d.qa_flags.is_empty()
            && d.notes.is_empty()
    );
    assert_eq!(d.risk.len(), 2, "the risk curve stays");
    assert_eq!(d.alerts.len(), 1);
    assert!(d.alerts[0].alert.is_none());
    assert_eq!(d.alerts[0].decision.as_ref().unwrap().reason, "calmed down");
    assert_eq!(d.call.reasons.len(), 3);
    assert_eq!((d.call.max_level, d.call.alerts), (Level::Escalate, 1));
    assert_eq!(q(&store, "journalist"), vec!["new", "mid"]);
    assert_eq!(
        store
            .list_calls(&CallFilter {
                reason: Some(SignalKind::ThreatMedia),
                ..CallFilter::default()
            })
            .unwrap()
            .total,
        3,
        "the reason filter outlives the transcript"
    );
    assert_eq!(store.get_call(mid).unwrap().unwrap().segments.len(), 4);
    assert_eq!(store.get_call(new).unwrap().unwrap().notes.len(), 1);
    assert_eq!(q(&store, "律师"), vec!["live"]);

    // Recordings are listed until marked deleted; sweeping again deletes nothing more.
    store.mark_audio_deleted(old).unwrap();
    let again = store.sweep(now, 365, 90).unwrap();
    assert_eq!(again.transcripts_deleted, 0);
    assert_eq!(again.expired_recordings.len(), 1);
    assert_eq!(again.expired_recordings[0].call_id, "mid");
    let c = store.get_call(old).unwrap().unwrap().call;
    assert!(c.audio_deleted && !c.has_audio);
    assert!(store.mark_audio_deleted(999).is_err());
    let ok: String = store
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let fts_rows = count(store.conn(), "SELECT count(*) FROM segments_fts");
    let seg_rows = count(store.conn(), "SELECT count(*) FROM segments");
    assert_eq!(fts_rows, seg_rows);
}

// ---- the writer thread ----

#[tokio::test]
async fn the_writer_batches_many_events_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (handle, join) = StoreWriter::start_with_queue(store, 16).unwrap();
    handle.call_started(info("big", None), T0).await.unwrap();
    for i in 0..2000u64 {
        handle
            .record(line(
                "big",
                "customer",
                i * 1000,
                i * 1000 + 900,
                &format!("line {i}"),
                "en",
            ))
            .await
            .unwrap();
        handle
            .record(partial("big", "customer", i, i + 1, "p"))
            .await
            .unwrap();
    }
    handle.flush().await.unwrap();
    let stats = handle.stats();
    assert_eq!((stats.written(), stats.failed()), (2001, 0));
    assert!(
        stats.batches() >= 1 && stats.batches() < 2001,
        "batched: {}",
        stats.batches()
    );
    let reader = StoreReader::open(dir.path()).unwrap();
    let id = reader.find_calls("big").unwrap()[0];
    let note = handle
        .add_note(id, "qa".into(), "listened".into(), T0)
        .await
        .unwrap();
    assert!(note > 0);
    let d = reader.get_call(id).unwrap().unwrap();
    assert_eq!(d.segments.len(), 2000);
    assert_eq!(d.notes[0].id, note);
    handle
        .call_ended("big".into(), EndReason::Hangup, T0 + 2_000_000)
        .await
        .unwrap();
    let report = handle.sweep(T0 + 400 * DAY, 365, 0).await.unwrap();
    assert_eq!(
        report.segments_deleted, 2000,
        "the sweep runs after what was queued before it"
    );
    drop(handle);
    join.join().unwrap();
    // The thread ended and closed the store: it can be opened again.
    Store::open(dir.path()).unwrap();
}

#[tokio::test]
async fn a_bad_write_never_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (handle, join) = StoreWriter::start(store).unwrap();
    handle.call_started(info("c1", None), T0).await.unwrap();
    handle
        .record(line("c1", "customer", 0, 1000, "before", "en"))
        .await
        .unwrap();
    handle
        .record(line("nobody", "customer", 0, 1000, "lost", "en"))
        .await
        .unwrap();
    let err = handle
        .add_note(1, "qa".into(), "".into(), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    let err = handle
        .add_note(42, "qa".into(), "x".into(), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSuchCall { .. }), "{err}");
    handle
        .record(line("c1", "customer", 1000, 2000, "after", "en"))
        .await
        .unwrap();
    handle
        .alert_decided(decision("nobody", 1, AlertState::Accepted, ""))
        .await
        .unwrap();
    handle
        .call_ended("c1".into(), EndReason::Hangup, T0 + 5000)
        .await
        .unwrap();
    handle.flush().await.unwrap();
    assert_eq!(handle.stats().failed(), 4);
    assert_eq!(handle.stats().written(), 4);
    let reader = StoreReader::open(dir.path()).unwrap();
    let d = reader.get_call(1).unwrap().unwrap();
    let texts: Vec<&str> = d.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["before", "after"]);
    assert_eq!(d.call.outcome, Outcome::Hangup);
    drop(handle);
    join.join().unwrap();
}

#[tokio::test]
async fn a_full_channel_makes_senders_wait_and_nothing_sent_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Another connection holds the write lock, so the writer stalls on its first batch.
    let blocker = Connection::open(dir.path().join(DB_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (handle, join) = StoreWriter::start_with_queue(store, 4).unwrap();
    handle.call_started(info("c1", None), T0).await.unwrap();
    let mut sent = 0u64;
    let mut waited = false;
    for i in 0..20u64 {
        let send = handle.record(line(
            "c1",
            "customer",
            i * 10,
            i * 10 + 5,
            &format!("l{i}"),
            "en",
        ));
        match tokio::time::timeout(Duration::from_millis(150), send).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
            }
            Err(_) => {
                waited = true;
                break;
            }
        }
    }
    assert!(waited, "a sender waited for room");
    blocker.execute_batch("ROLLBACK").unwrap();
    handle.flush().await.unwrap();
    assert_eq!(handle.stats().written(), sent + 1);
    assert_eq!(handle.stats().failed(), 0);
    drop(handle);
    join.join().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get_call(1).unwrap().unwrap().segments.len() as u64,
        sent
    );
}

#[test]
fn a_deleted_call_leaves_nothing_behind_and_a_live_one_is_refused() {
    let (_dir, mut store) = search_fixture();
    store.call_started(&info("live", None), T0 + 5000).unwrap();
    record_all(&mut store, &zh_call("live"));
    let en = store.find_calls("en").unwrap()[0];
    store.add_note(en, "qa", "reviewed", T0 + 60_000).unwrap();
    assert_eq!(q(&store, "journalist"), vec!["en"]);

    store.delete_call(en).unwrap();
    assert!(store.get_call(en).unwrap().is_none());
    assert!(
        q(&store, "journalist").is_empty(),
        "its words left the index"
    );
    assert_eq!(
        q(&store, "律师"),
        vec!["live", "zh"],
        "other calls untouched"
    );
    for table in [
        "segments",
        "signals",
        "risk_points",
        "alerts",
        "qa_flags",
        "qa_notes",
    ] {
        let n = count(
            store.conn(),
            &format!("SELECT count(*) FROM {table} WHERE call = {en}"),
        );
        assert_eq!(n, 0, "{table}");
    }
    let fts_rows = count(store.conn(), "SELECT count(*) FROM segments_fts");
    let seg_rows = count(store.conn(), "SELECT count(*) FROM segments");
    assert_eq!(fts_rows, seg_rows);

    assert!(matches!(
        store.delete_call(en),
        Err(StoreError::NoSuchCall { .. })
    ));
    let live = store.find_calls("live").unwrap()[0];
    let err = store.delete_call(live).unwrap_err().to_string();
    assert!(err.contains("still live"), "{err}");
    assert!(store.get_call(live).unwrap().is_some());
}

#[test]
fn each_call_on_a_page_gets_its_own_earliest_matching_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    for (n, call) in ["a", "b", "c"].iter().enumerate() {
        let lines = [
            line(call, "agent", 0, 1000, "Hello, how can I help?", "en"),
            line(
                call,
                "customer",
                2000,
                3000,
                &format!("Refund number {n} please"),
                "en",
            ),
            line(call, "customer", 4000, 5000, "I said refund, again", "en"),
        ];
        stored_call(&mut store, call, T0 + n as u64 * 1000, &lines);
    }
    stored_call(
        &mut store,
        "none",
        T0 + 9000,
        &[line("none", "agent", 0, 900, "Bye", "en")],
    );
    let page = store
        .list_calls(&CallFilter {
            q: Some("refund".into()),
            limit: 2,
            ..CallFilter::default()
        })
        .unwrap();
    assert_eq!(page.total, 3);
    let got: Vec<(String, Option<String>)> = page
        .items
        .into_iter()
        .map(|c| (c.call_id, c.snippet))
        .collect();
    assert_eq!(
        got,
        vec![
            ("c".into(), Some("Refund number 2 please".into())),
            ("b".into(), Some("Refund number 1 please".into())),
        ]
    );
}

#[tokio::test]
async fn cluster_messages_are_stored_once_however_often_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (handle, join) = StoreWriter::start(store).unwrap();
    let once = |id: &str, w: Replicated| handle.apply_once(id.into(), T0, w);
    // An event before its call's start (redelivered out of order) is refused, and not
    // remembered: it is stored when it comes again after the start.
    let early = line("c1", "customer", 0, 1000, "hello", "en");
    let err = once("e-2", Replicated::Event(early.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownCall { .. }), "{err}");
    assert!(
        once("e-1", Replicated::CallStarted(info("c1", None), T0))
            .await
            .unwrap()
    );
    assert!(
        !once("e-1", Replicated::CallStarted(info("c1", None), T0))
            .await
            .unwrap()
    );
    assert!(once("e-2", Replicated::Event(early.clone())).await.unwrap());
    assert!(!once("e-2", Replicated::Event(early)).await.unwrap());
    // Partials are never stored.
    let p = partial("c1", "customer", 1000, 2000, "hel");
    assert!(!once("e-3", Replicated::Event(p)).await.unwrap());
    let end = Replicated::CallEnded("c1".into(), EndReason::LostEdge("edge-1".into()), T0 + 9);
    assert!(once("e-4", end).await.unwrap());
    handle.flush().await.unwrap();
    let reader = StoreReader::open(dir.path()).unwrap();
    let d = reader.get_call(1).unwrap().unwrap();
    let texts: Vec<&str> = d.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["hello"]);
    assert_eq!(d.call.outcome, Outcome::LostEdge);
    assert_eq!(
        d.call.end_detail.as_deref(),
        Some("edge edge-1 stopped sending heartbeats")
    );
    assert_eq!(reader.find_calls("c1").unwrap().len(), 1);
    // The ids are forgotten by the retention sweep once no redelivery can come.
    handle.sweep(T0 + 3 * DAY, 0, 0).await.unwrap();
    drop(handle);
    join.join().unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM applied"), 0);
}
