//! `/ws`, the supervisor and agent websocket: the token (header or `?token=`) is checked before
//! the upgrade (401; an ingest token is 403); the client gets a `snapshot`, then its queue from
//! `sinks::hub::state::Hub`, and may send commands (`sinks::hub::protocol`). A client whose
//! queue overflows is closed with 1008; a malformed command gets an `error` reply and nothing
//! else happens. Who took or dismissed a prompt is stored before the reply goes out.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::events::Publisher;
use crate::domain::access::{Principal, Role};
use crate::http::{AppState, authorization};
use crate::ingest::ws::close;
use crate::sinks::hub::protocol::{
    ClientCommand, ErrorCode, HubMessage, MAX_COMMAND_BYTES, to_json,
};
use crate::sinks::hub::state::{ClientHandle, Hub};
use crate::sinks::store::StoreHandle;

#[derive(serde::Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

pub async fn handler(
    State(AppState {
        hub,
        screens_stop,
        store,
        cluster,
        ..
    }): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(principal) = hub.authenticate(authorization(&headers), q.token.as_deref()) else {
        return (StatusCode::UNAUTHORIZED, "a valid token is required\n").into_response();
    };
    if principal.role == Role::Ingest {
        return (
            StatusCode::FORBIDDEN,
            "an ingest token cannot watch calls\n",
        )
            .into_response();
    }
    ws.max_message_size(MAX_COMMAND_BYTES * 4)
        .on_upgrade(move |socket| {
            client(
                socket,
                hub,
                Decisions { store, cluster },
                principal,
                screens_stop,
            )
        })
}

/// Where a screen's decisions on prompts go besides the hub: the store, and in a cluster every
/// other hub and the call's edge.
struct Decisions {
    store: StoreHandle,
    cluster: Option<Arc<Publisher>>,
}

async fn client(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    store: Decisions,
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
    store: &Decisions,
    handle: &ClientHandle,
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
                            if let Some(status) = decided {
                                if let Some(cluster) = &store.cluster {
                                    cluster.decided(&status);
                                }
                                if let Err(e) = store.store.alert_decided(status).await {
                                    tracing::error!(error = %e, "decision not stored");
                                }
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
