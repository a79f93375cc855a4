//! How many events a cluster hub stores and shows per second (`make bench-hub`). A real
//! `nats-server` (JetStream, temporary folder, free port), one edge's publisher and one hub in
//! this process, each with a real SQLite store in a temporary folder: the edge side publishes
//! `CALLS` calls of `LINES` final transcript lines and risk points each, as fast as JetStream
//! takes them; then the hub starts and its durable consumer stores each once and shows it.
//! Reported: the publisher's rate, and the hub's catch-up rate (until its consumer has
//! nothing pending or unacknowledged). Not a criterion bench: one long run says more about a
//! queue than many short ones.
//!
//!   cargo bench --bench hub [-- CALLS LINES]        (default 200 calls x 50 lines)

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use callguard::cluster::events::{EVENT_STREAM, EdgeLink, Publisher, hub_consumer, run_hub};
use callguard::cluster::{ClusterConfig, Role, connect, ensure_streams};
use callguard::domain::call::{CallInfo, EndReason, SourceKind};
use callguard::domain::event::{Event, Transcript};
use callguard::domain::leg::Leg;
use callguard::sinks::egress::Mirror;
use callguard::sinks::hub::auth::TokenStore;
use callguard::sinks::hub::state::{Hub, HubSettings};
use callguard::sinks::store::{Store, StoreHandle, StoreWriter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

fn store(dir: &std::path::Path) -> (Arc<Hub>, StoreHandle) {
    let tokens = TokenStore::open(dir).expect("token file");
    let store = Store::open(dir).expect("store");
    let (handle, _thread) = StoreWriter::start(store).expect("store writer");
    let settings = HubSettings {
        max_calls: usize::MAX,
        ..HubSettings::default()
    };
    (Hub::new(tokens, settings, None), handle)
}

fn line(call: &str, n: u64) -> Event {
    Event::Transcript(Transcript {
        call_id: call.into(),
        leg: if n.is_multiple_of(2) {
            Leg::Customer
        } else {
            Leg::Agent
        },
        start_ms: n * 3000,
        end_ms: n * 3000 + 2500,
        at_ms: n * 3000 + 2600,
        text: format!("line {n}: my order still has not arrived and nobody calls me back"),
        lang: "en".into(),
        is_final: true,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = args.first().copied().unwrap_or(200);
    let lines = args.get(1).copied().unwrap_or(50);
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let nats = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(tmp.path().join("js"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut nats) = nats else {
        eprintln!("nats-server is not installed (make deps): nothing measured");
        return;
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cfg = ClusterConfig {
        nats: format!("nats://127.0.0.1:{port}"),
        ..ClusterConfig::default()
    };
    let edge_client = connect(&cfg, "bench-edge").await.expect("edge connects");
    let hub_client = connect(&cfg, "bench-hub").await.expect("hub connects");
    let js = jetstream::new(hub_client.clone());
    ensure_streams(&js, &cfg).await.expect("streams");

    let (edge_hub, edge_store) = store(&tmp.path().join("edge"));
    let (hub, hub_store) = store(&tmp.path().join("hub"));
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let publisher = Publisher::start(edge_client.clone(), "bench-edge", stop.clone(), &tasks);
    let link = EdgeLink::start(
        edge_client,
        Arc::clone(&publisher),
        edge_hub,
        edge_store,
        Role::Edge,
        stop.clone(),
        &tasks,
    )
    .await
    .expect("edge link");
    // Each call: its start, `lines` lines each followed by a risk point, its end.
    let total = calls * (2 + 2 * lines);
    let started = Instant::now();
    for c in 0..calls {
        let id = format!("CB{c}");
        let info = CallInfo {
            call_id: id.clone(),
            source: SourceKind::Twilio,
            legs: vec![Leg::Customer, Leg::Agent],
            sample_rate: 8000,
            lang: Some("en".into()),
            agent: None,
            metadata: serde_json::Value::Null,
        };
        link.call_started(&info, 1_796_000_000_000);
        for n in 0..lines as u64 {
            link.event(&line(&id, n));
            let risk: Event = serde_json::from_value(serde_json::json!({
                "type": "risk", "call_id": id, "at_ms": n * 3000 + 2600,
                "score": 10.0, "level": "calm", "reasons": []
            }))
            .expect("a risk event");
            link.event(&risk);
        }
        link.call_ended(&id, &EndReason::Hangup, 1_796_000_300_000);
        // The publisher's queue holds 20,000: keep under it, as live calls would.
        while publisher
            .stats
            .published
            .load(std::sync::atomic::Ordering::Relaxed)
            + 15_000
            < ((c + 1) * (2 + 2 * lines)) as u64
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Everything stored in the stream first; then the hub starts and catches up: the rate a
    // hub stores at when it has work waiting (after a restart, or behind under load).
    let deadline = Instant::now() + Duration::from_secs(600);
    while (publisher
        .stats
        .published
        .load(std::sync::atomic::Ordering::Relaxed) as usize)
        < total
    {
        if Instant::now() > deadline {
            eprintln!("gave up publishing");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let published_at = started.elapsed();
    let catching_up = Instant::now();
    tasks.spawn(run_hub(
        hub_client,
        cfg.clone(),
        "bench-hub".into(),
        false,
        Arc::clone(&hub),
        hub_store.clone(),
        stop.clone(),
    ));
    let stream = js.get_stream(EVENT_STREAM).await.expect("event stream");
    let consumer: jetstream::consumer::PullConsumer = loop {
        match stream.get_consumer(&hub_consumer("bench-hub")).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    loop {
        let mut c = consumer.clone();
        let info = c.info().await.expect("consumer info");
        if info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0
        {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("gave up waiting for the hub: {info:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored_in = catching_up.elapsed();
    let dropped = publisher
        .stats
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "hub bench: {calls} calls x {lines} lines = {total} events (starts, lines, risk points, ends)"
    );
    println!(
        "  edge published (JetStream-acked, one at a time): {:.1} s, {:.0} events/s (dropped {dropped})",
        published_at.as_secs_f64(),
        total as f64 / published_at.as_secs_f64()
    );
    println!(
        "  hub caught up (stored once, shown, acked): {:.1} s, {:.0} events/s",
        stored_in.as_secs_f64(),
        total as f64 / stored_in.as_secs_f64()
    );
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    hub_store.flush().await.expect("flush");
    // What the hub's store holds, counted in SQLite itself: every call and line, once.
    let db = rusqlite::Connection::open(
        tmp.path()
            .join("hub")
            .join(callguard::sinks::store::DB_FILE),
    )
    .expect("the hub's database");
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let (stored_calls, stored_lines, stored_risk, ended) = (
        count("SELECT count(*) FROM calls"),
        count("SELECT count(*) FROM segments"),
        count("SELECT count(*) FROM risk_points"),
        count("SELECT count(*) FROM calls WHERE outcome = 'hangup'"),
    );
    println!(
        "  hub store: {stored_calls} calls ({ended} ended), {stored_lines} lines, {stored_risk} risk points"
    );
    assert_eq!(
        (stored_calls, ended, stored_lines),
        (calls as i64, calls as i64, (calls * lines) as i64),
        "the hub did not store everything exactly once"
    );
    let _ = nats.kill();
    let _ = nats.wait();
}
