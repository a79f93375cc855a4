//! The call store at the size a busy contact centre reaches in a few weeks: 10,000 stored calls
//! of 12 transcript lines each (English and Mandarin), a tenth of them escalated. Measures what
//! the review pages and the API ask of it (the newest page, full-text search in both
//! languages, filters, one call in full) and what every live call costs the writer (one
//! call's events committed). Run with `cargo bench --bench store`; figures are in the README.

use std::hint::black_box;

use callguard::domain::call::CallInfo;
use callguard::domain::event::Event;
use callguard::sinks::store::{CallFilter, Store, StoreReader};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const CALLS: usize = 10_000;

const EN: [&str; 8] = [
    "Good morning, thank you for calling, how can I help you today?",
    "I am calling about my washing machine, it was supposed to arrive on Monday.",
    "Let me check the order for you, one moment please.",
    "This is the third time I am calling and nobody has fixed it.",
    "I understand, I am sorry about the delay with the delivery.",
    "I want a refund today or I will cancel my contract.",
    "The technician will visit tomorrow between nine and twelve.",
    "Thank you, that sounds good, have a nice day.",
];
const ZH: [&str; 8] = [
    "您好，请问有什么可以帮您？",
    "我的洗衣机又坏了，已经修了三次了。",
    "请稍等，我帮您查一下订单。",
    "你们一直在推脱，我要投诉你们。",
    "非常抱歉给您带来不便，我们马上处理。",
    "今天不给我退款我就取消合同。",
    "师傅明天上午九点到十二点上门。",
    "好的，谢谢，再见。",
];
const PRESS_EN: &str = "This is a disgrace, I will call a journalist and tell the press.";
const PRESS_ZH: &str = "再不解决我就找律师，还要找媒体曝光。";

fn event(v: serde_json::Value) -> Event {
    serde_json::from_value(v).expect("a valid event")
}

/// One call's events as the live pipeline stores them: its lines, a risk point, and for every
/// tenth call a media threat with its signal and transfer prompt.
fn call_events(n: usize) -> (CallInfo, Vec<Event>) {
    let id = format!("call-{n}");
    let zh = n.is_multiple_of(3);
    let info: CallInfo = serde_json::from_value(json!({
        "call_id": id, "source": "twilio", "legs": ["customer", "agent"],
        "sample_rate": 8000, "agent": format!("{}", 1000 + n % 40), "metadata": null
    }))
    .expect("a valid call");
    let lines = if zh { &ZH } else { &EN };
    let mut events = Vec::new();
    for i in 0..12usize {
        let leg = if i % 2 == 0 { "agent" } else { "customer" };
        let hot = n.is_multiple_of(10) && i == 9;
        let text = match (hot, zh) {
            (true, true) => PRESS_ZH,
            (true, false) => PRESS_EN,
            _ => lines[(i + n) % lines.len()],
        };
        let start = i as u64 * 5000;
        events.push(event(
            json!({"type": "transcript", "call_id": id, "leg": leg,
            "start_ms": start, "end_ms": start + 4500, "at_ms": start + 4800, "text": text,
            "lang": if zh { "zh" } else { "en" }, "final": true}),
        ));
        if hot {
            let at = start + 4800;
            events.push(event(
                json!({"type": "signal", "call_id": id, "kind": "threat_media",
                "leg": "customer", "at_ms": at, "start_ms": start, "end_ms": start + 4500,
                "terms": ["journalist"]}),
            ));
            events.push(event(json!({"type": "risk", "call_id": id, "at_ms": at,
                "score": 90.0, "level": "escalate", "reasons": []})));
            events.push(event(json!({"type": "alert", "call_id": id,
                "alert_id": format!("{id}-a1"), "at_ms": at, "level": "escalate", "score": 90.0,
                "reasons": [{"kind": "threat_media", "points": 70.0, "count": 1}],
                "evidence": {"quotes": [{"leg": "customer", "start_ms": start,
                    "end_ms": start + 4500, "text": text}], "raised_voice": []},
                "customer_type": "problem_led",
                "suggestion": {"lang": "en", "opening": "I'm very sorry.", "steps": [],
                    "deadline": "10 minutes"}})));
        }
    }
    (info, events)
}

fn populated() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut store = Store::open(dir.path()).expect("a new store");
    let t0 = 1_790_000_000_000u64;
    for n in 0..CALLS {
        let (info, events) = call_events(n);
        let start = t0 + n as u64 * 60_000;
        store.call_started(&info, start).expect("call stored");
        store.record_batch(&events).expect("events stored");
        store
            .call_ended(
                &info.call_id,
                &callguard::domain::call::EndReason::Hangup,
                start + 60_000,
            )
            .expect("end stored");
    }
    (dir, store)
}

fn reads(c: &mut Criterion) {
    let (dir, _store) = populated();
    let reader = StoreReader::open(dir.path()).expect("a reader");
    let mut g = c.benchmark_group("store_10k_calls");
    let run = |g: &mut criterion::BenchmarkGroup<'_, _>, name: &str, f: CallFilter| {
        g.bench_function(name, |b| {
            b.iter(|| black_box(reader.list_calls(&f).expect("a page")))
        });
    };
    run(&mut g, "newest_page_50", CallFilter::default());
    run(
        &mut g,
        "search_en_word",
        CallFilter {
            q: Some("journalist".into()),
            ..CallFilter::default()
        },
    );
    run(
        &mut g,
        "search_zh_word",
        CallFilter {
            q: Some("投诉".into()),
            ..CallFilter::default()
        },
    );
    run(
        &mut g,
        "search_en_phrase",
        CallFilter {
            q: Some("\"washing machine\"".into()),
            ..CallFilter::default()
        },
    );
    run(
        &mut g,
        "filter_escalated_media_agent",
        CallFilter {
            level: Some(callguard::domain::alert::Level::Escalate),
            reason: Some(callguard::domain::signal::SignalKind::ThreatMedia),
            agent: Some("1000".into()),
            ..CallFilter::default()
        },
    );
    run(
        &mut g,
        "page_at_offset_9000",
        CallFilter {
            offset: 9000,
            ..CallFilter::default()
        },
    );
    g.bench_function("one_call_in_full", |b| {
        b.iter(|| black_box(reader.get_call(black_box(5001)).expect("a call")))
    });
    g.finish();
}

fn writes(c: &mut Criterion) {
    let (_dir, mut store) = populated();
    let (info, events) = call_events(10);
    let mut g = c.benchmark_group("store_write");
    g.throughput(Throughput::Elements(events.len() as u64 + 2));
    let mut n = 0u64;
    g.bench_function("one_call_events_committed", |b| {
        b.iter(|| {
            n += 1;
            let mut info = info.clone();
            info.call_id = format!("bench-{n}");
            let events: Vec<Event> = events
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).expect("serialisable");
                    v["call_id"] = json!(info.call_id);
                    serde_json::from_value(v).expect("an event")
                })
                .collect();
            store.call_started(&info, n).expect("stored");
            store.record_batch(&events).expect("stored");
            store
                .call_ended(
                    &info.call_id,
                    &callguard::domain::call::EndReason::Hangup,
                    n + 1,
                )
                .expect("stored");
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = reads, writes
}
criterion_main!(benches);
