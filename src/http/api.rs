//! The review API under `/api`: stored calls for the web UI, QA scripts and exports
//! (`docs/api.md` documents every route with examples).
//!
//! What it does: checks the token (the same tokens and roles as `/ws`), scopes agent tokens to
//! their own calls, lists and searches calls (`store::CallFilter` from query parameters),
//! returns one call in full, its transcript as JSON, WebVTT or SRT, its recording (with HTTP
//! ranges, so a browser's player can seek), adds QA notes and, for admins, deletes a call.
//! Reads run on blocking threads with read-only connections of their own (a small pool), so a
//! slow query never holds up the async runtime or the writer; writes go through the daemon's
//! one store writer and are committed before the reply.
//!
//! What it does not do: it serves no live data (that is `/ws`), no HTML (that is `ui`), and it
//! never reveals whether a call outside an agent's scope exists (such a call is 404, like a
//! missing one). Every error is a JSON body `{"error": CODE, "message": TEXT}`.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::domain::access::{Action, Principal, Role, can};
use crate::http::{AppState, authorization};
use crate::sinks::store::query::StoreReader;
use crate::sinks::store::{CallDetail, CallFilter, CallKey, StoreError, export};

/// Read-only connections kept for reuse; more are opened when all are busy.
const POOLED_READERS: usize = 4;

/// The longest QA note accepted (the store's own limit, checked here for a clear 400).
const MAX_NOTE_CHARS: usize = 10_000;

/// The API's shared part: where the store is, and idle read connections.
pub struct Api {
    data_dir: PathBuf,
    readers: Mutex<Vec<StoreReader>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Api {
    /// The API on the store under `data_dir` (which the daemon has opened and migrated).
    pub fn new(data_dir: PathBuf) -> Arc<Api> {
        Arc::new(Api {
            data_dir,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with a read connection on a blocking thread.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&StoreReader) -> Result<T, StoreError> + Send + 'static,
    {
        let api = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let pooled = api
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let reader = match pooled {
                Some(r) => r,
                None => StoreReader::open(&api.data_dir)?,
            };
            let out = f(&reader);
            let mut idle = api.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < POOLED_READERS {
                idle.push(reader);
            }
            out
        })
        .await;
        match joined {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => Err(ApiError::Internal(format!("store read failed: {e}"))),
        }
    }
}

/// Why a request failed; each becomes a status and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid token is required (Authorization: Bearer, or ?token=)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("range not satisfiable")]
    Range { len: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Range { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "bad_range"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchCall { id, .. } => ApiError::NotFound(format!("no call {id}")),
            StoreError::Invalid { what, why, .. } => ApiError::BadRequest(format!("{what}: {why}")),
            StoreError::Closed => ApiError::Unavailable("the call store is shutting down".into()),
            other => {
                // The full error names server paths: logged here, not sent to the client.
                tracing::error!(error = %other, "call store");
                ApiError::Internal("the call store failed; see the daemon's log".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error": code, "message": self.to_string() });
        let mut res = (status, no_store(), Json(body)).into_response();
        if let ApiError::Range { len } = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}"))
        {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        res
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// The `/api` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/calls", get(list))
        .route("/api/calls/{id}", get(detail).delete(delete))
        .route("/api/calls/{id}/notes", post(add_note))
        .route("/api/calls/{id}/{file}", get(call_file))
}

/// `?token=` on any route (browsers cannot set headers on `<audio src>` or download links);
/// the routes' own query structs ignore it.
#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Who is asking, from `Authorization: Bearer` or `?token=`: any valid token but an ingest
/// one. Handlers take it as an argument, so no route can forget the check.
struct Caller(Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(q) = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let p = state
            .hub
            .authenticate(authorization(&parts.headers), q.token.as_deref())
            .ok_or(ApiError::Unauthorized)?;
        if p.role == Role::Ingest {
            return Err(ApiError::Forbidden("an ingest token cannot read calls"));
        }
        Ok(Caller(p))
    }
}

/// Which calls a principal may review: `Ok(None)` every call, `Ok(Some(agent))` only that
/// agent's.
fn scope(p: &Principal) -> Result<Option<String>, ApiError> {
    if can(p, Action::ReviewCalls) {
        return Ok(None);
    }
    match (p.role, &p.agent) {
        (Role::Agent, Some(a)) => Ok(Some(a.clone())),
        _ => Err(ApiError::Forbidden("this token may not review calls")),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

#[derive(serde::Serialize)]
struct Me<'a> {
    name: &'a str,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    /// What the UI should offer this token.
    may: May,
}

#[derive(serde::Serialize)]
struct May {
    watch_all: bool,
    accept_transfer: bool,
    dismiss_alert: bool,
    review_all: bool,
    annotate: bool,
    delete: bool,
}

async fn me(Caller(p): Caller) -> Result<Response, ApiError> {
    let may = May {
        watch_all: can(&p, Action::WatchAll),
        accept_transfer: can(&p, Action::AcceptTransfer),
        dismiss_alert: can(&p, Action::DismissAlert),
        review_all: can(&p, Action::ReviewCalls),
        annotate: can(&p, Action::AnnotateCalls),
        delete: can(&p, Action::DeleteCalls),
    };
    let me = Me {
        name: &p.name,
        role: p.role,
        agent: p.agent.as_deref(),
        may,
    };
    Ok((no_store(), Json(me)).into_response())
}

/// `GET /api/calls` query parameters: the filter as text, so that empty form fields mean
/// "any" and a bad value gets a message naming the parameter.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    level: Option<String>,
    reason: Option<String>,
    outcome: Option<String>,
    agent: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// A query parameter's value, `None` when absent or blank.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// One of the API's snake_case names (level, reason, outcome), with the choices on error.
fn parse_name<T: DeserializeOwned>(param: &str, v: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(v.to_owned()))
        .map_err(|e| ApiError::BadRequest(format!("{param}: {e}")))
}

fn parse_num<T: std::str::FromStr>(param: &str, v: &str) -> Result<T, ApiError> {
    v.parse()
        .map_err(|_| ApiError::BadRequest(format!("{param}: {v:?} is not a valid number")))
}

impl ListQuery {
    fn filter(&self) -> Result<CallFilter, ApiError> {
        let defaults = CallFilter::default();
        let request = crate::sinks::store::filter::ListRequest {
            q: given(&self.q).map(str::to_owned),
            from: given(&self.from).map(str::to_owned),
            to: given(&self.to).map(str::to_owned),
            level: given(&self.level)
                .map(|v| parse_name("level", v))
                .transpose()?,
            reason: given(&self.reason)
                .map(|v| parse_name("reason", v))
                .transpose()?,
            outcome: given(&self.outcome)
                .map(|v| parse_name("outcome", v))
                .transpose()?,
            agent: given(&self.agent).map(str::to_owned),
            limit: given(&self.limit)
                .map(|v| parse_num("limit", v))
                .transpose()?
                .unwrap_or(defaults.limit),
            offset: given(&self.offset)
                .map(|v| parse_num("offset", v))
                .transpose()?
                .unwrap_or(defaults.offset),
        };
        // The CLI's parsing, dates included, with the parameters named as the API spells them.
        request
            .filter_named("from", "to")
            .map_err(ApiError::BadRequest)
    }
}

async fn list(
    State(state): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let mut filter = q.filter()?;
    if let Some(own) = scope(&p)? {
        filter.agent = Some(own);
    }
    let page = state.api.read(move |r| r.list_calls(&filter)).await?;
    Ok((no_store(), Json(page)).into_response())
}

/// The call with store id `id` if `p` may see it (404 otherwise, whether or not it exists).
async fn load(state: &AppState, p: &Principal, id: &str) -> Result<CallDetail, ApiError> {
    let own = scope(p)?;
    let not_found = || ApiError::NotFound(format!("no call {id}"));
    let key: CallKey = id.parse().map_err(|_| not_found())?;
    let detail = state
        .api
        .read(move |r| r.get_call(key))
        .await?
        .ok_or_else(not_found)?;
    match own {
        Some(a) if detail.call.agent.as_deref() != Some(a.as_str()) => Err(not_found()),
        _ => Ok(detail),
    }
}

async fn detail(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let call = load(&state, &p, &id).await?;
    Ok((no_store(), Json(call)).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct FileQuery {
    /// `1` (or `true`): served as an attachment, for a download button.
    download: Option<String>,
}

/// `transcript.json|vtt|srt` and `audio.wav`.
async fn call_file(
    State(state): State<AppState>,
    Caller(p): Caller,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (content_type, ext) = match file.as_str() {
        "transcript.json" => ("application/json", "json"),
        "transcript.vtt" => ("text/vtt; charset=utf-8", "vtt"),
        "transcript.srt" => ("application/x-subrip; charset=utf-8", "srt"),
        "audio.wav" => ("audio/wav", "wav"),
        _ => {
            return Err(ApiError::NotFound(format!(
                "no {file:?} (transcript.json, transcript.vtt, transcript.srt or audio.wav)"
            )));
        }
    };
    let call = load(&state, &p, &id).await?;
    let download = matches!(q.download.as_deref(), Some("1" | "true"));
    let mut res = if ext == "wav" {
        audio(&call, headers.get(header::RANGE)).await?
    } else {
        let body = match ext {
            "vtt" => export::to_vtt(&call),
            "srt" => export::to_srt(&call),
            _ => export::to_json(&call),
        };
        (no_store(), body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if download
        && let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{}.{ext}\"",
            file_stem(&call.call.call_id)
        ))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// A phone-system call id as a safe download name.
fn file_stem(call_id: &str) -> String {
    let s: String = call_id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.trim_matches(['.', '_']).is_empty() {
        "call".into()
    } else {
        s
    }
}

/// Parses a single `bytes=` range against a file of `len` bytes: the inclusive first and last
/// byte. `None` for a header this server ignores (multiple ranges, other units): the whole
/// file is sent, as HTTP allows. `Err` for a range outside the file.
pub fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

async fn audio(call: &CallDetail, range: Option<&HeaderValue>) -> Result<Response, ApiError> {
    let no_audio = || ApiError::NotFound(format!("call {} has no recording", call.call.id));
    let path = match (&call.call.recording_path, call.call.has_audio) {
        (Some(p), true) => p.clone(),
        _ => return Err(no_audio()),
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_audio()),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "recording unreadable");
            return Err(ApiError::Internal("the recording cannot be read".into()));
        }
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(format!("recording: {e}")))?
        .len();
    let range = range
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(Err(())) => return Err(ApiError::Range { len }),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::Internal(format!("recording: {e}")))?;
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

async fn add_note(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    body: Result<Json<NoteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !can(&p, Action::AnnotateCalls) {
        return Err(ApiError::Forbidden("this token may not add QA notes"));
    }
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let text = body.text.trim().to_owned();
    if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "text: a note is 1 to {MAX_NOTE_CHARS} characters"
        )));
    }
    let call = load(&state, &p, &id).await?;
    let now = crate::domain::clock::unix_ms();
    let note_id = state
        .store
        .add_note(call.call.id, p.name.clone(), text.clone(), now)
        .await?;
    let note = crate::sinks::store::Note {
        id: note_id,
        author: p.name,
        created_unix_ms: now,
        text,
    };
    Ok((StatusCode::CREATED, no_store(), Json(note)).into_response())
}

async fn delete(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !can(&p, Action::DeleteCalls) {
        return Err(ApiError::Forbidden("only an admin token may delete calls"));
    }
    let call = load(&state, &p, &id).await?;
    if call.call.ended_unix_ms.is_none() {
        return Err(ApiError::Conflict(format!(
            "call {} is live: it can be deleted once it has ended",
            call.call.id
        )));
    }
    state.store.delete_call(call.call.id).await?;
    if let Some(path) = &call.call.recording_path {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // The row is gone; an orphaned file is logged for the operator, not an API error.
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "recording of a deleted call not removed")
            }
        }
    }
    tracing::info!(by = %p.name, call = call.call.id, call_id = %call.call.call_id, "call deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=500-", 1000), Some(Ok((500, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-5000", 1000), Some(Ok((0, 999))));
        assert_eq!(parse_range("bytes=900-5000", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=50-10", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        // Ignored: the whole file is sent.
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=x-1", 1000), None);
    }

    #[test]
    fn download_names() {
        assert_eq!(file_stem("CA123-abc_9.x"), "CA123-abc_9.x");
        assert_eq!(file_stem("a/b\\c\"d"), "a_b_c_d");
        assert_eq!(file_stem("../.."), "call");
        assert_eq!(file_stem("投诉"), "call");
    }

    #[test]
    fn list_query_parsing() {
        let q = ListQuery {
            q: Some("  ".into()),
            level: Some("".into()),
            reason: Some("threat_media".into()),
            from: Some("2026-01-02".into()),
            to: Some("2026-01-02".into()),
            limit: Some("20".into()),
            ..Default::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.q, None);
        assert_eq!(f.level, None);
        assert!(f.reason.is_some());
        assert_eq!(f.to.unwrap() - f.from.unwrap(), 86_400_000);
        assert_eq!(f.limit, 20);
        let bad = ListQuery {
            level: Some("furious".into()),
            ..Default::default()
        };
        let e = bad.filter().unwrap_err().to_string();
        assert!(e.starts_with("level:"), "{e}");
        let bad = ListQuery {
            offset: Some("-1".into()),
            ..Default::default()
        };
        assert!(bad.filter().unwrap_err().to_string().contains("offset"));
    }
}
