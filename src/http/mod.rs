//! The daemon's HTTP side: one router for the supervisor/agent websocket (`/ws`, in `ws`), the
//! review API (`/api`, in `api`), the web screens (`ui`), `/healthz` and `/metrics`
//! (`metrics`); the ingest websockets (`ingest::ws`) are merged in by the daemon. Handlers read
//! the hub's live state and the store; they never start calls or touch the pipeline.
//!
//! | module    | what it serves |
//! |-----------|----------------|
//! | `ws`      | `/ws`: the token checked before the upgrade, a snapshot, the client's queue, its commands |
//! | `api`     | `/api/...`: stored calls for review, exports, the recording, QA notes, deletion |
//! | `ui`      | the web screens, compiled into the binary |
//! | `metrics` | `/metrics`: counters in the Prometheus text format |

pub mod api;
pub mod metrics;
pub mod ui;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestCounters;
use crate::pipeline::asr::worker::Transcriber;
use crate::sinks::hub::state::Hub;
use crate::sinks::store::StoreHandle;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// The store's writer: decisions, notes and deletions go through it.
    pub store: StoreHandle,
    /// The review API's read side.
    pub api: Arc<api::Api>,
    /// Screens close when this is cancelled: after the calls have drained.
    pub screens_stop: CancellationToken,
    /// For `/metrics`; none in a cluster hub (no Whisper there).
    pub pool: Option<Arc<dyn Transcriber>>,
    /// In a cluster: where decisions taken on this process's screens are published.
    pub cluster: Option<Arc<crate::cluster::events::Publisher>>,
    pub ingest: Arc<IngestCounters>,
}

/// The router: `/healthz`, `/metrics`, `/ws`, `/api` and the screens.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .route("/ws", get(ws::handler))
        .merge(api::routes())
        .merge(ui::routes())
        .with_state(state)
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(
            &state.hub,
            state.pool.as_deref(),
            &state.ingest,
            state.cluster.as_ref().map(|c| c.stats.as_ref()),
        ),
    )
        .into_response()
}

/// A request's `Authorization` header, as text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
