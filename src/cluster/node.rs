//! The asr role: this process's Whisper pool serving every edge in the cluster.
//!
//! Finals come from the JetStream work queue, riskiest rank first, at most as many at a time as
//! the pool has workers (the rest stay in the stream for other nodes). Each is acked only
//! after its transcript has been published and flushed to NATS, and marked in progress while
//! Whisper works on it, so JetStream hands an utterance to another node only when this one
//! has died (or gone silent past `cluster.ack_wait_ms`). Partials arrive on the asr queue
//! group; the pool takes them only when it has room (its own policy), and a skipped one is
//! answered `shed`. A message this node cannot read is terminated (never redelivered) and
//! logged; the edge times the job out.
//!
//! It does not decide anything about calls: it only transcribes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::wire::{self, Reply, WireOutput};
use crate::cluster::{ASR_GROUP, ClusterConfig, ClusterError, PARTIAL_SUBJECT, final_consumer};
use crate::domain::alert::Level;
use crate::pipeline::asr::worker::{AsrError, AsrOutput, AsrPool, CallRisk, JobKind, JobMeta};

/// How long an idle node waits before asking the stream again.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How long one ask for a final may take. The server answers at once (a message or "none"),
/// but an answer lost around a reconnection would otherwise leave the node waiting for ever,
/// taking no more utterances: seen about one NATS restart in twenty before this bound.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the cluster until `stop`, then finishes (and acks) the finals it holds.
pub async fn run_asr_node(
    client: async_nats::Client,
    cfg: ClusterConfig,
    pool: Arc<AsrPool>,
    node: String,
    stop: CancellationToken,
) -> Result<(), ClusterError> {
    let js = jetstream::new(client.clone());
    let stream = crate::cluster::ensure_streams(&js, &cfg).await?;
    let mut consumers = Vec::new();
    for rank in (0..3u8).rev() {
        let c: jetstream::consumer::PullConsumer = stream
            .get_consumer(&final_consumer(rank))
            .await
            .map_err(|e| ClusterError::JetStream {
                what: "consumer",
                message: e.to_string(),
            })?;
        consumers.push(c);
    }
    let mut partials =
        crate::cluster::subscribe(&client, PARTIAL_SUBJECT.into(), Some(ASR_GROUP)).await?;
    tracing::info!(%node, workers = pool.stats().workers, "asr node serving the cluster");
    let tasks = TaskTracker::new();

    // Partials: straight into the pool, which refuses them when it has no room.
    let p_client = client.clone();
    let p_pool = Arc::clone(&pool);
    let p_node = node.clone();
    let p_stop = stop.clone();
    let p_tasks = tasks.clone();
    tasks.spawn(async move {
        loop {
            let msg = tokio::select! {
                m = partials.next() => m,
                () = p_stop.cancelled() => break,
            };
            let Some(msg) = msg else { break };
            let (header, job) = match wire::decode_job(&msg.payload) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable partial ignored");
                    continue;
                }
            };
            let meta = JobMeta::new(header.call_id.clone(), JobKind::Partial, risk(header.rank));
            let rx = p_pool.enqueue(job, meta);
            let (client, node) = (p_client.clone(), p_node.clone());
            p_tasks.spawn(async move {
                let result = match rx {
                    Ok(rx) => rx.await.unwrap_or(Err(AsrError::Closed)),
                    Err(e) => Err(e),
                };
                let reply = reply_for(&header.id, &node, result);
                if let Ok(bytes) = serde_json::to_vec(&reply) {
                    let _ = client.publish(header.reply_to, bytes.into()).await;
                }
            });
        }
    });

    // Finals: one permit per worker, so this node holds no more than it can start.
    let permits = Arc::new(Semaphore::new(pool.stats().workers.max(1)));
    let ack_wait = cfg.ack_wait();
    'outer: loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p,
            () = stop.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let msg = loop {
            if stop.is_cancelled() {
                break 'outer;
            }
            match next_final(&consumers).await {
                Some(m) => break m,
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = stop.cancelled() => break 'outer,
                    }
                }
            }
        };
        let (client, pool, node) = (client.clone(), Arc::clone(&pool), node.clone());
        tasks.spawn(async move {
            transcribe_final(msg, client, pool, &node, ack_wait).await;
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
    let _ = client.flush().await;
    Ok(())
}

/// The next final waiting, riskiest rank first; none when every rank is empty (or NATS is
/// unreachable, or its answer is late: the loop asks again). A message delivered after its
/// ask was given up is not lost: unacked, JetStream hands it out again after `ack_wait`.
async fn next_final(consumers: &[jetstream::consumer::PullConsumer]) -> Option<jetstream::Message> {
    for c in consumers {
        let ask = async {
            let mut batch = c.fetch().max_messages(1).messages().await.ok()?;
            batch.next().await?.ok()
        };
        match tokio::time::timeout(FETCH_TIMEOUT, ask).await {
            Ok(Some(m)) => return Some(m),
            Ok(None) => {}
            Err(_) => tracing::debug!("no answer to a fetch in time: asking again"),
        }
    }
    None
}

async fn transcribe_final(
    msg: jetstream::Message,
    client: async_nats::Client,
    pool: Arc<AsrPool>,
    node: &str,
    ack_wait: Duration,
) {
    let (header, job) = match wire::decode_job(&msg.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable utterance terminated");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    // Offline in the pool's terms: a cluster final is never shed or degraded here, since
    // its edge is waiting for it and other nodes add the capacity.
    let meta = JobMeta {
        live: false,
        ..JobMeta::new(header.call_id.clone(), JobKind::Final, risk(header.rank))
    };
    let rx = match pool.enqueue(job, meta) {
        Ok(rx) => rx,
        Err(e) => {
            // Full or closing: another node (or this one, later) takes it.
            tracing::debug!(call_id = %header.call_id, error = %e, "utterance handed back");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await;
            return;
        }
    };
    // Tell JetStream the node is alive and working while Whisper runs.
    let mut rx = rx;
    let mut progress = tokio::time::interval(ack_wait / 3);
    progress.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut rx => break r.unwrap_or(Err(AsrError::Closed)),
            _ = progress.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    };
    if matches!(result, Err(AsrError::Closed)) {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
        return;
    }
    let reply = reply_for(&header.id, node, result);
    let Ok(bytes) = serde_json::to_vec(&reply) else {
        return;
    };
    // Acked only once JetStream has stored the answer (until its edge reads it, even across
    // a reconnection): dying before this costs a redelivery (and the edge ignores a second
    // answer), never the words.
    let js = jetstream::new(client);
    let stored = match js.publish(header.reply_to, bytes.into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if !stored {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
        return;
    }

    if let Err(e) = msg.ack().await {
        tracing::warn!(error = %e, job = %header.id, "ack lost: the utterance may be transcribed twice");
    }
}

fn risk(rank: u8) -> CallRisk {
    let r = CallRisk::default();
    r.set(match rank {
        0 => Level::Calm,
        1 => Level::Watch,
        _ => Level::Escalate,
    });
    r
}

fn reply_for(id: &str, node: &str, result: Result<AsrOutput, AsrError>) -> Reply {
    let (output, error) = match result {
        Ok(o) => (Some(WireOutput::from(&o)), None),
        Err(AsrError::Shed | AsrError::Superseded) => (None, Some(wire::SHED.to_owned())),
        Err(e) => (None, Some(e.to_string())),
    };
    Reply {
        v: wire::VERSION,
        id: id.to_owned(),
        node: node.to_owned(),
        output,
        error,
    }
}
