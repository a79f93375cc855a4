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
use crate::cluster::{ClusterConfig, FINAL_SUBJECT, PARTIAL_SUBJECT, REPLY_PREFIX};
use crate::pipeline::asr::worker::{
    AsrError, AsrJob, AsrOutput, AsrReceiver, AsrStats, JobKind, JobMeta, Transcriber,
};

struct Pending {
    reply: oneshot::Sender<Result<AsrOutput, AsrError>>,
    kind: JobKind,
    sent: Instant,
    audio_ms: u64,
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
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let reply_to = format!("{REPLY_PREFIX}.{node}");
        let mut answers = client.subscribe(reply_to.clone()).await?;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let me = Arc::new(Self {
            js: jetstream::new(client.clone()),
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
            loop {
                let msg = tokio::select! {
                    m = answers.next() => m,
                    () = stop_answers.cancelled() => break,
                };
                let Some(msg) = msg else { break };
                match wire::decode_reply(&msg.payload) {
                    Ok(r) => answer(&table, r),
                    Err(e) => tracing::warn!(error = %e, "unreadable transcript answer ignored"),
                }
            }
        });
        let sweeper = Arc::clone(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => sweeper.time_out(Instant::now()),
                    () = stop.cancelled() => break,
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
                },
            );
        }
        let me = self.handle();
        match meta.kind {
            JobKind::Partial => {
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
            JobKind::Final => {
                let js = self.js.clone();
                let subject = format!("{FINAL_SUBJECT}.{rank}");
                tokio::spawn(async move {
                    // Stored once JetStream acknowledges; until then (NATS restarting) the
                    // client retries, and a failure ends with the job answered, never hung.
                    let mut delay = Duration::from_millis(200);
                    loop {
                        let msg = jetstream::message::PublishMessage::build()
                            .message_id(&id)
                            .payload(payload.clone().into());
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
