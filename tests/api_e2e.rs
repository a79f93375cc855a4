//! The review API end to end: the real daemon on port 0 replays an escalating call (with an
//! agent), stores it, and a plain HTTP client drives every `/api` route with every role:
//! listing and searching, one call in full, the transcript exports, the recording with byte
//! ranges, QA notes, deletion; and the refusals: no token, a wrong one, an ingest token, an
//! agent asking for someone else's call, QA and supervisors deleting, a live call deleted.

mod common;

use std::time::Duration;

use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use common::daemon::*;
use common::*;
use serde_json::Value;

const AGENT: &str = "101";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_role_of_the_review_api() {
    let opts = ServeOptions {
        replay: vec![fixture("en-media-threat.wav")],
        replay_agents: vec![AGENT.into()],
        replay_speed: 2.0,
        ..options()
    };
    let d = start(
        config(),
        opts,
        &[
            ("sup", Role::Supervisor, None),
            ("qa", Role::Qa, None),
            ("amy", Role::Agent, Some(AGENT)),
            ("bob", Role::Agent, Some("202")),
            ("pbx", Role::Ingest, None),
            ("root", Role::Admin, None),
        ],
    )
    .await;
    let addr = d.addr;
    let bearer = |name: &str| format!("Bearer {}", d.token(name));
    let get = |name: &'static str, path: String| {
        let auth = bearer(name);
        async move { http(addr, "GET", &path, &[("Authorization", &auth)], None).await }
    };

    // Who am I, and what may I do.
    let me = get("qa", "/api/me".into()).await;
    assert_eq!(me.status, 200, "{}", me.text());
    let me = me.json();
    assert_eq!(me["role"], "qa");
    assert_eq!(me["may"]["accept_transfer"], false);
    assert_eq!(me["may"]["annotate"], true);
    assert_eq!(me["may"]["delete"], false);
    let me = get("amy", "/api/me".into()).await.json();
    assert_eq!(
        (me["role"].as_str(), me["agent"].as_str()),
        (Some("agent"), Some(AGENT))
    );
    // The token in the query works too (for <audio src> and download links).
    let q = http(
        addr,
        "GET",
        &format!("/api/me?token={}", d.token("root")),
        &[],
        None,
    )
    .await;
    assert_eq!(q.json()["may"]["delete"], true);

    // Refused: no token, a wrong token, an ingest token.
    let none = http(addr, "GET", "/api/calls", &[], None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"], "unauthorized");
    let wrong = http(
        addr,
        "GET",
        "/api/calls",
        &[("Authorization", "Bearer cg_wrong")],
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ingest = get("pbx", "/api/calls".into()).await;
    assert_eq!(ingest.status, 403);
    assert_eq!(ingest.json()["error"], "forbidden");

    // The call is stored from its start: listed while live, and a live call is not deletable.
    let live = wait_for(|| async {
        let page = get("sup", "/api/calls".into()).await.json();
        (page["total"] == 1).then_some(page)
    })
    .await;
    let id = live["items"][0]["id"].as_i64().unwrap();
    let del = http(
        addr,
        "DELETE",
        &format!("/api/calls/{id}"),
        &[("Authorization", &bearer("root"))],
        None,
    )
    .await;
    assert_eq!(del.status, 409, "{}", del.text());

    // Then it ends (the replay is twice real time).
    let page = wait_for(|| async {
        let page = get("sup", "/api/calls".into()).await.json();
        page["items"][0]["ended_unix_ms"].is_u64().then_some(page)
    })
    .await;
    let row = &page["items"][0];
    assert_eq!(row["agent"], AGENT);
    assert_eq!(row["outcome"], "hangup", "{row}");
    assert_eq!(row["has_audio"], true);
    assert!(row["alerts"].as_u64().unwrap() >= 1, "{row}");
    assert!(
        row.get("recording_path").is_none(),
        "server paths stay on the server: {row}"
    );

    // Filters and full text, as the calls page sends them (empty fields mean "any").
    let list = |name: &'static str, query: &str| get(name, format!("/api/calls?{query}"));
    assert_eq!(
        list("sup", "q=journalist&level=&reason=").await.json()["total"],
        1
    );
    let hit = list("qa", "q=journalist").await.json();
    assert!(
        hit["items"][0]["snippet"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("journalist")
    );
    assert_eq!(list("sup", "q=zebra").await.json()["total"], 0);
    assert_eq!(list("sup", "reason=threat_media").await.json()["total"], 1);
    assert_eq!(list("sup", "reason=threat_legal").await.json()["total"], 0);
    assert_eq!(list("sup", "level=escalate").await.json()["total"], 1);
    assert_eq!(list("sup", "outcome=disconnected").await.json()["total"], 0);
    assert_eq!(list("sup", "outcome=hangup").await.json()["total"], 1);
    assert_eq!(list("sup", "from=2099-01-01").await.json()["total"], 0);
    assert_eq!(list("sup", "to=2000-01-01").await.json()["total"], 0);
    assert_eq!(
        list("sup", "limit=1&offset=1").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let bad = list("sup", "level=furious").await;
    assert_eq!(bad.status, 400);
    let bad = bad.json();
    assert_eq!(bad["error"], "bad_request");
    assert!(
        bad["message"].as_str().unwrap().starts_with("level:"),
        "{bad}"
    );
    assert_eq!(list("sup", "from=yesterday").await.status, 400);

    // Agents: only their own calls, and no hint that others exist.
    assert_eq!(list("amy", "").await.json()["total"], 1);
    assert_eq!(list("bob", "").await.json()["total"], 0);
    // An agent cannot widen the scope with ?agent=.
    assert_eq!(
        list("bob", &format!("agent={AGENT}")).await.json()["total"],
        0
    );
    assert_eq!(get("bob", format!("/api/calls/{id}")).await.status, 404);
    assert_eq!(
        get("bob", format!("/api/calls/{id}/audio.wav"))
            .await
            .status,
        404
    );

    // One call in full.
    let call = get("amy", format!("/api/calls/{id}")).await;
    assert_eq!(call.status, 200);
    assert_eq!(call.header("cache-control"), Some("no-store"));
    let call = call.json();
    assert!(!call["segments"].as_array().unwrap().is_empty());
    assert!(!call["risk"].as_array().unwrap().is_empty());
    let alert = &call["alerts"][0];
    assert!(
        alert["alert"]["reasons"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{alert}"
    );
    assert_eq!(get("sup", "/api/calls/99999".into()).await.status, 404);
    assert_eq!(get("sup", "/api/calls/abc".into()).await.status, 404);
    assert_eq!(
        get("sup", format!("/api/calls/{id}/transcript.doc"))
            .await
            .status,
        404
    );

    // Exports.
    let vtt = get("qa", format!("/api/calls/{id}/transcript.vtt")).await;
    assert_eq!(vtt.header("content-type"), Some("text/vtt; charset=utf-8"));
    assert!(vtt.text().starts_with("WEBVTT"), "{}", vtt.text());
    assert!(vtt.text().contains("<v Customer>"));
    assert!(vtt.header("content-disposition").is_none());
    let dl = get("qa", format!("/api/calls/{id}/transcript.srt?download=1")).await;
    assert!(
        dl.text().starts_with("1\n") || dl.text().starts_with("1\r\n"),
        "{}",
        dl.text()
    );
    let cd = dl.header("content-disposition").unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"replay-0-en-media-threat.srt\""),
        "{cd}"
    );
    let json = get("qa", format!("/api/calls/{id}/transcript.json"))
        .await
        .json();
    assert!(
        json["segments"].as_array().is_some_and(|s| !s.is_empty()),
        "{json}"
    );

    // The recording: whole, and by byte ranges (what a player's seeking asks for).
    let wav = get("amy", format!("/api/calls/{id}/audio.wav")).await;
    assert_eq!(wav.status, 200);
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    assert_eq!(wav.header("accept-ranges"), Some("bytes"));
    assert_eq!(&wav.body[..4], b"RIFF");
    let len = wav.body.len();
    assert!(len > 44 + 8000 * 4, "{len} bytes");
    let auth = bearer("sup");
    let part = http(
        addr,
        "GET",
        &format!("/api/calls/{id}/audio.wav"),
        &[("Authorization", &auth), ("Range", "bytes=8-15")],
        None,
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"WAVEfmt ");
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 8-15/{len}").as_str())
    );
    let tail = http(
        addr,
        "GET",
        &format!("/api/calls/{id}/audio.wav"),
        &[("Authorization", &auth), ("Range", "bytes=-4")],
        None,
    )
    .await;
    assert_eq!(tail.body, wav.body[len - 4..]);
    let past = http(
        addr,
        "GET",
        &format!("/api/calls/{id}/audio.wav"),
        &[
            ("Authorization", &auth),
            ("Range", &format!("bytes={len}-")),
        ],
        None,
    )
    .await;
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // QA notes: QA and supervisors write them; agents cannot; bad bodies are refused.
    let post = |name: &'static str, body: &'static str| {
        let auth = bearer(name);
        let path = format!("/api/calls/{id}/notes");
        async move {
            http(
                addr,
                "POST",
                &path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                Some(body),
            )
            .await
        }
    };
    let note = post(
        "qa",
        r#"{"text":"客户提到媒体：复盘时重点看 Agent handled it well."}"#,
    )
    .await;
    assert_eq!(note.status, 201, "{}", note.text());
    let note = note.json();
    assert_eq!(note["author"], "qa");
    assert_eq!(
        post("sup", r#"{"text":"Called the customer back."}"#)
            .await
            .status,
        201
    );
    let refused = post("amy", r#"{"text":"not mine to write"}"#).await;
    assert_eq!(refused.status, 403);
    assert_eq!(post("qa", r#"{"text":"   "}"#).await.status, 400);
    assert_eq!(post("qa", r#"{"txt":"typo"}"#).await.status, 400);
    assert_eq!(post("qa", "not json").await.status, 400);
    let notes: Vec<Value> = get("qa", format!("/api/calls/{id}")).await.json()["notes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0]["text"].as_str().unwrap().contains("客户提到媒体"));

    // Deleting: not supervisors, not QA; an admin may, and the recording goes with it.
    for who in ["sup", "qa", "amy"] {
        let r = http(
            addr,
            "DELETE",
            &format!("/api/calls/{id}"),
            &[("Authorization", &bearer(who))],
            None,
        )
        .await;
        assert!(matches!(r.status, 403), "{who}: {}", r.status);
    }
    let recordings = d.data_dir().join("recordings");
    assert_eq!(std::fs::read_dir(&recordings).unwrap().count(), 1);
    let r = http(
        addr,
        "DELETE",
        &format!("/api/calls/{id}"),
        &[("Authorization", &bearer("root"))],
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get("sup", format!("/api/calls/{id}")).await.status, 404);
    assert_eq!(
        get("sup", "/api/calls?q=journalist".into()).await.json()["total"],
        0
    );
    assert_eq!(std::fs::read_dir(&recordings).unwrap().count(), 0);

    d.stop().await;
}

/// Polls `f` every 250 ms until it gives a value (at most 2 minutes: the real model runs).
async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A token revoked from the command line while the daemon runs is refused from then on, by the
/// API and by `/ws`, and one created meanwhile is taken: the daemon re-reads the token file
/// (off its async runtime) when it changes, with no restart. Other tokens are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revoked_or_created_while_the_daemon_runs_take_effect() {
    let d = start(
        config(),
        options(),
        &[
            ("sup", Role::Supervisor, None),
            ("amy", Role::Agent, Some(AGENT)),
        ],
    )
    .await;
    let addr = d.addr;
    let me = |token: String| async move {
        let auth = format!("Bearer {token}");
        http(addr, "GET", "/api/me", &[("Authorization", &auth)], None)
            .await
            .status
    };
    let amy = d.token("amy").to_owned();
    assert_eq!(me(amy.clone()).await, 200);

    // What `callguard token revoke amy` and `token create` do: another writer of the file.
    let mut file = callguard::sinks::hub::auth::TokenStore::open(d.data_dir()).unwrap();
    file.revoke("amy").unwrap();
    let quinn = file.create("quinn", Role::Qa, None, 0).unwrap();
    wait_for(|| {
        let amy = amy.clone();
        async move { (me(amy).await == 401).then_some(()) }
    })
    .await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={amy}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("a revoked token watched calls: {other:?}"),
    }
    wait_for(|| {
        let quinn = quinn.clone();
        async move { (me(quinn).await == 200).then_some(()) }
    })
    .await;
    assert_eq!(me(d.token("sup").to_owned()).await, 200);
    d.stop().await;
}
