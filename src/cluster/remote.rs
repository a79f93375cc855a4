//! The edge's Whisper queue when the workers are elsewhere: a [`Transcriber`] that publishes
//! each utterance to NATS and answers the call when an asr node's transcript comes back.
//!
//! Finals are published to JetStream (stored until an asr node acks them, so a node that dies
//! mid-utterance costs a redelivery, not the words), with the job id as the message id so that
//! a publish retried after a lost acknowledgement is stored once. Partials are plain messages
//! to the asr queue group: cheap, and worthless once late. Each job waits in a table of
//! pending jobs; the first answer with its id completes it and a later duplicate (a
//! redelivered utterance answered twice) is ignored. A job with no answer in time is answered
//! `Unavailable` (finals, counted as refused) or `Shed` (partials): calls never wait forever.
//! Answers come through a durable JetStream consumer, so one published while this edge was
//! reconnecting waits for it. When NATS comes back after an outage, every final still
//! unanswered is sent again under a new message id, since a server that died may have lost
//! it (or its answer); the first answer wins.
//!
//! It does not order, shed or degrade: the asr nodes' own scheduler does, by the call's risk
//! sent with each utterance. It does not retry a final itself: JetStream redelivers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::cluster::wire::{self, JobHeader, WireKind};
use crate::cluster::{
    ClusterConfig, ClusterError, FINAL_SUBJECT, PARTIAL_SUBJECT, REPLY_PREFIX, REPLY_STREAM,
};
use crate::pipeline::asr::worker::{
    AsrError, AsrJob, AsrOutput, AsrReceiver, AsrStats, JobKind, JobMeta, Transcriber,
};

struct Pending {
    reply: oneshot::Sender<Result<AsrOutput, AsrError>>,
    kind: JobKind,
    sent: Instant,
    audio_ms: u64,
    /// A final's subject and message, kept to send again after NATS comes back.
    resend: Option<(String, Arc<Vec<u8>>)>,
}

#[derive(Default)]
struct Table {
    jobs: HashMap<String, Pending>,
    stats: AsrStats,
    audio_ms: u64,
}

impl Table {
    fn waiting(&self, kind: JobKind) -> usize {
        self.jobs.values().filter(|p| p.kind == kind).count()
    }
}

/// Utterances out to the asr nodes, answers back (see the module doc).
pub struct RemoteAsr {
    client: async_nats::Client,
    js: jetstream::Context,
    reply_to: String,
    /// `<node>-<run>-`: ids stay unique across restarts of a node with the same name.
    id_prefix: String,
    next: AtomicU64,
    table: Arc<Mutex<Table>>,
    /// The most finals that may wait for an answer; past it a final is refused (`QueueFull`).
    max_finals: usize,
    final_timeout: Duration,
    partial_timeout: Duration,
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RemoteAsr {
    /// Subscribes to this node's answers and starts the task that receives them and the one
    /// that times out unanswered jobs; both stop with `stop`.
    pub async fn start(
        client: async_nats::Client,
        cfg: &ClusterConfig,
        node: &str,
        max_finals: usize,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, ClusterError> {
        let reply_to = format!("{REPLY_PREFIX}.{node}");
        let js = jetstream::new(client.clone());
        let jerr = |what| move |e: String| ClusterError::JetStream { what, message: e };
        let durable = format!("edge-{node}");
        let consumer: jetstream::consumer::PullConsumer = js
            .get_stream(REPLY_STREAM)
            .await
            .map_err(|e| jerr("reply stream")(e.to_string()))?
            .get_or_create_consumer(
                &durable,
                jetstream::consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: reply_to.clone(),
                    // Answers for an earlier run of this node name are of no use.
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    // An edge gone for an hour (a pid-named one that will not return) is
                    // forgotten by the server.
                    inactive_threshold: Duration::from_secs(3600),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| jerr("reply consumer")(e.to_string()))?;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let me = Arc::new(Self {
            js,
            client,
            reply_to,
            id_prefix: format!("{node}-{run:x}-"),
            next: AtomicU64::new(1),
            table: Arc::new(Mutex::new(Table::default())),
            max_finals,
            final_timeout: Duration::from_millis(cfg.final_timeout_ms),
            partial_timeout: Duration::from_millis(cfg.partial_timeout_ms),
        });
        let table = Arc::clone(&me.table);
        let stop_answers = stop.clone();
        tokio::spawn(async move {
            // The durable consumer survives NATS restarts: when its message stream ends or
            // fails, it is opened again where it left off.
            while !stop_answers.is_cancelled() {
                let mut answers = match consumer.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read transcripts yet: retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                            () = stop_answers.cancelled() => break,
                        }
                    }
                };
                loop {
                    let msg = tokio::select! {
                        m = answers.next() => m,
                        () = stop_answers.cancelled() => break,
                    };
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "transcript stream interrupted");
                            continue;
                        }
                        None => break,
                    };
                    match wire::decode_reply(&msg.payload) {
                        Ok(r) => answer(&table, r),
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable transcript answer ignored")
                        }
                    }
                    let _ = msg.ack().await;
                }
            }
        });
        let sweeper = Arc::clone(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut down_since: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                let now = Instant::now();
                sweeper.time_out(now);
                let connected =
                    sweeper.client.connection_state() == async_nats::connection::State::Connected;
                match (connected, down_since) {
                    (false, None) => down_since = Some(now),
                    (true, Some(_)) => {
                        down_since = None;
                        sweeper.resend_unanswered(now);
                    }
                    _ => {}
                }
            }
        });
        Ok(me)
    }

    /// Answers the jobs that have waited past their limit.
    fn time_out(&self, now: Instant) {
        let mut t = lock(&self.table);
        let late: Vec<String> = t
            .jobs
            .iter()
            .filter(|(_, p)| {
                let limit = match p.kind {
                    JobKind::Final => self.final_timeout,
                    JobKind::Partial => self.partial_timeout,
                };
                now.saturating_duration_since(p.sent) > limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            let Some(p) = t.jobs.remove(&id) else {
                continue;
            };
            let err = match p.kind {
                JobKind::Final => {
                    t.stats.finals_refused += 1;
                    tracing::warn!(job = %id, "no transcript from any asr node in time");
                    AsrError::Unavailable("no asr node answered in time".into())
                }
                JobKind::Partial => {
                    t.stats.partials_shed += 1;
                    AsrError::Shed
                }
            };
            let _ = p.reply.send(Err(err));
        }
    }
}

/// Completes the job an answer is for; a second answer for the same id finds nothing.
fn answer(table: &Mutex<Table>, r: wire::Reply) {
    let mut t = lock(table);
    let Some(p) = t.jobs.remove(&r.id) else {
        return;
    };
    let result = match (r.output, r.error) {
        (Some(out), _) => {
            match p.kind {
                JobKind::Final => t.stats.finals_done += 1,
                JobKind::Partial => t.stats.partials_done += 1,
            }
            let out = AsrOutput::from(out);
            t.stats.compute_ms += out.compute_ms;
            t.audio_ms += p.audio_ms;
            t.stats.final_wait_ms += p.sent.elapsed().as_millis() as u64;
            Ok(out)
        }
        (None, Some(e)) if e == wire::SHED => {
            t.stats.partials_shed += 1;
            Err(AsrError::Shed)
        }
        (None, e) => {
            let e = e.unwrap_or_else(|| "an empty answer".into());
            tracing::warn!(node = %r.node, error = %e, "asr node could not transcribe");
            Err(AsrError::Whisper(e))
        }
    };
    let _ = p.reply.send(result);
}

impl Transcriber for RemoteAsr {
    fn enqueue(&self, job: AsrJob, meta: JobMeta) -> Result<AsrReceiver, AsrError> {
        if job.samples.is_empty() {
            return Err(AsrError::Empty);
        }
        let id = format!(
            "{}{}",
            self.id_prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (lang, detect) = wire::lang_fields(&job.lang);
        let rank = meta.risk.rank().min(2);
        let header = JobHeader {
            v: wire::VERSION,
            id: id.clone(),
            reply_to: self.reply_to.clone(),
            call_id: meta.call_id.to_string(),
            kind: WireKind::from(meta.kind),
            leg: job.leg,
            start_ms: job.start_ms,
            lang,
            detect,
            rank,
        };
        let audio_ms = job.samples.len() as u64 * 1000 / 16_000;
        let payload = wire::encode_job(&header, &job);
        // A final's message is kept, shared rather than copied, to send again after an outage.
        let (final_msg, partial) = match meta.kind {
            JobKind::Final => (
                Some((format!("{FINAL_SUBJECT}.{rank}"), Arc::new(payload))),
                None,
            ),
            JobKind::Partial => (None, Some(payload)),
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut t = lock(&self.table);
            if meta.kind == JobKind::Final && t.waiting(JobKind::Final) >= self.max_finals {
                t.stats.finals_refused += 1;
                return Err(AsrError::QueueFull);
            }
            t.jobs.insert(
                id.clone(),
                Pending {
                    reply: tx,
                    kind: meta.kind,
                    sent: Instant::now(),
                    audio_ms,
                    resend: final_msg.clone(),
                },
            );
        }
        let me = self.handle();
        if let Some((subject, payload)) = final_msg {
            publish_final(self.js.clone(), me, subject, payload, id.clone(), id);
        } else if let Some(payload) = partial {
            let client = self.client.clone();
            tokio::spawn(async move {
                if client
                    .publish(PARTIAL_SUBJECT, payload.into())
                    .await
                    .is_err()
                {
                    me.fail(&id, AsrError::Shed);
                }
            });
        }
        Ok(rx)
    }

    fn stats(&self) -> AsrStats {
        let t = lock(&self.table);
        AsrStats {
            queued_finals: t.waiting(JobKind::Final),
            queued_partials: t.waiting(JobKind::Partial),
            oldest_wait_ms: t
                .jobs
                .values()
                .filter(|p| p.kind == JobKind::Final)
                .map(|p| p.sent.elapsed().as_millis() as u64)
                .max()
                .unwrap_or(0),
            audio_ms: t.audio_ms,
            ..t.stats.clone()
        }
    }
}

/// Publishes a final to JetStream under the message id `msg_id` until it is stored or its job
/// is no longer waiting (answered or timed out). JetStream drops a second copy with the same
/// id, so a publish repeated after a lost acknowledgement is stored once.
fn publish_final(
    js: jetstream::Context,
    me: Handle,
    subject: String,
    payload: Arc<Vec<u8>>,
    id: String,
    msg_id: String,
) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let msg = jetstream::message::PublishMessage::build()
                .message_id(&msg_id)
                .payload(payload.as_ref().clone().into());
            let stored = match js.send_publish(subject.clone(), msg).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(()) => break,
                Err(e) if !me.is_waiting(&id) => {
                    tracing::debug!(job = %id, error = %e, "gave up publishing");
                    break;
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "utterance not stored yet: retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

impl RemoteAsr {
    /// After NATS comes back, sends again every final still unanswered that was sent before:
    /// a server that died may have lost a stored utterance (JetStream writes to disk lazily)
    /// or an answer. Under a new message id, so JetStream stores it again; the header's job id
    /// is unchanged, so the first answer completes the job and a second is ignored.
    fn resend_unanswered(&self, before: Instant) {
        let again: Vec<(String, String, Arc<Vec<u8>>)> = {
            let t = lock(&self.table);
            t.jobs
                .iter()
                .filter(|(_, p)| p.sent < before)
                .filter_map(|(id, p)| p.resend.clone().map(|(s, m)| (id.clone(), s, m)))
                .collect()
        };
        if !again.is_empty() {
            tracing::info!(
                finals = again.len(),
                "NATS is back: sending unanswered utterances again"
            );
        }
        let round = self.next.fetch_add(1, Ordering::Relaxed);
        for (id, subject, payload) in again {
            let msg_id = format!("{id}-again-{round}");
            publish_final(self.js.clone(), self.handle(), subject, payload, id, msg_id);
        }
    }
}

/// What a publishing task needs of the queue: a way to fail its job and see whether it still
/// waits (timed out or answered meanwhile).
#[derive(Clone)]
struct Handle(Arc<Mutex<Table>>);

impl Handle {
    fn fail(&self, id: &str, err: AsrError) {
        let mut t = lock(&self.0);
        if let Some(p) = t.jobs.remove(id) {
            t.stats.partials_shed += u64::from(p.kind == JobKind::Partial);
            let _ = p.reply.send(Err(err));
        }
    }

    fn is_waiting(&self, id: &str) -> bool {
        lock(&self.0).jobs.contains_key(id)
    }
}

impl RemoteAsr {
    fn handle(&self) -> Handle {
        Handle(Arc::clone(&self.table))
    }
}
