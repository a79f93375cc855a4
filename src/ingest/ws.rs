//! The websocket ingest endpoints: `/ingest/twilio` (Twilio Media Streams) and
//! `/ingest/audiofork` (FreeSWITCH mod_audio_fork and jambonz `listen`). Each connection is one
//! call: its frames go through the protocol's [`Session`], the call it starts is hosted by the
//! [`CallHost`], and its source events are fed to that call.
//!
//! Credentials: an ingest token (`Authorization: Bearer`, `?token=`, or for Twilio the `token`
//! custom parameter, since Twilio strips query strings), or for Twilio a valid
//! `X-Twilio-Signature` when the account's auth token is configured. A call without valid
//! credentials never starts (close 1008); a refused call (the daemon is full, the call id is
//! live) closes with 1013; a malformed frame closes that connection only (1007). Other calls go
//! on. What it does not do: serve screens (that is `http`), or know what hosting a call means.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::domain::call::SourceEvent;
use crate::ingest::audiofork::{AudioforkSession, SUBPROTOCOLS};
use crate::ingest::twilio::{TwilioSession, validate_signature};
use crate::ingest::{CallHost, HostedCall, IngestCounters, Session};

/// Twilio signature checking: the account's auth token, and the public base URL Twilio
/// connects to (`wss://host`), when a proxy in front changes the Host header.
#[derive(Debug, Clone, Default)]
pub struct TwilioAuth {
    pub auth_token: Option<String>,
    pub public_url: Option<String>,
}

/// What the endpoints share.
pub struct WsIngest {
    pub host: Arc<dyn CallHost>,
    pub twilio: TwilioAuth,
    /// Ingest stops (connections close with 1001) when this is cancelled.
    pub shutdown: CancellationToken,
    pub counters: Arc<IngestCounters>,
}

type Shared = Arc<WsIngest>;

/// The two ingest routes, ready to merge into the daemon's router.
pub fn routes(ingest: Shared) -> Router {
    Router::new()
        .route("/ingest/twilio", get(twilio_handler))
        .route("/ingest/audiofork", get(audiofork_handler))
        .with_state(ingest)
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
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
/// refused (close 1008) before any audio is used.
async fn twilio_handler(
    State(ingest): State<Shared>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let token_ok = ingest
        .host
        .may_ingest(authorization(&headers), q.token.as_deref());
    let pre_authorised = match twilio_signature_ok(&ingest.twilio, &headers, &uri) {
        Some(true) => true,
        Some(false) if !token_ok => {
            tracing::warn!(%uri, "Twilio stream with a bad X-Twilio-Signature refused");
            ingest.counters.refused();
            return (StatusCode::FORBIDDEN, "X-Twilio-Signature does not match\n").into_response();
        }
        _ => token_ok,
    };
    ws.on_upgrade(move |socket| stream(socket, ingest, pre_authorised, TwilioSession::new()))
}

/// FreeSWITCH mod_audio_fork and jambonz `listen`: the offered subprotocol is echoed, the
/// ingest token comes as `?token=` or `Authorization: Bearer` and is checked before the
/// upgrade (401), the first text frame is the call's metadata, then binary L16 audio.
async fn audiofork_handler(
    State(ingest): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !ingest
        .host
        .may_ingest(authorization(&headers), q.token.as_deref())
    {
        ingest.counters.refused();
        return (StatusCode::UNAUTHORIZED, "an ingest token is required\n").into_response();
    }
    let id = format!(
        "audiofork-{}",
        NEXT_STREAM.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    ws.protocols(SUBPROTOCOLS)
        .on_upgrade(move |socket| stream(socket, ingest, true, AudioforkSession::new(id)))
}

/// Numbers streams whose metadata names no call.
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// Drives one ingest connection: protocol frames in, a hosted call out.
async fn stream<S: Session>(
    mut socket: WebSocket,
    ingest: Shared,
    mut authorised: bool,
    mut session: S,
) {
    let mut call: Option<HostedCall> = None;
    loop {
        let msg = tokio::select! {
            _ = ingest.shutdown.cancelled() => {
                close(&mut socket, 1001, "server shutting down").await;
                break;
            }
            msg = socket.recv() => msg,
        };
        let result = match msg {
            Some(Ok(Message::Text(t))) => session.on_text(t.as_str()),
            Some(Ok(Message::Binary(b))) => session.on_binary(&b),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "ingest stream refused");
                ingest.counters.error();
                close(&mut socket, 1007, &e.to_string()).await;
                break;
            }
        };
        for event in events {
            if let SourceEvent::Started(info) = event {
                if !authorised {
                    authorised = ingest.host.may_ingest(None, session.token());
                }
                if !authorised {
                    tracing::warn!(call_id = %info.call_id, "ingest stream without a valid token");
                    ingest.counters.refused();
                    close(&mut socket, 1008, "an ingest token is required").await;
                    return;
                }
                match ingest.host.host(info) {
                    Ok(c) => call = Some(c),
                    Err(e) => {
                        // 1013: try again later (RFC 6455).
                        close(&mut socket, 1013, &e.to_string()).await;
                        return;
                    }
                }
            } else if let Some(c) = &call {
                // A full channel holds this reader back: backpressure to the phone system.
                if c.input.send(event).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(HostedCall { input, done }) = call {
        for event in session.on_close() {
            let _ = input.send(event).await;
        }
        drop(input);
        let _ = done.await;
    }
}

/// Sends a close frame with a code and reason (best effort: the peer may be gone).
pub async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}
