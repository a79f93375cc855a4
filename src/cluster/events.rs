//! Calls' events across the cluster: edges publish what their calls commit, hubs store and
//! show it (`docs/cluster.md`, "Events").
//!
//! - [`Publisher`]: one task per process that moves messages to NATS in the order they were
//!   given, each event to the JetStream stream `CALLGUARD_EVENTS` under its own message id
//!   (retried until stored), partial transcripts as plain NATS messages (shown, never stored).
//!   Its queue is bounded: when it is full an event is dropped and counted, never waited for,
//!   so a NATS outage longer than the queue costs the hubs events (the edge's own store keeps
//!   them), never a call.
//! - [`EdgeLink`]: an edge's side. It is the calls' [`Mirror`], sends a heartbeat every
//!   [`HEARTBEAT`] with the calls it holds, answers a hub asking for the state of calls it
//!   does not know, and takes decisions made on any hub to its own screens (the agent's; in
//!   `--role all` its hub consumer does that).
//! - [`run_hub`]: a hub's side. One durable consumer per hub node stores every message once
//!   (the store remembers message ids) and only then shows it and acks it; a hub killed at any
//!   point gets the unacked messages again and stores nothing twice. Heartbeats tell it which
//!   edges live; a call whose edge is silent for `cluster.edge_timeout_ms`, or came back as a
//!   new run, is marked `lost_edge`, kept on screen with its last state and ended in the store.
//!
//! Nothing here decides anything about a call: the edge's pipeline does, the hub relays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{ClusterConfig, ClusterError, Role, subscribe};
use crate::domain::alert::AlertStatus;
use crate::domain::call::{CallInfo, EndReason};
use crate::domain::clock::unix_ms;
use crate::domain::event::Event;
use crate::sinks::egress::Mirror;
use crate::sinks::hub::protocol::CallView;
use crate::sinks::hub::state::Hub;
use crate::sinks::store::{Replicated, StoreError, StoreHandle};

/// The stream of every call's events: limits retention (kept a day, for hubs catching up).
pub const EVENT_STREAM: &str = "CALLGUARD_EVENTS";
/// Edges publish to `callguard.evt.call.<edge node>`.
pub const CALL_EVENTS: &str = "callguard.evt.call";
/// Decisions on prompts, from any hub or edge screen.
pub const DECISIONS: &str = "callguard.evt.decided";
/// Partial transcripts, plain NATS: `callguard.live.<edge node>`.
pub const LIVE_PREFIX: &str = "callguard.live";
/// Heartbeats: `callguard.node.<node>`.
pub const HEARTBEAT_PREFIX: &str = "callguard.node";
/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The wire version of every message here.
pub const VERSION: u32 = 1;
/// Messages the publisher holds while NATS is slow or away.
const QUEUE: usize = 20_000;
/// Past this share of the queue, partial transcripts are dropped first.
const PARTIALS_UNDER: usize = QUEUE / 2;

/// The subject on which an edge answers for its calls' state.
pub fn calls_subject(edge: &str) -> String {
    format!("callguard.edge.{edge}.calls")
}

/// The durable consumer a hub stores through.
pub fn hub_consumer(node: &str) -> String {
    format!("hub-{node}")
}

/// One message on the event stream (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// Unique per message (also its `Nats-Msg-Id`): what a hub's store remembers.
    pub id: String,
    /// The node that published it, and that node's run (its start time): a call belongs to
    /// one run of one edge.
    pub node: String,
    pub run: u64,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    CallStarted {
        info: CallInfo,
        started_unix_ms: u64,
    },
    Event {
        event: Event,
    },
    Recording {
        call_id: String,
        path: PathBuf,
    },
    CallEnded {
        call_id: String,
        end: EndReason,
        ended_unix_ms: u64,
    },
    Decided {
        status: AlertStatus,
    },
}

impl Body {
    fn call_id(&self) -> &str {
        match self {
            Body::CallStarted { info, .. } => &info.call_id,
            Body::Event { event } => event.call_id(),
            Body::Recording { call_id, .. } | Body::CallEnded { call_id, .. } => call_id,
            Body::Decided { status } => &status.call_id,
        }
    }
}

/// A node's heartbeat (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u32,
    pub node: String,
    pub role: Role,
    pub run: u64,
    /// The calls an edge holds now.
    #[serde(default)]
    pub calls: Vec<String>,
}

/// Reads a message of this module's version.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct V {
        v: u32,
    }
    let v: V = serde_json::from_slice(bytes).map_err(|e| format!("not a cluster message: {e}"))?;
    if v.v != VERSION {
        return Err(format!(
            "message version {}, this callguard speaks {VERSION}",
            v.v
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("unreadable cluster message: {e}"))
}

enum Out {
    Stored {
        subject: String,
        id: String,
        bytes: bytes::Bytes,
    },
    Live {
        subject: String,
        bytes: bytes::Bytes,
    },
}

/// Counters of the publisher, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub published: AtomicU64,
    /// Events dropped because the queue was full (NATS away too long).
    pub dropped: AtomicU64,
    pub partials_dropped: AtomicU64,
}

/// Publishes this node's messages in order (see the module's notes).
pub struct Publisher {
    node: String,
    run: u64,
    next: AtomicU64,
    tx: mpsc::Sender<Out>,
    pub stats: Arc<PublisherStats>,
}

impl Publisher {
    /// Starts the publishing task (tracked by `tasks`); after `stop` it keeps trying to send
    /// what is queued for up to 10 s.
    pub fn start(
        client: async_nats::Client,
        node: &str,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<Out>(QUEUE);
        let stats = Arc::new(PublisherStats::default());
        let me = Arc::new(Self {
            node: node.to_owned(),
            run: unix_ms(),
            next: AtomicU64::new(1),
            tx,
            stats: Arc::clone(&stats),
        });
        let js = jetstream::new(client.clone());
        tasks.spawn(async move {
            let mut deadline: Option<Instant> = None;
            loop {
                let out = tokio::select! {
                    o = rx.recv() => o,
                    () = stop.cancelled(), if deadline.is_none() => {
                        deadline = Some(Instant::now() + Duration::from_secs(10));
                        rx.close();
                        continue;
                    }
                };
                let Some(out) = out else { break };
                match out {
                    Out::Live { subject, bytes } => {
                        let _ = client.publish(subject, bytes).await;
                    }
                    Out::Stored { subject, id, bytes } => {
                        let mut delay = Duration::from_millis(100);
                        loop {
                            let msg = jetstream::message::PublishMessage::build()
                                .message_id(&id)
                                .payload(bytes.clone());
                            let stored = match js.send_publish(subject.clone(), msg).await {
                                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            };
                            match stored {
                                Ok(()) => {
                                    stats.published.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) if deadline.is_some_and(|d| Instant::now() > d) => {
                                    tracing::warn!(%id, error = %e, "event not published before shutdown");
                                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) => {
                                    tracing::debug!(%id, error = %e, "event not stored yet: retrying");
                                    tokio::time::sleep(delay).await;
                                    delay = (delay * 2).min(Duration::from_secs(2));
                                }
                            }
                        }
                    }
                }
            }
        });
        me
    }

    fn envelope(&self, id: String, body: Body) -> Option<bytes::Bytes> {
        let env = Envelope {
            v: VERSION,
            id,
            node: self.node.clone(),
            run: self.run,
            body,
        };
        serde_json::to_vec(&env).ok().map(bytes::Bytes::from)
    }

    fn fresh_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{:x}-{n}", self.node, self.run)
    }

    /// Queues a message for the event stream; dropped (counted) when the queue is full.
    fn stored(&self, subject: String, id: String, body: Body) {
        let Some(bytes) = self.envelope(id.clone(), body) else {
            return;
        };
        if self
            .tx
            .try_send(Out::Stored { subject, id, bytes })
            .is_err()
        {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "cluster event queue full: events dropped");
            }
        }
    }

    /// Queues a decision on a prompt for every hub and the call's edge. Its id is the alert's:
    /// when two screens decide the same prompt at once, JetStream keeps the first and every
    /// process shows that one.
    pub fn decided(&self, status: &AlertStatus) {
        self.stored(
            DECISIONS.to_owned(),
            format!("decided-{}", status.alert_id),
            Body::Decided {
                status: status.clone(),
            },
        );
    }
}

/// An edge's side of the cluster's events.
pub struct EdgeLink {
    publisher: Arc<Publisher>,
    subject: String,
    live: String,
}

impl EdgeLink {
    /// Starts the heartbeat, the answers to hubs asking for calls' state, and the decisions
    /// coming back to `hub` (this edge's own screens) and `store` (its own record).
    pub async fn start(
        client: async_nats::Client,
        publisher: Arc<Publisher>,
        hub: Arc<Hub>,
        store: StoreHandle,
        role: Role,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<Self>, ClusterError> {
        let node = publisher.node.clone();
        let mut asks = subscribe(&client, calls_subject(&node), None).await?;
        // A process that is a hub too (`all`) takes decisions through its hub's consumer.
        let mut decisions = match role {
            Role::All => None,
            _ => Some(subscribe(&client, DECISIONS.into(), None).await?),
        };
        let beat = Heartbeat {
            v: VERSION,
            node: node.clone(),
            role,
            run: publisher.run,
            calls: Vec::new(),
        };
        let (c, h, s) = (client.clone(), Arc::clone(&hub), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            let subject = format!("{HEARTBEAT_PREFIX}.{}", beat.node);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = s.cancelled() => break,
                }
                let beat = Heartbeat {
                    calls: h.call_ids(),
                    ..beat.clone()
                };
                if let Ok(bytes) = serde_json::to_vec(&beat) {
                    let _ = c.publish(subject.clone(), bytes.into()).await;
                }
            }
        });
        let (c, h, s) = (client.clone(), Arc::clone(&hub), stop.clone());
        tasks.spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = asks.next() => m,
                    () = s.cancelled() => break,
                };
                let Some(msg) = msg else { break };
                let Some(reply) = msg.reply else { continue };
                let ids: Vec<String> = serde_json::from_slice(&msg.payload).unwrap_or_default();
                let views = h.views(&ids);
                if let Ok(bytes) = serde_json::to_vec(&views) {
                    let _ = c.publish(reply, bytes.into()).await;
                }
            }
        });
        let s = stop.clone();
        tasks.spawn(async move {
            let Some(decisions) = decisions.as_mut() else {
                return;
            };
            loop {
                let msg = tokio::select! {
                    m = decisions.next() => m,
                    () = s.cancelled() => break,
                };
                let Some(msg) = msg else { break };
                match decode::<Envelope>(&msg.payload) {
                    Ok(Envelope {
                        body: Body::Decided { status },
                        ..
                    }) => {
                        if hub.apply_decided(&status)
                            && let Err(e) = store.alert_decided(status).await
                        {
                            tracing::error!(error = %e, "decision not stored");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable decision ignored"),
                }
            }
        });
        Ok(Arc::new(Self {
            subject: format!("{CALL_EVENTS}.{node}"),
            live: format!("{LIVE_PREFIX}.{node}"),
            publisher,
        }))
    }
}

impl Mirror for EdgeLink {
    fn call_started(&self, info: &CallInfo, started_unix_ms: u64) {
        let p = &self.publisher;
        p.stored(
            self.subject.clone(),
            p.fresh_id(),
            Body::CallStarted {
                info: info.clone(),
                started_unix_ms,
            },
        );
    }

    fn event(&self, event: &Event) {
        let p = &self.publisher;
        if let Event::Transcript(t) = event
            && !t.is_final
        {
            // Worthless once late: never stored, and the first thing to go when NATS lags.
            if p.tx.capacity() < QUEUE - PARTIALS_UNDER {
                p.stats.partials_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let body = Body::Event {
                event: event.clone(),
            };
            if let Some(bytes) = p.envelope(String::new(), body) {
                let out = Out::Live {
                    subject: self.live.clone(),
                    bytes,
                };
                if p.tx.try_send(out).is_err() {
                    p.stats.partials_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        p.stored(
            self.subject.clone(),
            p.fresh_id(),
            Body::Event {
                event: event.clone(),
            },
        );
    }

    fn recording(&self, call_id: &str, path: &Path) {
        let p = &self.publisher;
        p.stored(
            self.subject.clone(),
            p.fresh_id(),
            Body::Recording {
                call_id: call_id.to_owned(),
                path: path.to_owned(),
            },
        );
    }

    fn call_ended(&self, call_id: &str, end: &EndReason, ended_unix_ms: u64) {
        let p = &self.publisher;
        p.stored(
            self.subject.clone(),
            p.fresh_id(),
            Body::CallEnded {
                call_id: call_id.to_owned(),
                end: end.clone(),
                ended_unix_ms,
            },
        );
    }
}

/// Which edge (and run of it) holds each call, as a hub has heard.
#[derive(Default)]
struct Edges {
    /// node -> (run, last heartbeat).
    seen: HashMap<String, (u64, Instant)>,
    /// call id -> (node, run, first heard of).
    calls: HashMap<String, (String, u64, Instant)>,
}

fn lock_edges(e: &Mutex<Edges>) -> std::sync::MutexGuard<'_, Edges> {
    e.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A hub's side: stores and shows every call's events, watches the edges. Runs until `stop`.
/// In a process that is an edge too (`--role all`), its own calls' events are skipped: its
/// calls are stored and shown already, as in a single process.
pub async fn run_hub(
    client: async_nats::Client,
    cfg: ClusterConfig,
    node: String,
    also_edge: bool,
    hub: Arc<Hub>,
    store: StoreHandle,
    stop: CancellationToken,
) -> Result<(), ClusterError> {
    let js = jetstream::new(client.clone());
    let jerr = |what| move |e: String| ClusterError::JetStream { what, message: e };
    let durable = hub_consumer(&node);
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(EVENT_STREAM)
        .await
        .map_err(|e| jerr("event stream")(e.to_string()))?
        .get_or_create_consumer(
            &durable,
            jetstream::consumer::pull::Config {
                durable_name: Some(durable.clone()),
                // Everything the stream still holds the first time; where it left off after.
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(10),
                max_ack_pending: 1024,
                // A hub gone for longer than the stream keeps events is forgotten; back, it
                // starts from the stream's beginning, and its store skips what it has.
                inactive_threshold: Duration::from_secs(24 * 3600),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| jerr("hub consumer")(e.to_string()))?;
    let mut beats = subscribe(&client, format!("{HEARTBEAT_PREFIX}.*"), None).await?;
    let mut partials = subscribe(&client, format!("{LIVE_PREFIX}.*"), None).await?;
    let edges = Arc::new(Mutex::new(Edges::default()));
    let tasks = TaskTracker::new();

    // Partial transcripts: shown, never stored.
    let (h, s) = (Arc::clone(&hub), stop.clone());
    tasks.spawn(async move {
        loop {
            let msg = tokio::select! {
                m = partials.next() => m,
                () = s.cancelled() => break,
            };
            let Some(msg) = msg else { break };
            if let Ok(Envelope {
                body: Body::Event { event },
                ..
            }) = decode::<Envelope>(&msg.payload)
            {
                h.event(&event);
            }
        }
    });

    // Heartbeats, and the state of calls this hub has not heard of (it restarted mid-call).
    let (h, s, e, c, st) = (
        Arc::clone(&hub),
        stop.clone(),
        Arc::clone(&edges),
        client.clone(),
        store.clone(),
    );
    tasks.spawn(async move {
        loop {
            let msg = tokio::select! {
                m = beats.next() => m,
                () = s.cancelled() => break,
            };
            let Some(msg) = msg else { break };
            let Ok(beat) = decode::<Heartbeat>(&msg.payload) else {
                continue;
            };
            let now = Instant::now();
            let unknown: Vec<String> = {
                let mut edges = lock_edges(&e);
                edges.seen.insert(beat.node.clone(), (beat.run, now));
                // Forget calls of this run that it no longer holds and this hub has ended
                // (a heartbeat can overtake the stream's `call_ended`).
                let held: std::collections::HashSet<&String> = beat.calls.iter().collect();
                edges.calls.retain(|id, (node, run, _)| {
                    *node != beat.node || *run != beat.run || held.contains(id) || h.knows(id)
                });
                for id in &beat.calls {
                    edges
                        .calls
                        .entry(id.clone())
                        .or_insert_with(|| (beat.node.clone(), beat.run, now));
                }
                beat.calls.iter().filter(|id| !h.knows(id)).cloned().collect()
            };
            // Calls marked lost that their edge still holds: it was only cut off.
            for id in &beat.calls {
                if h.is_lost(id)
                    && h.call_found(id)
                    && let Err(err) = st.call_resumed(id.clone()).await
                {
                    tracing::error!(call_id = %id, error = %err, "found call not stored as live");
                }
            }
            if unknown.is_empty() {
                continue;
            }
            let Ok(body) = serde_json::to_vec(&unknown) else {
                continue;
            };
            let asked = tokio::time::timeout(
                Duration::from_secs(2),
                c.request(calls_subject(&beat.node), body.into()),
            )
            .await;
            if let Ok(Ok(reply)) = asked
                && let Ok(views) = serde_json::from_slice::<Vec<CallView>>(&reply.payload)
            {
                for view in views {
                    let id = view.call.call_id.clone();
                    if h.adopt(view) {
                        tracing::info!(call_id = %id, edge = %beat.node, "call taken over from its edge's state");
                    }
                }
            }
        }
    });

    // Edges gone silent, or restarted: their calls are lost.
    let timeout = Duration::from_millis(cfg.edge_timeout_ms);
    let (h, s, e, st) = (
        Arc::clone(&hub),
        stop.clone(),
        Arc::clone(&edges),
        store.clone(),
    );
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = s.cancelled() => break,
            }
            let now = Instant::now();
            let lost: Vec<(String, String)> = {
                let mut edges = lock_edges(&e);
                let Edges { seen, calls } = &mut *edges;
                let lost: Vec<(String, String)> = calls
                    .iter()
                    .filter(|(_, (node, run, first))| match seen.get(node) {
                        Some((r, last)) => {
                            r != run || now.saturating_duration_since(*last) > timeout
                        }
                        None => now.saturating_duration_since(*first) > timeout,
                    })
                    .map(|(id, (node, _, _))| (id.clone(), node.clone()))
                    .collect();
                for (id, _) in &lost {
                    calls.remove(id);
                }
                lost
            };
            for (call_id, edge) in lost {
                if h.call_lost(&call_id, &edge, now) {
                    let end = EndReason::LostEdge(edge);
                    if let Err(err) = st.call_ended(call_id.clone(), end, unix_ms()).await {
                        tracing::error!(%call_id, error = %err, "lost call's end not stored");
                    }
                }
            }
        }
    });

    // The stream: stored once, then shown, then acked, in the stream's order. Up to
    // `IN_FLIGHT` messages wait for the store at once, so that its writer commits them in
    // batches rather than one transaction each.
    let mut inflight = FuturesOrdered::new();
    'outer: while !stop.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event stream yet: retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    finish(done, &hub).await;
                }
                m = messages.next(), if inflight.len() < IN_FLIGHT => {
                    let msg = match m {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "event stream interrupted");
                            continue;
                        }
                        None => break,
                    };
                    match decode::<Envelope>(&msg.payload) {
                        Ok(env) if also_edge && env.node == node
                            && !matches!(env.body, Body::Decided { .. }) => {
                            let _ = msg.ack().await;
                        }
                        Ok(env) => {
                            note_edge(&env, &edges);
                            inflight.push_back(apply(env, msg, store.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable cluster event terminated");
                            let _ = msg.ack_with(AckKind::Term).await;
                        }
                    }
                }
                () = stop.cancelled() => break 'outer,
            }
        }
    }
    // What was taken is stored and acked before the hub goes.
    while let Some(done) = inflight.next().await {
        finish(done, &hub).await;
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Messages a hub has taken from the stream and not yet stored.
const IN_FLIGHT: usize = 256;

/// Which edge (and run) holds the message's call, as the stream says.
fn note_edge(env: &Envelope, edges: &Mutex<Edges>) {
    if matches!(env.body, Body::Decided { .. }) {
        return;
    }
    let call_id = env.body.call_id();
    let mut e = lock_edges(edges);
    if matches!(env.body, Body::CallEnded { .. }) {
        e.calls.remove(call_id);
    } else if !e.calls.contains_key(call_id) {
        e.calls.insert(
            call_id.to_owned(),
            (env.node.clone(), env.run, Instant::now()),
        );
    }
}

/// What to show of a message once stored: given whether it was stored now (not before).
type Show = Box<dyn FnOnce(&Hub, bool) + Send>;

/// A message stored (or not): how to answer JetStream, and what to show.
type Done = (jetstream::Message, AckKind, Box<dyn FnOnce(&Hub) + Send>);

/// Shows a stored message, then acks it. Called in the stream's order (`FuturesOrdered` hands
/// results back in the order they were pushed, though the futures may finish in any order).
async fn finish((msg, ack, show): Done, hub: &Hub) {
    show(hub);
    let _ = msg.ack_with(ack).await;
}

/// Stores one message (once) and says what to show of it: nothing when it was stored before
/// (a redelivery: the screens saw it from the process that stored it) or not at all.
async fn apply(env: Envelope, msg: jetstream::Message, store: StoreHandle) -> Done {
    let call_id = env.body.call_id().to_owned();
    let (write, show): (Replicated, Show) = match env.body {
        Body::CallStarted {
            info,
            started_unix_ms,
        } => {
            let shown = info.clone();
            (
                Replicated::CallStarted(info, started_unix_ms),
                Box::new(move |hub, _| {
                    hub.call_watched(&shown);
                }),
            )
        }
        Body::Event { event } => {
            let shown = event.clone();
            (
                Replicated::Event(event),
                Box::new(move |hub, fresh| {
                    if fresh {
                        hub.event(&shown);
                    }
                }),
            )
        }
        Body::Recording { call_id, path } => {
            (Replicated::SetRecording(call_id, path), Box::new(|_, _| {}))
        }
        Body::CallEnded {
            call_id,
            end,
            ended_unix_ms,
        } => {
            let id = call_id.clone();
            (
                Replicated::CallEnded(call_id, end, ended_unix_ms),
                Box::new(move |hub, _| hub.call_ended(&id)),
            )
        }
        Body::Decided { status } => {
            let shown = status.clone();
            (
                Replicated::AlertDecided(status),
                Box::new(move |hub, _| {
                    hub.apply_decided(&shown);
                }),
            )
        }
    };
    match store.apply_once(env.id.clone(), unix_ms(), write).await {
        Ok(fresh) => (msg, AckKind::Ack, Box::new(move |hub| show(hub, fresh))),
        // Its call's start is not stored yet (redelivered out of order after a crash): later.
        Err(StoreError::UnknownCall { .. }) => (
            msg,
            AckKind::Nak(Some(Duration::from_secs(1))),
            Box::new(|_| {}),
        ),
        Err(e) => {
            tracing::error!(id = %env.id, %call_id, error = %e, "cluster event not stored: retrying later");
            (
                msg,
                AckKind::Nak(Some(Duration::from_secs(2))),
                Box::new(|_| {}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_other_versions_are_refused() {
        let env = Envelope {
            v: VERSION,
            id: "edge-1-a-1".into(),
            node: "edge-1".into(),
            run: 7,
            body: Body::CallEnded {
                call_id: "CA1".into(),
                end: EndReason::LostEdge("edge-0".into()),
                ended_unix_ms: 5,
            },
        };
        let bytes = serde_json::to_vec(&env).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""type":"call_ended""#), "{text}");
        assert_eq!(decode::<Envelope>(&bytes).unwrap(), env);
        let other = text.replace(r#""v":1"#, r#""v":2"#);
        let err = decode::<Envelope>(other.as_bytes()).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
        assert!(decode::<Envelope>(b"{}").is_err());
        let beat: Heartbeat =
            decode(br#"{"v":1,"node":"e","role":"edge","run":3,"calls":["a"]}"#).unwrap();
        assert_eq!(beat.calls, vec!["a".to_string()]);
    }
}
