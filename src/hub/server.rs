//! The supervisor/agent websocket (`/ws`) and the health endpoint, first version: clients
//! authenticate with a token (header or `?token=`; refused with 401 before the upgrade), get a
//! `snapshot` of the active calls, then every call's events as they happen, filtered by role
//! (an agent sees only calls with their agent name). Messages are the central `Event` JSON plus
//! the hub's own `snapshot`, `call_started` and `call_ended`.
//!
//! Fan-out is a broadcast channel: a client that falls a full buffer behind is disconnected
//! with close code 1008 and a reason, so a stuck screen never slows the pipeline.
//! Ingest: `/ingest/twilio` (Twilio Media Streams) and `/ingest/audiofork` (FreeSWITCH
//! mod_audio_fork, jambonz `listen`) host a live call per stream.
//! Not here yet: client commands (subscribe, accept_transfer, dismiss_alert), alert re-sends,
//! the webhook, Twilio signature checks and /metrics. (AudioSocket is plain TCP: `app`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::{Action, Principal, TokenStore, bearer_token, can};
use crate::event::{Event, Transcript};
use crate::live::LiveContext;
use crate::risk::Level;
use crate::source::CallInfo;
use crate::source::audiofork::{AudioforkSession, SUBPROTOCOLS};
use crate::source::twilio::TwilioSession;
use crate::source::{SourceError, SourceEvent};

/// The hub protocol version, sent in the first message.
pub const PROTOCOL_VERSION: u32 = 1;
/// Messages a client may be behind before it is dropped.
const CLIENT_BUFFER: usize = 1024;
/// Transcript lines kept per call for the snapshot.
const SNAPSHOT_LINES: usize = 20;

/// One message to clients, already serialised, with what the role filter needs.
#[derive(Debug, Clone)]
pub struct HubMessage {
    pub agent: Option<String>,
    pub json: Arc<str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub call: CallInfo,
    pub level: Level,
    pub score: f32,
    pub open_alerts: Vec<String>,
    pub last_lines: Vec<Transcript>,
}

/// The live state every new client is shown, and the channel every client listens to.
pub struct Hub {
    calls: Mutex<BTreeMap<String, CallView>>,
    tx: broadcast::Sender<HubMessage>,
    tokens: Mutex<TokenStore>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HubOwn<'a> {
    Snapshot {
        version: u32,
        calls: Vec<&'a CallView>,
    },
    CallStarted {
        call_id: &'a str,
        call: &'a CallInfo,
    },
    CallEnded {
        call_id: &'a str,
    },
}

fn to_json<T: Serialize>(v: &T) -> Arc<str> {
    serde_json::to_string(v)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"))
        .into()
}

impl Hub {
    pub fn new(tokens: TokenStore) -> Arc<Self> {
        let (tx, _) = broadcast::channel(CLIENT_BUFFER);
        Arc::new(Self {
            calls: Mutex::new(BTreeMap::new()),
            tx,
            tokens: Mutex::new(tokens),
        })
    }

    fn publish(&self, agent: Option<String>, json: Arc<str>) {
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(HubMessage { agent, json });
    }

    pub fn call_started(&self, call: &CallInfo) {
        let view = CallView {
            call: call.clone(),
            level: Level::Calm,
            score: 0.0,
            open_alerts: Vec::new(),
            last_lines: Vec::new(),
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(call.call_id.clone(), view);
        }
        self.publish(
            call.agent.clone(),
            to_json(&HubOwn::CallStarted {
                call_id: &call.call_id,
                call,
            }),
        );
    }

    /// Records an event in the call's state and sends it to clients.
    pub fn event(&self, event: &Event) {
        let json = to_json(event);
        let mut agent = None;
        if let Ok(mut calls) = self.calls.lock()
            && let Some(view) = calls.get_mut(event.call_id())
        {
            agent = view.call.agent.clone();
            match event {
                Event::Transcript(t) => {
                    view.last_lines.push(t.clone());
                    let excess = view.last_lines.len().saturating_sub(SNAPSHOT_LINES);
                    view.last_lines.drain(..excess);
                }
                Event::Risk(r) => {
                    view.level = r.level;
                    view.score = r.score;
                }
                Event::Alert(a) => view.open_alerts.push(a.alert_id.clone()),
                _ => {}
            }
        }
        self.publish(agent, json);
    }

    pub fn call_ended(&self, call_id: &str) {
        let agent = self
            .calls
            .lock()
            .ok()
            .and_then(|mut c| c.remove(call_id))
            .and_then(|v| v.call.agent);
        self.publish(agent, to_json(&HubOwn::CallEnded { call_id }));
    }

    pub fn active_calls(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The principal behind a request's token: `Authorization: Bearer`, else `token`, the
    /// (already decoded) `?token=` query value or a token carried in-band by a protocol.
    fn authenticate(&self, headers: &HeaderMap, token: Option<&str>) -> Option<Principal> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = bearer_token(auth, None).or_else(|| token.map(str::to_owned))?;
        let mut store = self.tokens.lock().ok()?;
        // A token revoked from the command line takes effect without a restart.
        if let Err(e) = store.reload_if_changed() {
            tracing::warn!(error = %e, "token store not reloaded");
        }
        store.verify(&token)
    }
}

impl Hub {
    /// Whether a request (or a protocol's in-band token) may send call audio.
    fn may_ingest(&self, headers: &HeaderMap, token: Option<&str>) -> bool {
        self.authenticate(headers, token)
            .is_some_and(|p| can(&p, Action::Ingest))
    }
}

/// Whether a client may see a message.
fn visible(p: &Principal, agent: Option<&str>) -> bool {
    can(p, Action::WatchAll) || agent.is_some_and(|a| can(p, Action::WatchAgent(a)))
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub live: Arc<LiveContext>,
    pub shutdown: CancellationToken,
}

/// The router: `/ws`, `/ingest/twilio`, `/ingest/audiofork` and `/healthz`.
pub fn router(hub: Arc<Hub>, live: Arc<LiveContext>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ws", get(ws_handler))
        .route("/ingest/twilio", get(twilio_handler))
        .route("/ingest/audiofork", get(audiofork_handler))
        .with_state(AppState {
            hub,
            live,
            shutdown,
        })
}

#[derive(serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn ws_handler(
    State(AppState { hub, shutdown, .. }): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(principal) = hub.authenticate(&headers, q.token.as_deref()) else {
        return (StatusCode::UNAUTHORIZED, "a valid token is required\n").into_response();
    };
    if principal.role == super::auth::Role::Ingest {
        return (
            StatusCode::FORBIDDEN,
            "an ingest token cannot watch calls\n",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| client(socket, hub, principal, shutdown))
}

async fn client(mut socket: WebSocket, hub: Arc<Hub>, who: Principal, shutdown: CancellationToken) {
    let span = tracing::info_span!("client", name = %who.name, role = %who.role);
    async {
        // Subscribe before the snapshot so nothing falls between them.
        let mut rx = hub.tx.subscribe();
        let snapshot = {
            let calls = match hub.calls.lock() {
                Ok(c) => c,
                Err(_) => return,
            };
            let visible_calls: Vec<&CallView> = calls
                .values()
                .filter(|v| visible(&who, v.call.agent.as_deref()))
                .collect();
            to_json(&HubOwn::Snapshot {
                version: PROTOCOL_VERSION,
                calls: visible_calls,
            })
        };
        if socket
            .send(Message::Text(snapshot.as_ref().into()))
            .await
            .is_err()
        {
            return;
        }
        tracing::info!("connected");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    close(&mut socket, 1001, "server shutting down").await;
                    break;
                }
                msg = rx.recv() => match msg {
                    Ok(m) => {
                        if !visible(&who, m.agent.as_deref()) {
                            continue;
                        }
                        if socket.send(Message::Text(m.json.as_ref().into())).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "client too slow: disconnecting");
                        close(&mut socket, 1008, "too slow: fell behind the live stream").await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    // Client commands come in the next version; pings are answered by axum.
                    Some(Ok(_)) => {}
                },
            }
        }
        tracing::info!("disconnected");
    }
    .instrument(span)
    .await;
}

/// Twilio Media Streams. Twilio strips query strings, so besides `Authorization: Bearer` the
/// ingest token may come as `token` in the stream's `customParameters`; a call whose `start`
/// carries neither is refused (close 1008) before any audio is used. A malformed message
/// closes this connection only (1007); other calls go on.
async fn twilio_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let pre_authorised = state.hub.may_ingest(&headers, q.token.as_deref());
    ws.on_upgrade(move |socket| ingest_stream(socket, state, pre_authorised, TwilioSession::new()))
}

/// What the ingest loop needs from a protocol session.
trait Ingest: Send {
    fn text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError>;
    fn binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError>;
    fn closed(&mut self) -> Vec<SourceEvent>;
    /// An ingest token carried in the protocol itself (Twilio's customParameters).
    fn token(&self) -> Option<&str> {
        None
    }
}

impl Ingest for TwilioSession {
    fn text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        self.on_text(frame)
    }
    fn binary(&mut self, _data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        // Twilio sends text frames only; a stray binary frame carries nothing we use.
        Ok(Vec::new())
    }
    fn closed(&mut self) -> Vec<SourceEvent> {
        self.on_close()
    }
    fn token(&self) -> Option<&str> {
        TwilioSession::token(self)
    }
}

impl Ingest for AudioforkSession {
    fn text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        self.on_text(frame)
    }
    fn binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        self.on_binary(data)
    }
    fn closed(&mut self) -> Vec<SourceEvent> {
        self.on_close()
    }
}

/// FreeSWITCH mod_audio_fork and jambonz `listen`: the offered subprotocol is echoed, the
/// ingest token comes as `?token=` or `Authorization: Bearer` and is checked before the
/// upgrade (401), the first text frame is the call's metadata, then binary L16 audio.
async fn audiofork_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.hub.may_ingest(&headers, q.token.as_deref()) {
        return (StatusCode::UNAUTHORIZED, "an ingest token is required\n").into_response();
    }
    let id = format!(
        "audiofork-{}",
        NEXT_STREAM.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    ws.protocols(SUBPROTOCOLS)
        .on_upgrade(move |socket| ingest_stream(socket, state, true, AudioforkSession::new(id)))
}

/// Numbers streams whose metadata names no call.
static NEXT_STREAM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Drives one ingest connection: protocol frames in, a hosted live call out. A malformed
/// frame closes this connection only (1007); a call without a valid ingest token never
/// starts (1008).
async fn ingest_stream<S: Ingest>(
    mut socket: WebSocket,
    state: AppState,
    mut authorised: bool,
    mut session: S,
) {
    let mut call = None;
    loop {
        let msg = tokio::select! {
            _ = state.shutdown.cancelled() => {
                close(&mut socket, 1001, "server shutting down").await;
                break;
            }
            msg = socket.recv() => msg,
        };
        let result = match msg {
            Some(Ok(Message::Text(t))) => session.text(t.as_str()),
            Some(Ok(Message::Binary(b))) => session.binary(&b),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "ingest stream refused");
                close(&mut socket, 1007, &e.to_string()).await;
                break;
            }
        };
        for event in events {
            if let SourceEvent::Started(info) = event {
                if !authorised {
                    authorised = state.hub.may_ingest(&HeaderMap::new(), session.token());
                }
                if !authorised {
                    tracing::warn!(call_id = %info.call_id, "ingest stream without a valid token");
                    close(&mut socket, 1008, "an ingest token is required").await;
                    return;
                }
                call = Some(crate::app::host_call(
                    info,
                    Arc::clone(&state.live),
                    Arc::clone(&state.hub),
                ));
            } else if let Some((tx, _)) = &call {
                // A full channel holds this reader back: backpressure to the phone system.
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some((tx, handle)) = call {
        for event in session.closed() {
            let _ = tx.send(event).await;
        }
        drop(tx);
        let _ = handle.await;
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}
