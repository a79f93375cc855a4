//! `/metrics`: the daemon's counters in the Prometheus text format (version 0.0.4), read from
//! where they already live (the hub's counters, ingest's refusals, the Whisper pool's
//! statistics, the webhook's delivery counts) when scraped. Nothing is stored here and nothing is pushed.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::cluster::events::PublisherStats;
use crate::ingest::IngestCounters;
use crate::pipeline::asr::worker::Transcriber;
use crate::sinks::hub::state::Hub;

/// Accumulates the exposition text.
struct Exposition(String);

impl Exposition {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.0,
            "# HELP callguard_{name} {help}\n# TYPE callguard_{name} {kind}\ncallguard_{name} {value}"
        );
    }
    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.metric(name, "gauge", help, value);
    }
    fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.metric(name, "counter", help, value);
    }
}

/// The exposition text for one scrape.
pub fn render(
    hub: &Hub,
    pool: Option<&dyn Transcriber>,
    ingest: &IngestCounters,
    cluster: Option<&PublisherStats>,
) -> String {
    let mut out = Exposition(String::with_capacity(4096));
    let c = &hub.counters;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    out.gauge(
        "active_calls",
        "Calls being monitored now.",
        hub.active_calls(),
    );
    out.counter(
        "calls_total",
        "Calls monitored since start.",
        n(&c.calls_total),
    );
    out.counter(
        "calls_refused_total",
        "New calls refused: at hub.max_calls, or a call id already being monitored.",
        n(&c.calls_refused),
    );
    out.gauge(
        "ws_clients",
        "Connected supervisor, agent and QA screens.",
        hub.clients(),
    );
    out.gauge(
        "ws_queued_messages",
        "Messages waiting in screens' queues.",
        hub.queued_messages(),
    );
    out.counter(
        "ws_messages_sent_total",
        "Messages queued for screens.",
        n(&c.messages_sent),
    );
    out.counter(
        "ws_messages_dropped_total",
        "Partial transcripts dropped for screens that fell behind.",
        n(&c.messages_dropped),
    );
    out.counter(
        "ws_clients_dropped_total",
        "Screens disconnected for falling a whole queue behind.",
        n(&c.clients_dropped),
    );
    out.counter(
        "ws_commands_refused_total",
        "Client commands answered with an error.",
        n(&c.commands_refused),
    );
    out.counter(
        "alerts_total",
        "Transfer prompts fired.",
        n(&c.alerts_total),
    );
    out.counter(
        "alerts_accepted_total",
        "Transfer prompts accepted by a supervisor.",
        n(&c.alerts_accepted),
    );
    out.counter(
        "alerts_dismissed_total",
        "Transfer prompts dismissed.",
        n(&c.alerts_dismissed),
    );
    out.counter(
        "alerts_escalated_total",
        "Transfer prompts re-sent to every supervisor for want of an answer.",
        n(&c.alerts_escalated),
    );
    out.counter(
        "ingest_refused_total",
        "Ingest connections refused for missing or wrong credentials.",
        n(&ingest.refused),
    );
    out.counter(
        "ingest_errors_total",
        "Ingest connections closed for malformed frames.",
        n(&ingest.errors),
    );

    // A cluster hub has no Whisper of its own.
    if let Some(pool) = pool {
        let a = pool.stats();
        out.gauge("asr_workers", "Whisper worker threads.", a.workers);
        out.gauge(
            "asr_busy_workers",
            "Whisper workers transcribing now.",
            a.busy_workers,
        );
        out.gauge(
            "asr_queued_utterances",
            "Finished utterances waiting for a Whisper worker.",
            a.queued_finals,
        );
        out.gauge(
            "asr_queued_partials",
            "Partial-transcript jobs waiting for a Whisper worker.",
            a.queued_partials,
        );
        out.gauge(
            "asr_lag_seconds",
            "How long the oldest waiting utterance has waited: the transcription lag.",
            format_args!("{:.3}", a.oldest_wait_ms as f64 / 1000.0),
        );
        out.counter(
            "asr_utterances_total",
            "Utterances transcribed.",
            a.finals_done,
        );
        out.counter(
            "asr_partials_total",
            "Partial transcripts made.",
            a.partials_done,
        );
        out.counter(
            "asr_utterances_dropped_total",
            "Utterances not transcribed because the queue was full (overload).",
            a.finals_refused,
        );
        out.counter(
        "asr_utterances_shed_total",
        "Utterances of live calls skipped past capacity after waiting too long, lowest risk first (asr.shed_finals_after_ms).",
        a.finals_shed,
    );
        out.counter(
        "asr_utterances_degraded_total",
        "Utterances of calm calls decoded greedily instead of with the beam because transcription was behind.",
        a.finals_degraded,
    );
        out.counter(
            "asr_partials_aborted_total",
            "Partial transcripts stopped midway because a whole utterance arrived for the worker.",
            a.partials_aborted,
        );
        out.counter(
            "asr_utterances_boosted_total",
            "Utterances that found every worker idle and ran with all the workers' threads.",
            a.finals_boosted,
        );
        out.counter(
        "asr_queue_wait_seconds_total",
        "Time the transcribed utterances waited for a worker, summed (over asr_utterances_total: the mean wait).",
        format!("{:.3}", a.final_wait_ms as f64 / 1000.0),
    );
        out.counter(
            "asr_partials_shed_total",
            "Partial transcripts skipped because transcription was behind.",
            a.partials_shed,
        );
        out.counter(
            "asr_partials_superseded_total",
            "Queued partials replaced by a newer partial or the final words.",
            a.partials_superseded,
        );
        out.counter(
            "asr_failures_total",
            "Transcription jobs that failed.",
            a.failed,
        );
        out.counter(
            "asr_audio_seconds_total",
            "Audio transcribed.",
            format_args!("{:.3}", a.audio_ms as f64 / 1000.0),
        );
        out.counter(
            "asr_compute_seconds_total",
            "Worker time spent transcribing.",
            format_args!("{:.3}", a.compute_ms as f64 / 1000.0),
        );
        out.gauge(
            "asr_real_time_factor",
            "Worker seconds per second of audio since start; the pool keeps up below asr_workers.",
            format_args!("{:.4}", a.real_time_factor()),
        );
    }

    if let Some(w) = hub.webhook() {
        let w = w.stats();
        out.counter(
            "webhook_delivered_total",
            "Webhook deliveries answered 2xx.",
            w.delivered,
        );
        out.counter(
            "webhook_failed_total",
            "Webhook deliveries given up.",
            w.failed,
        );
        out.counter(
            "webhook_retried_total",
            "Webhook delivery retries.",
            w.retried,
        );
        out.counter(
            "webhook_dropped_total",
            "Webhook deliveries dropped because the queue was full.",
            w.dropped,
        );
    }
    if let Some(c) = cluster {
        out.counter(
            "cluster_events_published_total",
            "Events this process stored in the cluster's event stream (for the hubs).",
            n(&c.published),
        );
        out.counter(
            "cluster_events_dropped_total",
            "Events not sent to the hubs because NATS was away longer than the publisher's queue lasts (the local store kept them).",
            n(&c.dropped),
        );
        out.counter(
            "cluster_partials_dropped_total",
            "Partial transcript lines not sent to the hubs because the publisher was behind.",
            n(&c.partials_dropped),
        );
    }
    out.0
}
