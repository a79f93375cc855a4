//! The hub's live state and fan-out: the registry of active calls (what a new screen is shown),
//! each transfer prompt's lifecycle (open, accepted, dismissed, re-sent louder), and one
//! bounded queue per connected client. No sockets here: `http::ws` moves queued messages to
//! websockets and feeds client commands in, so the rules below are tested without a network.
//!
//! Fan-out never waits. Each client has a queue of `hub.client_queue` messages; when it is
//! full, the oldest queued partial transcript is dropped to make room (a newer partial or the
//! final line replaces it anyway), a new partial is dropped if there is none, and otherwise the
//! client is marked overflowed and `http::ws` closes it with 1008: a stuck screen costs itself
//! its connection and nobody else anything. Drops are counted in `HubCounters`.
//!
//! Routing: a client sees a call when its role allows (supervisor, QA: every call; agent: calls
//! whose `agent` is theirs) and, for the call's events, when it is subscribed to it (all calls
//! by default). Decisions on an alert go to everyone watching the call; a prompt nobody acted
//! on within `hub.alert_resend_s` is re-sent, escalated, to every supervisor, subscribed or not.
//!
//! Lock order: `calls` before `clients`, never the reverse.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::domain::access::{Action, Principal, can};
use crate::domain::alert::Level;
use crate::domain::alert::{AlertState, AlertStatus, Decision};
use crate::domain::call::{CallInfo, CallRefused};
use crate::domain::event::Event;
use crate::sinks::hub::auth::{AuthError, TokenStore, bearer_token};
use crate::sinks::hub::protocol::{
    CallSelection, CallView, ClientCommand, ErrorCode, HubMessage, PROTOCOL_VERSION, You, to_json,
};
use crate::sinks::webhook::WebhookHandle;

/// The hub's settings (`[hub]` in the config).
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Messages a client may have queued before partials are dropped and then it is closed.
    pub client_queue: usize,
    /// An open prompt is re-sent, escalated, to every supervisor after this long.
    pub alert_resend: Duration,
    /// Final transcript lines kept per call for new screens.
    pub snapshot_lines: usize,
    /// Calls monitored at once; more are refused, so memory stays bounded.
    pub max_calls: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            client_queue: 1024,
            alert_resend: Duration::from_secs(60),
            snapshot_lines: 20,
            max_calls: 100,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HubCounters {
    pub calls_total: AtomicU64,
    /// New calls refused: at `hub.max_calls`, or a duplicate call id.
    pub calls_refused: AtomicU64,
    pub messages_sent: AtomicU64,
    /// Partial transcripts dropped for slow clients.
    pub messages_dropped: AtomicU64,
    /// Clients closed because they fell a whole queue behind.
    pub clients_dropped: AtomicU64,
    pub alerts_total: AtomicU64,
    pub alerts_accepted: AtomicU64,
    pub alerts_dismissed: AtomicU64,
    /// Prompts re-sent to every supervisor because nobody acted in time.
    pub alerts_escalated: AtomicU64,
    pub commands_refused: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One message on its way to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub json: Arc<str>,
    /// Partial transcripts go first when a client falls behind.
    pub partial: bool,
}

/// A client's bounded queue; `http::ws` drains it into the socket.
#[derive(Debug)]
pub struct ClientQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Debug)]
struct QueueState {
    msgs: VecDeque<Outgoing>,
    cap: usize,
    overflowed: bool,
}

/// What became of a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping an older partial, or this partial itself was dropped.
    DroppedPartial,
    /// The queue is full of finals: the client must go.
    Overflowed,
}

impl ClientQueue {
    pub fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                msgs: VecDeque::new(),
                cap: cap.max(1),
                overflowed: false,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, msg: Outgoing) -> Pushed {
        let result = {
            let mut q = self.lock();
            if q.overflowed {
                return Pushed::Overflowed;
            }
            if q.msgs.len() < q.cap {
                q.msgs.push_back(msg);
                Pushed::Queued
            } else if let Some(i) = q.msgs.iter().position(|m| m.partial) {
                q.msgs.remove(i);
                q.msgs.push_back(msg);
                Pushed::DroppedPartial
            } else if msg.partial {
                Pushed::DroppedPartial
            } else {
                q.overflowed = true;
                q.msgs.clear();
                Pushed::Overflowed
            }
        };
        // A stored permit: a drain that is not waiting yet still wakes.
        self.notify.notify_one();
        result
    }

    /// Takes everything queued; `Err` once the client has overflowed.
    pub fn drain(&self) -> Result<Vec<Outgoing>, Overflowed> {
        let mut q = self.lock();
        if q.overflowed {
            return Err(Overflowed);
        }
        Ok(q.msgs.drain(..).collect())
    }

    /// Waits until something was pushed since the last wait.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    pub fn len(&self) -> usize {
        self.lock().msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The client fell a whole queue behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflowed;

/// Which calls a client watches: all (minus some), plus some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Subscriptions {
    all: bool,
    include: BTreeSet<String>,
    exclude: BTreeSet<String>,
}

impl Subscriptions {
    fn everything() -> Self {
        Self {
            all: true,
            ..Default::default()
        }
    }

    fn watches(&self, call_id: &str) -> bool {
        (self.all && !self.exclude.contains(call_id)) || self.include.contains(call_id)
    }

    fn subscribe(&mut self, sel: &CallSelection) {
        match sel {
            CallSelection::List(ids) => {
                for id in ids {
                    self.exclude.remove(id);
                    self.include.insert(id.clone());
                }
            }
            CallSelection::Word(_) => *self = Self::everything(),
        }
    }

    fn unsubscribe(&mut self, sel: &CallSelection) {
        match sel {
            CallSelection::List(ids) => {
                for id in ids {
                    self.include.remove(id);
                    self.exclude.insert(id.clone());
                }
            }
            CallSelection::Word(_) => *self = Self::default(),
        }
    }
}

struct ClientSlot {
    who: Principal,
    subs: Subscriptions,
    queue: Arc<ClientQueue>,
}

/// Who gets a call's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Clients that may see the call (call started/ended).
    Visible,
    /// ... and are subscribed to it (call events).
    Watchers,
    /// Watchers, plus every supervisor whether subscribed or not (escalated prompts).
    WatchersAndSupervisors,
}

struct CallEntry {
    view: CallView,
    /// When each alert fired, for re-sends and time-to-acknowledge.
    fired: HashMap<String, Instant>,
    /// When the call's edge was found gone (cluster): the call is forgotten `LOST_KEEP` later.
    lost_at: Option<Instant>,
    /// Held by another process of the cluster (shown here, not monitored here): it does not
    /// count against `max_calls` and is not this process's to report.
    remote: bool,
}

/// How long a call whose edge was lost stays on the screens, marked lost.
const LOST_KEEP: Duration = Duration::from_secs(600);

/// A connected client, as `http::ws` holds it.
pub struct ClientHandle {
    pub id: u64,
    pub queue: Arc<ClientQueue>,
    /// The snapshot, to send before anything queued.
    pub snapshot: Arc<str>,
}

/// The live state every screen is shown, and the fan-out to them.
pub struct Hub {
    calls: Mutex<BTreeMap<String, CallEntry>>,
    clients: Mutex<BTreeMap<u64, ClientSlot>>,
    next_client: AtomicU64,
    tokens: RwLock<TokenStore>,
    settings: HubSettings,
    webhook: Option<WebhookHandle>,
    pub counters: HubCounters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a principal may see a call with this agent.
pub fn visible(p: &Principal, agent: Option<&str>) -> bool {
    can(p, Action::WatchAll) || agent.is_some_and(|a| can(p, Action::WatchAgent(a)))
}

impl Hub {
    pub fn new(
        tokens: TokenStore,
        settings: HubSettings,
        webhook: Option<WebhookHandle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(BTreeMap::new()),
            next_client: AtomicU64::new(1),
            tokens: RwLock::new(tokens),
            settings,
            webhook,
            counters: HubCounters::default(),
        })
    }

    pub fn webhook(&self) -> Option<&WebhookHandle> {
        self.webhook.as_ref()
    }

    /// The principal behind a token, as the token file was last loaded ([`Hub::reload_tokens`]
    /// keeps it current). Memory only: no file is touched on a request.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .verify(token)
    }

    /// The principal behind a request: its `Authorization: Bearer` header, else a token from
    /// its URL (already decoded) or one a protocol carries in-band.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        token: Option<&str>,
    ) -> Option<Principal> {
        let token = bearer_token(authorization, None).or_else(|| token.map(str::to_owned))?;
        self.verify(&token)
    }

    /// Re-reads the token file when another process (the `token` CLI) has changed it, so that
    /// a token revoked from the command line stops working without a restart. Blocking file
    /// work: the daemon calls it off the async runtime, about once a second. The file is read
    /// outside the lock; requests only ever wait for the swap.
    pub fn reload_tokens(&self) -> Result<bool, AuthError> {
        let mut fresh = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !fresh.reload_if_changed()? {
            return Ok(false);
        }
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    pub fn active_calls(&self) -> usize {
        lock(&self.calls).len()
    }

    pub fn clients(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Messages waiting in client queues, all clients together.
    pub fn queued_messages(&self) -> usize {
        lock(&self.clients).values().map(|c| c.queue.len()).sum()
    }

    fn deliver(
        &self,
        call_id: &str,
        agent: Option<&str>,
        json: &Arc<str>,
        partial: bool,
        audience: Audience,
    ) {
        let clients = lock(&self.clients);
        for slot in clients.values() {
            if !visible(&slot.who, agent) {
                continue;
            }
            let wanted = match audience {
                Audience::Visible => true,
                Audience::Watchers => slot.subs.watches(call_id),
                Audience::WatchersAndSupervisors => {
                    slot.subs.watches(call_id) || can(&slot.who, Action::AcceptTransfer)
                }
            };
            if !wanted {
                continue;
            }
            let msg = Outgoing {
                json: Arc::clone(json),
                partial,
            };
            match slot.queue.push(msg) {
                Pushed::Queued => bump(&self.counters.messages_sent),
                Pushed::DroppedPartial => bump(&self.counters.messages_dropped),
                // Counted once, when `http::ws` closes it.
                Pushed::Overflowed => {}
            }
        }
    }

    /// Registers a client and returns its queue and the snapshot to send first. Taken under
    /// the calls lock, so no event falls between the snapshot and the queue.
    pub fn connect(&self, who: Principal) -> ClientHandle {
        let calls = lock(&self.calls);
        let views: Vec<&CallView> = calls
            .values()
            .map(|c| &c.view)
            .filter(|v| visible(&who, v.call.agent.as_deref()))
            .collect();
        let snapshot = to_json(&HubMessage::Snapshot {
            version: PROTOCOL_VERSION,
            you: You {
                name: &who.name,
                role: who.role,
                agent: who.agent.as_deref(),
            },
            calls: views,
        });
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(ClientQueue::new(self.settings.client_queue));
        lock(&self.clients).insert(
            id,
            ClientSlot {
                who,
                subs: Subscriptions::everything(),
                queue: Arc::clone(&queue),
            },
        );
        ClientHandle {
            id,
            queue,
            snapshot,
        }
    }

    pub fn disconnect(&self, id: u64, overflowed: bool) {
        lock(&self.clients).remove(&id);
        if overflowed {
            bump(&self.counters.clients_dropped);
        }
    }

    /// Registers a new call and tells the screens, unless the daemon is at `hub.max_calls` or
    /// a call with the same id is already being monitored.
    pub fn call_started(&self, call: &CallInfo) -> Result<(), CallRefused> {
        self.register(call, false)
    }

    /// Shows a call another process of the cluster monitors (no capacity check: that process
    /// has its own). False when the call is known already.
    pub fn call_watched(&self, call: &CallInfo) -> bool {
        self.register(call, true).is_ok()
    }

    fn register(&self, call: &CallInfo, remote: bool) -> Result<(), CallRefused> {
        let mut calls = lock(&self.calls);
        if calls.contains_key(&call.call_id) {
            if !remote {
                bump(&self.counters.calls_refused);
            }
            return Err(CallRefused::Duplicate(call.call_id.clone()));
        }
        if !remote && calls.values().filter(|e| !e.remote).count() >= self.settings.max_calls {
            bump(&self.counters.calls_refused);
            return Err(CallRefused::AtCapacity(self.settings.max_calls));
        }
        bump(&self.counters.calls_total);
        let view = CallView {
            call: call.clone(),
            started_unix_ms: crate::domain::clock::unix_ms(),
            level: Level::Calm,
            score: 0.0,
            alert_status: Vec::new(),
            alerts: Vec::new(),
            last_lines: Vec::new(),
            lost_edge: None,
        };
        calls.insert(
            call.call_id.clone(),
            CallEntry {
                view,
                fired: HashMap::new(),
                lost_at: None,
                remote,
            },
        );
        let json = to_json(&HubMessage::CallStarted {
            call_id: &call.call_id,
            call,
        });
        self.deliver(
            &call.call_id,
            call.agent.as_deref(),
            &json,
            false,
            Audience::Visible,
        );
        Ok(())
    }

    /// Records a call event in the call's state and sends it to the call's watchers.
    pub fn event(&self, event: &Event) {
        let json = to_json(event);
        let mut calls = lock(&self.calls);
        let Some(entry) = calls.get_mut(event.call_id()) else {
            tracing::debug!(call_id = event.call_id(), "event for an unknown call");
            return;
        };
        let view = &mut entry.view;
        let mut partial = false;
        match event {
            Event::Transcript(t) if !t.is_final => partial = true,
            Event::Transcript(t) => {
                view.last_lines.push(t.clone());
                let excess = view
                    .last_lines
                    .len()
                    .saturating_sub(self.settings.snapshot_lines);
                view.last_lines.drain(..excess);
            }
            Event::Risk(r) => {
                view.level = r.level;
                view.score = r.score;
            }
            Event::Alert(a) => {
                bump(&self.counters.alerts_total);
                view.alert_status.push(AlertStatus {
                    call_id: a.call_id.clone(),
                    alert_id: a.alert_id.clone(),
                    state: AlertState::Open,
                    escalated: false,
                    fired_unix_ms: crate::domain::clock::unix_ms(),
                    decision: None,
                });
                view.alerts.push(a.clone());
                entry.fired.insert(a.alert_id.clone(), Instant::now());
                if let Some(hook) = &self.webhook {
                    hook.send(
                        "alert",
                        serde_json::json!({"type": "alert", "call": view.call, "alert": a}),
                    );
                }
            }
            _ => {}
        }
        let agent = view.call.agent.clone();
        self.deliver(
            event.call_id(),
            agent.as_deref(),
            &json,
            partial,
            Audience::Watchers,
        );
    }

    pub fn call_ended(&self, call_id: &str) {
        let mut calls = lock(&self.calls);
        let agent = calls.remove(call_id).and_then(|e| e.view.call.agent);
        let json = to_json(&HubMessage::CallEnded { call_id });
        self.deliver(call_id, agent.as_deref(), &json, false, Audience::Visible);
    }

    /// Re-sends prompts nobody acted on in time, escalated, to every supervisor. Call about
    /// once a second; returns the escalated prompts' statuses, for the store.
    pub fn tick(&self, now: Instant) -> Vec<AlertStatus> {
        let mut escalated = Vec::new();
        let mut calls = lock(&self.calls);
        let forget: Vec<(String, Option<String>)> = calls
            .iter()
            .filter(|(_, e)| {
                e.lost_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= LOST_KEEP)
            })
            .map(|(id, e)| (id.clone(), e.view.call.agent.clone()))
            .collect();
        for (call_id, agent) in forget {
            calls.remove(&call_id);
            let json = to_json(&HubMessage::CallEnded { call_id: &call_id });
            self.deliver(&call_id, agent.as_deref(), &json, false, Audience::Visible);
        }
        for entry in calls.values_mut().filter(|e| e.lost_at.is_none()) {
            let agent = entry.view.call.agent.clone();
            for i in 0..entry.view.alert_status.len() {
                let status = &entry.view.alert_status[i];
                if status.state != AlertState::Open || status.escalated {
                    continue;
                }
                let Some(fired) = entry.fired.get(&status.alert_id).copied() else {
                    continue;
                };
                let open_for = now.saturating_duration_since(fired);
                if open_for < self.settings.alert_resend {
                    continue;
                }
                entry.view.alert_status[i].escalated = true;
                bump(&self.counters.alerts_escalated);
                let status = &entry.view.alert_status[i];
                let alert = entry
                    .view
                    .alerts
                    .iter()
                    .find(|a| a.alert_id == status.alert_id);
                tracing::warn!(
                    call_id = %status.call_id,
                    alert_id = %status.alert_id,
                    open_for_s = open_for.as_secs(),
                    "transfer prompt unanswered: re-sent to every supervisor"
                );
                let json = to_json(&HubMessage::AlertUpdated {
                    status,
                    alert,
                    open_for_s: open_for.as_secs(),
                });
                if let Some(hook) = &self.webhook {
                    hook.send("alert_escalated", serde_json::json!({"type": "alert_escalated", "status": status, "open_for_s": open_for.as_secs()}));
                }
                self.deliver(
                    &status.call_id,
                    agent.as_deref(),
                    &json,
                    false,
                    Audience::WatchersAndSupervisors,
                );
                escalated.push(status.clone());
            }
        }
        escalated
    }

    /// Carries out a client's command; returns the reply for that client alone (decisions are
    /// also broadcast to the call's watchers).
    pub fn command(&self, client: u64, cmd: &ClientCommand) -> Arc<str> {
        self.command_decided(client, cmd).0
    }

    /// [`Hub::command`], also returning the alert's new status when the command decided one,
    /// for the store.
    pub fn command_decided(
        &self,
        client: u64,
        cmd: &ClientCommand,
    ) -> (Arc<str>, Option<AlertStatus>) {
        let id = cmd.id();
        let mut decided = None;
        let reply = match cmd {
            ClientCommand::Ping { .. } => return (to_json(&HubMessage::Pong { id }), None),
            ClientCommand::Subscribe { calls, .. } | ClientCommand::Unsubscribe { calls, .. } => {
                if let Some(slot) = lock(&self.clients).get_mut(&client) {
                    if matches!(cmd, ClientCommand::Subscribe { .. }) {
                        slot.subs.subscribe(calls);
                    } else {
                        slot.subs.unsubscribe(calls);
                    }
                }
                Ok(())
            }
            ClientCommand::AcceptTransfer { alert_id, .. } => self
                .decide(client, alert_id, AlertState::Accepted, "")
                .map(|status| decided = Some(status)),
            ClientCommand::DismissAlert {
                alert_id, reason, ..
            } => self
                .decide(client, alert_id, AlertState::Dismissed, reason)
                .map(|status| decided = Some(status)),
        };
        let json = match reply {
            Ok(()) => to_json(&HubMessage::Ack {
                id,
                command: cmd.name(),
            }),
            Err((code, message)) => {
                bump(&self.counters.commands_refused);
                to_json(&HubMessage::Error {
                    id,
                    code,
                    message: &message,
                })
            }
        };
        (json, decided)
    }

    fn decide(
        &self,
        client: u64,
        alert_id: &str,
        state: AlertState,
        reason: &str,
    ) -> Result<AlertStatus, (ErrorCode, String)> {
        let who = lock(&self.clients)
            .get(&client)
            .map(|c| c.who.clone())
            .ok_or((ErrorCode::Forbidden, "not connected".to_string()))?;
        let mut calls = lock(&self.calls);
        // An alert the client may not see is reported as unknown: its existence is not theirs
        // to learn.
        let entry = calls
            .values_mut()
            .filter(|e| visible(&who, e.view.call.agent.as_deref()))
            .find(|e| e.view.alert_status.iter().any(|s| s.alert_id == alert_id))
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownAlert,
                    format!("no open call has an alert `{alert_id}`"),
                )
            })?;
        let action = if state == AlertState::Accepted {
            Action::AcceptTransfer
        } else {
            Action::DismissAlert
        };
        if !can(&who, action) {
            return Err((
                ErrorCode::Forbidden,
                format!(
                    "a {} token cannot {}",
                    who.role,
                    match state {
                        AlertState::Accepted => "accept transfers",
                        _ => "dismiss alerts",
                    }
                ),
            ));
        }
        let fired = entry.fired.get(alert_id).copied();
        let agent = entry.view.call.agent.clone();
        let Some(status) = entry
            .view
            .alert_status
            .iter_mut()
            .find(|s| s.alert_id == alert_id)
        else {
            return Err((ErrorCode::UnknownAlert, format!("no alert `{alert_id}`")));
        };
        if let Some(d) = &status.decision {
            let verb = match status.state {
                AlertState::Accepted => "accepted",
                _ => "dismissed",
            };
            return Err((
                ErrorCode::AlreadyHandled,
                format!("already {verb} by {} ({})", d.by, d.role),
            ));
        }
        let open_for = fired.map(|f| f.elapsed()).unwrap_or_default();
        status.state = state;
        status.decision = Some(Decision {
            by: who.name.clone(),
            role: who.role,
            at_unix_ms: crate::domain::clock::unix_ms(),
            time_to_ack_ms: open_for.as_millis() as u64,
            reason: reason.to_owned(),
        });
        let status = status.clone();
        self.announce_decision(&status, agent.as_deref(), open_for);
        Ok(status)
    }

    /// Counts, logs and shows a decision just taken (here or, in a cluster, by another hub or
    /// an edge's screen), and tells the webhook.
    fn announce_decision(&self, status: &AlertStatus, agent: Option<&str>, open_for: Duration) {
        let accepted = status.state == AlertState::Accepted;
        bump(if accepted {
            &self.counters.alerts_accepted
        } else {
            &self.counters.alerts_dismissed
        });
        tracing::info!(
            call_id = %status.call_id,
            alert_id = %status.alert_id,
            by = status.decision.as_ref().map(|d| d.by.as_str()).unwrap_or(""),
            state = ?status.state,
            time_to_ack_ms = open_for.as_millis() as u64,
            "transfer prompt handled"
        );
        let json = to_json(&HubMessage::AlertUpdated {
            status,
            alert: None,
            open_for_s: open_for.as_secs(),
        });
        if let Some(hook) = &self.webhook {
            let kind = if accepted {
                "transfer_accepted"
            } else {
                "alert_dismissed"
            };
            hook.send(kind, serde_json::json!({"type": kind, "status": status}));
        }
        self.deliver(
            &status.call_id,
            agent,
            &json,
            false,
            Audience::WatchersAndSupervisors,
        );
    }

    /// Takes a decision made elsewhere in the cluster (another hub, or an edge's screen), as
    /// the cluster's event stream carries it: the stream's decision is the one that stands, so
    /// a different local one (two hubs deciding at once) is replaced. Returns whether anything
    /// changed (a decision this hub already shows changes nothing and is not announced again).
    pub fn apply_decided(&self, incoming: &AlertStatus) -> bool {
        if incoming.state == AlertState::Open || incoming.decision.is_none() {
            return false;
        }
        let mut calls = lock(&self.calls);
        let Some(entry) = calls.get_mut(&incoming.call_id) else {
            return false;
        };
        let fired = entry.fired.get(&incoming.alert_id).copied();
        let agent = entry.view.call.agent.clone();
        let Some(status) = entry
            .view
            .alert_status
            .iter_mut()
            .find(|s| s.alert_id == incoming.alert_id)
        else {
            return false;
        };
        if status.state == incoming.state && status.decision == incoming.decision {
            return false;
        }
        status.state = incoming.state;
        status.decision.clone_from(&incoming.decision);
        status.escalated |= incoming.escalated;
        let status = status.clone();
        let open_for = fired.map(|f| f.elapsed()).unwrap_or_default();
        self.announce_decision(&status, agent.as_deref(), open_for);
        true
    }

    /// The ids of the calls this process monitors, for a cluster edge's heartbeat.
    pub fn call_ids(&self) -> Vec<String> {
        lock(&self.calls)
            .iter()
            .filter(|(_, e)| !e.remote && e.lost_at.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The views (what a new screen is shown) of calls this process monitors, for a cluster
    /// hub that lost track of them.
    pub fn views(&self, ids: &[String]) -> Vec<CallView> {
        let calls = lock(&self.calls);
        ids.iter()
            .filter_map(|id| calls.get(id))
            .filter(|e| !e.remote && e.lost_at.is_none())
            .map(|e| e.view.clone())
            .collect()
    }

    /// Whether a call is known (live or lost).
    pub fn knows(&self, call_id: &str) -> bool {
        lock(&self.calls).contains_key(call_id)
    }

    /// Takes over a call another process (its edge) already monitors, with its state so far:
    /// a hub restarted mid-call. No capacity check: the edge holds the call, not the hub.
    /// Returns false when the call is known already.
    pub fn adopt(&self, view: CallView) -> bool {
        let mut calls = lock(&self.calls);
        if calls.contains_key(&view.call.call_id) {
            return false;
        }
        let now = Instant::now();
        let unix = crate::domain::clock::unix_ms();
        // Re-send timing as if this hub had seen each open prompt fire.
        let fired = view
            .alert_status
            .iter()
            .map(|s| {
                let ago = Duration::from_millis(unix.saturating_sub(s.fired_unix_ms));
                (s.alert_id.clone(), now.checked_sub(ago).unwrap_or(now))
            })
            .collect();
        let call_id = view.call.call_id.clone();
        let json = to_json(&HubMessage::CallStarted {
            call_id: &call_id,
            call: &view.call,
        });
        let agent = view.call.agent.clone();
        calls.insert(
            call_id.clone(),
            CallEntry {
                view,
                fired,
                lost_at: None,
                remote: true,
            },
        );
        self.deliver(&call_id, agent.as_deref(), &json, false, Audience::Visible);
        true
    }

    /// Whether a call is marked lost.
    pub fn is_lost(&self, call_id: &str) -> bool {
        lock(&self.calls)
            .get(call_id)
            .is_some_and(|e| e.lost_at.is_some())
    }

    /// Takes back a call marked lost whose edge turned out to be only cut off: live again.
    /// Returns false when the call is unknown or not lost.
    pub fn call_found(&self, call_id: &str) -> bool {
        let mut calls = lock(&self.calls);
        let Some(entry) = calls.get_mut(call_id) else {
            return false;
        };
        if entry.lost_at.take().is_none() {
            return false;
        }
        let edge = entry.view.lost_edge.take().unwrap_or_default();
        let agent = entry.view.call.agent.clone();
        tracing::info!(%call_id, %edge, "call found again: its edge is back");
        let json = to_json(&HubMessage::CallResumed { call_id });
        self.deliver(call_id, agent.as_deref(), &json, false, Audience::Visible);
        true
    }

    /// Marks a call whose edge is gone: it stays on the screens with its last state, marked
    /// lost, for `LOST_KEEP`; its prompts are no longer re-sent. Returns false when the call
    /// is unknown or already lost.
    pub fn call_lost(&self, call_id: &str, edge: &str, now: Instant) -> bool {
        let mut calls = lock(&self.calls);
        let Some(entry) = calls.get_mut(call_id) else {
            return false;
        };
        if entry.lost_at.is_some() {
            return false;
        }
        entry.lost_at = Some(now);
        entry.view.lost_edge = Some(edge.to_owned());
        let agent = entry.view.call.agent.clone();
        tracing::warn!(%call_id, %edge, "call lost with its edge");
        let json = to_json(&HubMessage::CallLost { call_id, edge });
        self.deliver(call_id, agent.as_deref(), &json, false, Audience::Visible);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Role;
    use crate::domain::alert::Alert;
    use crate::domain::call::SourceKind;
    use crate::domain::event::Transcript;
    use crate::domain::leg::Leg;

    fn principal(name: &str, role: Role, agent: Option<&str>) -> Principal {
        Principal {
            name: name.into(),
            role,
            agent: agent.map(str::to_owned),
        }
    }

    fn hub(queue: usize) -> (tempfile::TempDir, Arc<Hub>) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenStore::open(dir.path()).unwrap();
        let settings = HubSettings {
            client_queue: queue,
            alert_resend: Duration::from_secs(60),
            snapshot_lines: 3,
            max_calls: 2,
        };
        (dir, Hub::new(tokens, settings, None))
    }

    fn call(id: &str, agent: Option<&str>) -> CallInfo {
        CallInfo {
            call_id: id.into(),
            source: SourceKind::Replay,
            legs: vec![Leg::Customer, Leg::Agent],
            sample_rate: 8000,
            lang: None,
            agent: agent.map(str::to_owned),
            metadata: serde_json::Value::Null,
        }
    }

    fn line(call_id: &str, text: &str, is_final: bool) -> Event {
        Event::Transcript(Transcript {
            call_id: call_id.into(),
            leg: Leg::Customer,
            start_ms: 0,
            end_ms: 1000,
            at_ms: 1000,
            text: text.into(),
            lang: "en".into(),
            is_final,
        })
    }

    fn alert(call_id: &str, n: u32) -> Event {
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "call_id": call_id, "alert_id": format!("{call_id}-a{n}"), "at_ms": 5000,
            "level": "escalate", "score": 90.0, "reasons": [],
            "evidence": {"quotes": [], "raised_voice": []},
            "customer_type": "emotion_led",
            "suggestion": {"lang": "en", "opening": "o", "steps": [], "deadline": "d"}
        }))
        .unwrap();
        a.alert_id = format!("{call_id}-a{n}");
        Event::Alert(a)
    }

    fn types(q: &ClientQueue) -> Vec<serde_json::Value> {
        q.drain()
            .unwrap()
            .into_iter()
            .map(|m| serde_json::from_str(&m.json).unwrap())
            .collect()
    }

    #[test]
    fn a_full_queue_drops_partials_first_then_overflows() {
        let q = ClientQueue::new(3);
        let msg = |s: &str, partial| Outgoing {
            json: s.into(),
            partial,
        };
        assert_eq!(q.push(msg("p1", true)), Pushed::Queued);
        assert_eq!(q.push(msg("f1", false)), Pushed::Queued);
        assert_eq!(q.push(msg("f2", false)), Pushed::Queued);
        // Full: the queued partial makes room for a final.
        assert_eq!(q.push(msg("f3", false)), Pushed::DroppedPartial);
        // Full of finals: a partial is dropped, a final overflows the client.
        assert_eq!(q.push(msg("p2", true)), Pushed::DroppedPartial);
        let left: Vec<String> = q.lock().msgs.iter().map(|m| m.json.to_string()).collect();
        assert_eq!(left, ["f1", "f2", "f3"]);
        assert_eq!(q.push(msg("f4", false)), Pushed::Overflowed);
        assert_eq!(q.drain(), Err(Overflowed));
        assert_eq!(q.push(msg("f5", false)), Pushed::Overflowed);
    }

    #[test]
    fn calls_past_the_limit_or_with_a_live_id_are_refused() {
        let (_d, hub) = hub(100);
        hub.call_started(&call("c1", None)).unwrap();
        assert_eq!(
            hub.call_started(&call("c1", None)),
            Err(CallRefused::Duplicate("c1".into()))
        );
        hub.call_started(&call("c2", None)).unwrap();
        assert_eq!(
            hub.call_started(&call("c3", None)),
            Err(CallRefused::AtCapacity(2))
        );
        hub.call_ended("c1");
        hub.call_started(&call("c3", None)).unwrap();
        assert_eq!(hub.counters.calls_refused.load(Ordering::Relaxed), 2);
        assert_eq!(hub.counters.calls_total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn subscriptions_add_and_remove_calls() {
        let mut s = Subscriptions::everything();
        assert!(s.watches("a"));
        s.unsubscribe(&CallSelection::List(vec!["a".into()]));
        assert!(!s.watches("a") && s.watches("b"));
        s.unsubscribe(&CallSelection::Word("all".into()));
        assert!(!s.watches("b"));
        s.subscribe(&CallSelection::List(vec!["b".into()]));
        assert!(s.watches("b") && !s.watches("c"));
        s.subscribe(&CallSelection::Word("all".into()));
        assert!(s.watches("a") && s.watches("c"));
    }

    #[test]
    fn agents_see_only_their_own_calls_and_unsubscribed_clients_only_starts() {
        let (_d, hub) = hub(100);
        let sup = hub.connect(principal("sup", Role::Supervisor, None));
        let agent = hub.connect(principal("amy", Role::Agent, Some("101")));
        let other = hub.connect(principal("bob", Role::Agent, Some("102")));
        hub.command(
            sup.id,
            &ClientCommand::Unsubscribe {
                id: None,
                calls: CallSelection::List(vec!["c1".into()]),
            },
        );
        hub.call_started(&call("c1", Some("101"))).unwrap();
        hub.event(&line("c1", "hello", true));
        let sup_msgs = types(&sup.queue);
        assert_eq!(sup_msgs.len(), 1, "{sup_msgs:?}");
        assert_eq!(sup_msgs[0]["type"], "call_started");
        let agent_msgs = types(&agent.queue);
        assert_eq!(agent_msgs.len(), 2);
        assert_eq!(agent_msgs[1]["text"], "hello");
        assert!(types(&other.queue).is_empty());
    }

    #[test]
    fn snapshots_carry_the_calls_open_alerts_and_final_lines_only() {
        let (_d, hub) = hub(100);
        hub.call_started(&call("c1", None)).unwrap();
        for i in 0..5 {
            hub.event(&line("c1", &format!("line {i}"), true));
        }
        hub.event(&line("c1", "half a sen", false));
        hub.event(&alert("c1", 1));
        let c = hub.connect(principal("q", Role::Qa, None));
        let snap: serde_json::Value = serde_json::from_str(&c.snapshot).unwrap();
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["version"], PROTOCOL_VERSION);
        assert_eq!(snap["you"]["role"], "qa");
        let lines: Vec<&str> = snap["calls"][0]["last_lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["line 2", "line 3", "line 4"]);
        assert_eq!(snap["calls"][0]["alert_status"][0]["state"], "open");
        assert_eq!(snap["calls"][0]["alerts"][0]["alert_id"], "c1-a1");
        // An agent not on the call sees no calls.
        let a = hub.connect(principal("bob", Role::Agent, Some("102")));
        let snap: serde_json::Value = serde_json::from_str(&a.snapshot).unwrap();
        assert_eq!(snap["calls"], serde_json::json!([]));
    }

    #[test]
    fn accepting_reaches_the_agent_and_a_second_decision_is_refused() {
        let (_d, hub) = hub(100);
        let sup = hub.connect(principal("sue", Role::Supervisor, None));
        let sup2 = hub.connect(principal("sam", Role::Supervisor, None));
        let agent = hub.connect(principal("amy", Role::Agent, Some("101")));
        let qa = hub.connect(principal("quinn", Role::Qa, None));
        hub.call_started(&call("c1", Some("101"))).unwrap();
        hub.event(&alert("c1", 1));
        for c in [&sup, &sup2, &agent, &qa] {
            c.queue.drain().unwrap();
        }

        let accept = |id| ClientCommand::AcceptTransfer {
            id: Some("r1".into()),
            alert_id: id,
        };
        // QA and agents may not act on prompts.
        let r: serde_json::Value =
            serde_json::from_str(&hub.command(qa.id, &accept("c1-a1".into()))).unwrap();
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some("forbidden"))
        );
        let r: serde_json::Value =
            serde_json::from_str(&hub.command(agent.id, &accept("c1-a1".into()))).unwrap();
        assert_eq!(r["code"], "forbidden");
        let r: serde_json::Value =
            serde_json::from_str(&hub.command(sup.id, &accept("c9-a1".into()))).unwrap();
        assert_eq!(r["code"], "unknown_alert");

        let r: serde_json::Value =
            serde_json::from_str(&hub.command(sup.id, &accept("c1-a1".into()))).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"type": "ack", "id": "r1", "command": "accept_transfer"})
        );
        for c in [&sup, &sup2, &agent, &qa] {
            let got = types(&c.queue);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["type"], "alert_updated");
            assert_eq!(got[0]["state"], "accepted");
            assert_eq!(got[0]["decision"]["by"], "sue");
        }
        let r: serde_json::Value = serde_json::from_str(&hub.command(
            sup2.id,
            &ClientCommand::DismissAlert {
                id: None,
                alert_id: "c1-a1".into(),
                reason: "fine".into(),
            },
        ))
        .unwrap();
        assert_eq!(r["code"], "already_handled");
        assert!(r["message"].as_str().unwrap().contains("sue"));
        assert_eq!(hub.counters.alerts_accepted.load(Ordering::Relaxed), 1);
        assert_eq!(hub.counters.commands_refused.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn an_unanswered_prompt_is_re_sent_once_to_every_supervisor() {
        let (_d, hub) = hub(100);
        let watching = hub.connect(principal("sue", Role::Supervisor, None));
        let elsewhere = hub.connect(principal("sam", Role::Supervisor, None));
        let qa = hub.connect(principal("quinn", Role::Qa, None));
        for c in [&elsewhere, &qa] {
            hub.command(
                c.id,
                &ClientCommand::Unsubscribe {
                    id: None,
                    calls: CallSelection::Word("all".into()),
                },
            );
        }
        hub.call_started(&call("c1", None)).unwrap();
        hub.event(&alert("c1", 1));
        hub.event(&alert("c1", 2));
        for c in [&watching, &elsewhere, &qa] {
            c.queue.drain().unwrap();
        }
        hub.command(
            watching.id,
            &ClientCommand::DismissAlert {
                id: None,
                alert_id: "c1-a2".into(),
                reason: "handled".into(),
            },
        );
        watching.queue.drain().unwrap();
        elsewhere.queue.drain().unwrap();

        hub.tick(Instant::now() + Duration::from_secs(30));
        assert!(watching.queue.is_empty());
        hub.tick(Instant::now() + Duration::from_secs(61));
        for c in [&watching, &elsewhere] {
            let got = types(&c.queue);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["type"], "alert_updated");
            assert_eq!(got[0]["alert_id"], "c1-a1");
            assert_eq!(got[0]["escalated"], true);
            assert_eq!(got[0]["state"], "open");
            assert_eq!(got[0]["alert"]["alert_id"], "c1-a1");
            assert!(got[0]["open_for_s"].as_u64().unwrap() >= 60);
        }
        // QA is not a supervisor and unsubscribed: not its business.
        assert!(qa.queue.is_empty());
        hub.tick(Instant::now() + Duration::from_secs(200));
        assert!(watching.queue.is_empty(), "re-sent only once");
        assert_eq!(hub.counters.alerts_escalated.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_client_that_falls_behind_is_cut_off_without_touching_others() {
        let (_d, hub) = hub(4);
        let slow = hub.connect(principal("slow", Role::Supervisor, None));
        let fast = hub.connect(principal("fast", Role::Supervisor, None));
        hub.call_started(&call("c1", None)).unwrap();
        let mut fast_got = 0;
        for i in 0..50 {
            hub.event(&line("c1", &format!("partial {i}"), false));
            hub.event(&line("c1", &format!("final {i}"), true));
            fast_got += fast.queue.drain().unwrap().len();
        }
        assert_eq!(fast_got, 1 + 100);
        assert_eq!(slow.queue.drain(), Err(Overflowed));
        assert!(hub.counters.messages_dropped.load(Ordering::Relaxed) >= 1);
        hub.disconnect(slow.id, true);
        assert_eq!(hub.clients(), 1);
        assert_eq!(hub.counters.clients_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn cluster_decisions_lost_calls_and_adopted_calls() {
        let (_d, hub) = hub(16);
        let sup = hub.connect(principal("sup", Role::Supervisor, None));
        hub.call_started(&call("c1", Some("101"))).unwrap();
        hub.event(&alert("c1", 1));
        types(&sup.queue);
        // A decision from elsewhere is shown once; the same one again changes nothing.
        let decided = AlertStatus {
            call_id: "c1".into(),
            alert_id: "c1-a1".into(),
            state: AlertState::Accepted,
            escalated: false,
            fired_unix_ms: 1,
            decision: Some(Decision {
                by: "other-hub-sup".into(),
                role: Role::Supervisor,
                at_unix_ms: 2,
                time_to_ack_ms: 1,
                reason: String::new(),
            }),
        };
        assert!(hub.apply_decided(&decided));
        assert!(!hub.apply_decided(&decided));
        let seen = types(&sup.queue);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "alert_updated");
        assert_eq!(seen[0]["decision"]["by"], "other-hub-sup");
        // This hub's own screen can no longer decide it.
        let cmd =
            ClientCommand::parse(r#"{"type":"dismiss_alert","alert_id":"c1-a1","reason":"x"}"#)
                .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&hub.command(sup.id, &cmd)).unwrap();
        assert_eq!(reply["code"], "already_handled", "{reply}");
        // Unknown calls and open states are ignored.
        let mut other = decided.clone();
        other.call_id = "nope".into();
        assert!(!hub.apply_decided(&other));

        // A lost call stays, marked, and is not announced twice; it is not in the edge's list.
        let t = Instant::now();
        assert!(hub.call_lost("c1", "edge-1", t));
        assert!(!hub.call_lost("c1", "edge-1", t));
        assert!(hub.is_lost("c1"));
        // Its edge was only cut off: found again, then lost for good.
        assert!(hub.call_found("c1"));
        assert!(!hub.call_found("c1"));
        assert!(!hub.is_lost("c1"));
        assert_eq!(types(&sup.queue)[1]["type"], "call_resumed");
        assert!(hub.call_lost("c1", "edge-1", t));
        assert!(hub.call_ids().is_empty());
        let seen = types(&sup.queue);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "call_lost");
        let late = hub.connect(principal("sup2", Role::Supervisor, None));
        let snap: serde_json::Value = serde_json::from_str(&late.snapshot).unwrap();
        assert_eq!(snap["calls"][0]["lost_edge"], "edge-1", "{snap}");
        // ... until the hub forgets it.
        hub.tick(t + LOST_KEEP + Duration::from_secs(1));
        assert_eq!(hub.active_calls(), 0);
        assert_eq!(types(&sup.queue)[0]["type"], "call_ended");

        // A call another hub's edge reports is adopted with its state, once, past max_calls.
        let (_d2, edge) = self::hub(16);
        edge.call_started(&call("c2", None)).unwrap();
        edge.event(&line("c2", "hello", true));
        edge.event(&alert("c2", 1));
        let views = edge.views(&["c2".into(), "gone".into()]);
        assert_eq!(views.len(), 1);
        let json = serde_json::to_string(&views[0]).unwrap();
        let view: CallView = serde_json::from_str(&json).unwrap();
        hub.call_started(&call("x1", None)).unwrap();
        hub.call_started(&call("x2", None)).unwrap();
        assert!(hub.adopt(view.clone()));
        assert!(!hub.adopt(view));
        assert!(hub.knows("c2"));
        let late = hub.connect(principal("sup3", Role::Supervisor, None));
        let snap: serde_json::Value = serde_json::from_str(&late.snapshot).unwrap();
        let c2 = snap["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call"]["call_id"] == "c2")
            .unwrap();
        assert_eq!(c2["last_lines"][0]["text"], "hello", "{c2}");
        assert_eq!(c2["alert_status"][0]["state"], "open", "{c2}");
    }
}
