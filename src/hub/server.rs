//! The daemon's HTTP side: the supervisor/agent websocket (`/ws`), the review API (`/api`,
//! in `api`), the ingest websockets
//! (`/ingest/twilio` for Twilio Media Streams, `/ingest/audiofork` for FreeSWITCH
//! mod_audio_fork and jambonz `listen`), `/healthz` and `/metrics`.
//!
//! `/ws`: the token (header or `?token=`) is checked before the upgrade (401); the client gets
//! a `snapshot`, then its queue from `state::Hub`, and may send commands (`protocol`). A
//! client whose queue overflows is closed with 1008; a malformed command gets an `error` reply
//! and nothing else happens. Ingest: a token with the `ingest` role, or for Twilio a valid
//! `X-Twilio-Signature` when the account's auth token is configured. A malformed frame closes
//! that connection only (1007). The hub's state and routing rules live in `state`; AudioSocket
//! is plain TCP (`app`).

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::{Action, Principal, Role, bearer_token, can};
use super::protocol::{ClientCommand, ErrorCode, HubMessage, to_json};
pub use super::state::Hub;
use crate::live::LiveContext;
use crate::source::audiofork::{AudioforkSession, SUBPROTOCOLS};
use crate::source::twilio::{TwilioSession, validate_signature};
use crate::source::{SourceError, SourceEvent};
use crate::store::writer::StoreHandle;

/// Twilio signature checking: the account's auth token, and the public base URL Twilio
/// connects to (`wss://host`), when a proxy in front changes the Host header.
#[derive(Debug, Clone, Default)]
pub struct TwilioAuth {
    pub auth_token: Option<String>,
    pub public_url: Option<String>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub live: Arc<LiveContext>,
    /// Ingest stops (and new connections are refused) when this is cancelled.
    pub shutdown: CancellationToken,
    /// Screens close when this is cancelled: after the calls have drained.
    pub screens_stop: CancellationToken,
    pub twilio: Arc<TwilioAuth>,
    /// What hosting a call needs (the ingest endpoints start calls).
    pub calls: Arc<crate::app::CallServices>,
    /// The review API's read side.
    pub api: Arc<super::api::Api>,
}

/// The router: `/ws`, `/ingest/twilio`, `/ingest/audiofork`, `/healthz` and `/metrics`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .route("/ws", get(ws_handler))
        .route("/ingest/twilio", get(twilio_handler))
        .route("/ingest/audiofork", get(audiofork_handler))
        .merge(super::api::routes())
        .merge(super::ui::routes())
        .with_state(state)
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.hub, &state.live),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

impl Hub {
    /// The principal behind a request's token: `Authorization: Bearer`, else the (already
    /// decoded) `?token=` value or a token a protocol carries in-band.
    pub(super) fn authenticate(
        &self,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Option<Principal> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = bearer_token(auth, None).or_else(|| token.map(str::to_owned))?;
        self.verify(&token)
    }

    /// Whether a request (or a protocol's in-band token) may send call audio.
    fn may_ingest(&self, headers: &HeaderMap, token: Option<&str>) -> bool {
        self.authenticate(headers, token)
            .is_some_and(|p| can(&p, Action::Ingest))
    }
}

async fn ws_handler(
    State(AppState {
        hub,
        screens_stop,
        calls,
        ..
    }): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(principal) = hub.authenticate(&headers, q.token.as_deref()) else {
        return (StatusCode::UNAUTHORIZED, "a valid token is required\n").into_response();
    };
    if principal.role == Role::Ingest {
        return (
            StatusCode::FORBIDDEN,
            "an ingest token cannot watch calls\n",
        )
            .into_response();
    }
    ws.max_message_size(super::protocol::MAX_COMMAND_BYTES * 4)
        .on_upgrade(move |socket| client(socket, hub, calls.store.clone(), principal, screens_stop))
}

async fn client(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    store: StoreHandle,
    who: Principal,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("client", name = %who.name, role = %who.role);
    async {
        let handle = hub.connect(who);
        tracing::info!("connected");
        let mut overflowed = false;
        if socket
            .send(Message::Text(handle.snapshot.as_ref().into()))
            .await
            .is_ok()
        {
            overflowed = serve_client(&mut socket, &hub, &store, &handle, &shutdown).await;
        }
        hub.disconnect(handle.id, overflowed);
        tracing::info!(overflowed, "disconnected");
    }
    .instrument(span)
    .await;
}

/// Moves the client's queue to its socket and answers its commands, until either side goes.
/// Returns whether the client was cut off for falling behind.
async fn serve_client(
    socket: &mut WebSocket,
    hub: &Hub,
    store: &StoreHandle,
    handle: &super::state::ClientHandle,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // What was queued before the drain finished still goes out.
                if let Ok(msgs) = handle.queue.drain() {
                    for m in msgs {
                        if socket.send(Message::Text(m.json.as_ref().into())).await.is_err() {
                            return false;
                        }
                    }
                }
                close(socket, 1001, "server shutting down").await;
                return false;
            }
            _ = handle.queue.wait() => {
                let Ok(msgs) = handle.queue.drain() else {
                    tracing::warn!("client too slow: disconnecting");
                    close(socket, 1008, "too slow: fell behind the live stream").await;
                    return true;
                };
                for m in msgs {
                    if socket.send(Message::Text(m.json.as_ref().into())).await.is_err() {
                        return false;
                    }
                }
            }
            incoming = socket.recv() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(t))) => match ClientCommand::parse(t.as_str()) {
                        Ok(cmd) => {
                            tracing::debug!(command = cmd.name(), "command");
                            let (reply, decided) = hub.command_decided(handle.id, &cmd);
                            // Who took or dismissed a prompt is part of the call's record.
                            if let Some(status) = decided
                                && let Err(e) = store.alert_decided(status).await
                            {
                                tracing::error!(error = %e, "decision not stored");
                            }
                            reply
                        }
                        Err(message) => to_json(&HubMessage::Error {
                            id: None,
                            code: ErrorCode::BadRequest,
                            message: &message,
                        }),
                    },
                    Some(Ok(Message::Binary(_))) => to_json(&HubMessage::Error {
                        id: None,
                        code: ErrorCode::BadRequest,
                        message: "commands are JSON text frames",
                    }),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
                    // Pings are answered by axum.
                    Some(Ok(_)) => continue,
                };
                if socket.send(Message::Text(reply.as_ref().into())).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Whether a Twilio upgrade request carries a valid `X-Twilio-Signature`: `None` when there is
/// no header or no auth token configured. Twilio signs the URL it requested; behind a proxy,
/// `public_url` says what that was, otherwise it is rebuilt from the Host header.
fn twilio_signature_ok(
    auth: &TwilioAuth,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<bool> {
    let key = auth.auth_token.as_deref()?;
    let signature = headers.get("x-twilio-signature")?.to_str().ok()?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut candidates = Vec::new();
    if let Some(base) = &auth.public_url {
        candidates.push(format!("{}{path}", base.trim_end_matches('/')));
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        candidates.push(format!("wss://{host}{path}"));
        candidates.push(format!("ws://{host}{path}"));
    }
    Some(
        candidates
            .iter()
            .any(|url| validate_signature(key, url, &[], signature)),
    )
}

/// Twilio Media Streams. With the account's auth token configured, a valid
/// `X-Twilio-Signature` authorises the stream and an invalid one is refused (403) before the
/// upgrade. Otherwise an ingest token: `Authorization: Bearer`, or, since Twilio strips query
/// strings, `token` in the stream's `customParameters`; a call whose `start` carries neither is
/// refused (close 1008) before any audio is used. A malformed message closes this connection
/// only (1007); other calls go on.
async fn twilio_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let token_ok = state.hub.may_ingest(&headers, q.token.as_deref());
    let pre_authorised = match twilio_signature_ok(&state.twilio, &headers, &uri) {
        Some(true) => true,
        Some(false) if !token_ok => {
            tracing::warn!(%uri, "Twilio stream with a bad X-Twilio-Signature refused");
            state
                .hub
                .counters
                .ingest_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return (StatusCode::FORBIDDEN, "X-Twilio-Signature does not match\n").into_response();
        }
        _ => token_ok,
    };
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
        state
            .hub
            .counters
            .ingest_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                state
                    .hub
                    .counters
                    .ingest_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                    state
                        .hub
                        .counters
                        .ingest_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    close(&mut socket, 1008, "an ingest token is required").await;
                    return;
                }
                match crate::app::host_call(info, &state.calls) {
                    Ok(c) => call = Some(c),
                    Err(e) => {
                        // 1013: try again later (RFC 6455).
                        close(&mut socket, 1013, &e.to_string()).await;
                        return;
                    }
                }
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
