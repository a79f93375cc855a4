//! The outgoing webhook: transfer prompts and the decisions on them (accept, dismiss) POSTed
//! as JSON to a phone system or CRM, so that it can act on a transfer.
//!
//! What it does:
//! - [`Webhook::start`] (or [`Webhook::try_start`], which returns the error) spawns one delivery task; [`WebhookHandle::send`] queues a delivery and
//!   returns at once. The queue is bounded (`webhook.queue`): when it is full the new delivery
//!   is dropped, counted and logged, so a slow or dead receiver never slows a call.
//! - Deliveries go out one at a time, in the order they were sent. The body is the caller's
//!   JSON exactly as given (this module adds no envelope), with the headers
//!   `Content-Type: application/json`, `X-Callguard-Event: <kind>`,
//!   `X-Callguard-Delivery: <id>` (unique per delivery and the same on each of its retries, so a
//!   receiver can deduplicate) and, when `webhook.secret` is set,
//!   `X-Callguard-Signature: sha256=<lowercase hex HMAC-SHA256 of the body bytes>`.
//! - A 2xx answer is delivered. A 5xx, 408 or 429 answer, a timeout or a connection error is
//!   retried up to `webhook.retries` times, waiting `webhook.backoff_ms` and then twice as long
//!   each time (at most a minute). Any other answer (a 4xx, a redirect) is final and failed.
//!   Each delivery is logged in a `webhook` span with its kind and id; each attempt with its
//!   number and the HTTP status or the error.
//! - Counters ([`WebhookStats`]): delivered, failed, dropped (queue full, or abandoned at
//!   shutdown), retried (retry attempts made).
//! - On shutdown, what is queued is still delivered for one `webhook.timeout_ms` more (a
//!   grace period); whatever is left then is dropped and counted, and the task ends.
//!   [`WebhookHandle::stopped`] resolves when it has.
//!
//! What it does not: persist the queue (a restart loses what was pending), follow redirects,
//! read `Retry-After`, deliver in parallel, or decide what the payload looks like. HTTPS uses
//! rustls with the ring provider and the bundled Mozilla (webpki) roots, not the system's
//! certificate store, so a receiver behind a private CA is not supported yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Names the kind of delivery (`alert`, `transfer_accepted`, ...).
pub const EVENT_HEADER: &str = "x-callguard-event";
/// The delivery id, the same on every retry of one delivery.
pub const DELIVERY_HEADER: &str = "x-callguard-delivery";
/// `sha256=<hex>`: HMAC-SHA256 of the body with `webhook.secret`, when one is set.
pub const SIGNATURE_HEADER: &str = "x-callguard-signature";

/// The longest wait between two attempts, however many retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of a refusing answer's body is read into the log.
const SNIPPET_BYTES: usize = 200;

/// Why the webhook could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook config: {0}")]
    Config(String),
    #[error("webhook HTTP client: {0}")]
    Client(String),
    #[error("the webhook must be started inside a tokio runtime")]
    NoRuntime,
}

/// Delivery counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Deliveries answered with a 2xx.
    pub delivered: u64,
    /// Deliveries given up: a final non-2xx answer, retries exhausted, or cut off at shutdown.
    pub failed: u64,
    /// Deliveries never attempted: the queue was full, or shutdown came first.
    pub dropped: u64,
    /// Retry attempts made (a delivery that succeeded on its third attempt adds 2).
    pub retried: u64,
}

/// Starts the webhook; see the module documentation.
pub struct Webhook;

impl Webhook {
    /// [`Webhook::try_start`], with a failure logged as an error and the webhook left off.
    /// `None` when no URL is configured. The config has normally been validated with the rest,
    /// so a failure here is a TLS set-up problem or a call from outside a tokio runtime.
    pub fn start(cfg: &WebhookConfig, shutdown: CancellationToken) -> Option<WebhookHandle> {
        match Self::try_start(cfg, shutdown) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "webhook not started");
                None
            }
        }
    }

    /// Validates `cfg`, builds the HTTP client and spawns the delivery task on the current
    /// tokio runtime. `Ok(None)` when no URL is configured. The task ends when `shutdown` is
    /// cancelled (after the grace period) or when every handle has been dropped.
    pub fn try_start(
        cfg: &WebhookConfig,
        shutdown: CancellationToken,
    ) -> Result<Option<WebhookHandle>, WebhookError> {
        if !cfg.enabled() {
            return Ok(None);
        }
        cfg.validate().map_err(WebhookError::Config)?;
        let url = Url::parse(&cfg.url).map_err(|e| WebhookError::Config(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let client = build_client(timeout)?;
        let mac = if cfg.secret.is_empty() {
            None
        } else {
            Some(
                Hmac::<Sha256>::new_from_slice(cfg.secret.as_bytes())
                    .map_err(|e| WebhookError::Config(format!("webhook.secret: {e}")))?,
            )
        };
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            id_prefix: id_prefix(),
            next_seq: AtomicU64::new(1),
            stopped: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(cfg.queue);
        let worker = Worker {
            client,
            url,
            mac,
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.backoff_ms),
            shared: Arc::clone(&shared),
            stop: Stop {
                shutdown,
                grace: timeout,
                deadline: OnceLock::new(),
            },
        };
        runtime.spawn(worker.run(rx));
        tracing::info!(
            host = host_of(&cfg.url),
            signed = !cfg.secret.is_empty(),
            "webhook started"
        );
        Ok(Some(WebhookHandle { tx, shared }))
    }
}

/// Queues deliveries for the webhook task. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct WebhookHandle {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl WebhookHandle {
    /// Queues one delivery of `body` with `X-Callguard-Event: kind` and returns at once. When
    /// the queue is full, or the task has stopped, the delivery is dropped, counted and logged.
    pub fn send(&self, kind: &str, body: serde_json::Value) {
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            kind: kind.to_owned(),
            id: format!("{}-{seq}", self.shared.id_prefix),
            body,
        };
        let (job, why) = match self.tx.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(job)) => (job, "queue full"),
            Err(mpsc::error::TrySendError::Closed(job)) => (job, "webhook stopped"),
        };
        let dropped = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            kind = %job.kind,
            delivery = %job.id,
            dropped_total = dropped,
            "webhook delivery dropped: {why}"
        );
    }

    /// The counters so far.
    pub fn stats(&self) -> WebhookStats {
        self.shared.counters.snapshot()
    }

    /// Resolves once the delivery task has ended (after shutdown and its grace period, or once
    /// every handle is dropped and the queue is done).
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await
    }
}

#[derive(Debug)]
struct Job {
    kind: String,
    id: String,
    body: serde_json::Value,
}

#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Random per start, so ids do not repeat across restarts.
    id_prefix: String,
    next_seq: AtomicU64,
    /// Cancelled when the delivery task ends.
    stopped: CancellationToken,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

/// 16 lowercase hex digits, random (the clock's nanoseconds if the OS has no randomness).
fn id_prefix() -> String {
    let mut bytes = [0u8; 8];
    let n = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    format!("{n:016x}")
}

/// The URL's host, for logs: the full URL may carry a token.
fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// HTTP/1.1, no redirects, one timeout per attempt, rustls (ring) with the webpki roots.
fn build_client(timeout: Duration) -> Result<reqwest::Client, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("callguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Client(error_chain(&e)))
}

/// The shutdown token and the grace period that follows it.
struct Stop {
    shutdown: CancellationToken,
    grace: Duration,
    /// Set when the task first sees the shutdown.
    deadline: OnceLock<Instant>,
}

impl Stop {
    fn deadline(&self) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + self.grace)
    }

    /// Resolves when shutdown has come and its grace period is over.
    async fn grace_over(&self) {
        self.shutdown.cancelled().await;
        tokio::time::sleep_until(self.deadline()).await;
    }

    fn is_over(&self) -> bool {
        self.shutdown.is_cancelled() && Instant::now() >= self.deadline()
    }
}

struct Worker {
    client: reqwest::Client,
    url: Url,
    mac: Option<Hmac<Sha256>>,
    retries: u32,
    backoff: Duration,
    shared: Arc<Shared>,
    stop: Stop,
}

/// What one attempt came to.
enum Attempt {
    Delivered(StatusCode),
    Refused {
        status: Option<StatusCode>,
        detail: String,
        retry: bool,
    },
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let _stopped = self.shared.stopped.clone().drop_guard();
        loop {
            let job = if self.stop.shutdown.is_cancelled() {
                self.stop.deadline();
                match rx.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(job) => job,
                        None => break,
                    },
                    () = self.stop.shutdown.cancelled() => continue,
                }
            };
            if self.stop.is_over() {
                self.abandon(&job);
                break;
            }
            let span = tracing::info_span!("webhook", kind = %job.kind, delivery = %job.id);
            self.deliver(job).instrument(span).await;
        }
        // Refuse further sends, then count what was still queued.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            self.abandon(&job);
        }
        tracing::info!(stats = ?self.shared.counters.snapshot(), "webhook stopped");
    }

    fn abandon(&self, job: &Job) {
        let dropped = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            kind = %job.kind,
            delivery = %job.id,
            dropped_total = dropped,
            "webhook delivery dropped: shutdown grace period over"
        );
    }

    fn fail(&self) {
        self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
    }

    async fn deliver(&self, job: Job) {
        let (headers, body) = match self.request_parts(&job) {
            Ok(parts) => parts,
            Err(e) => {
                self.fail();
                tracing::error!(error = %e, "webhook delivery failed: cannot build the request");
                return;
            }
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome = tokio::select! {
                outcome = self.attempt(&headers, &body) => outcome,
                () = self.stop.grace_over() => {
                    self.fail();
                    tracing::warn!(attempt, "webhook delivery failed: cut off at shutdown");
                    return;
                }
            };
            let (status, detail, retry) = match outcome {
                Attempt::Delivered(status) => {
                    self.shared
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(attempt, status = status.as_u16(), "webhook delivered");
                    return;
                }
                Attempt::Refused {
                    status,
                    detail,
                    retry,
                } => (status.map(|s| s.as_u16()), detail, retry),
            };
            if !retry {
                self.fail();
                tracing::warn!(attempt, status, detail = %detail, "webhook delivery failed, not retried");
                return;
            }
            if attempt > self.retries {
                self.fail();
                tracing::warn!(
                    attempt,
                    status,
                    detail = %detail,
                    "webhook delivery failed, retries exhausted"
                );
                return;
            }
            let wait = self
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            tracing::warn!(
                attempt,
                status,
                detail = %detail,
                retry_in_ms = wait.as_millis() as u64,
                "webhook attempt failed, will retry"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.grace_over() => {
                    self.fail();
                    tracing::warn!(attempt, "webhook delivery failed: cut off at shutdown");
                    return;
                }
            }
            self.shared.counters.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The headers and the exact body bytes (which the signature covers).
    fn request_parts(&self, job: &Job) -> Result<(HeaderMap, Vec<u8>), String> {
        let body = serde_json::to_vec(&job.body).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| format!("{v:?} is not a valid header value"))
        };
        headers.insert(HeaderName::from_static(EVENT_HEADER), value(&job.kind)?);
        headers.insert(HeaderName::from_static(DELIVERY_HEADER), value(&job.id)?);
        if let Some(mac) = &self.mac {
            let mut mac = mac.clone();
            mac.update(&body);
            let sig = format!("sha256={}", hex(&mac.finalize().into_bytes()));
            headers.insert(HeaderName::from_static(SIGNATURE_HEADER), value(&sig)?);
        }
        Ok((headers, body))
    }

    async fn attempt(&self, headers: &HeaderMap, body: &[u8]) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .headers(headers.clone())
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let detail = snippet(response).await;
                if status.is_success() {
                    return Attempt::Delivered(status);
                }
                let retry = status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT;
                Attempt::Refused {
                    status: Some(status),
                    detail,
                    retry,
                }
            }
            Err(e) => Attempt::Refused {
                status: None,
                retry: !e.is_builder(),
                detail: error_chain(&e.without_url()),
            },
        }
    }
}

/// The start of the answer's body, for the log (reading it also lets the connection be
/// reused).
async fn snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(SNIPPET_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// An error and its causes, `: `-separated (reqwest's own message says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The webhook (`[webhook]`): each transfer prompt and each accept/dismiss decision is
/// POSTed as JSON to a phone system or CRM, one at a time and in order, with retries. Off while
/// `url` is empty.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed: an `http://` or `https://` URL; empty = no webhook.
    pub url: String,
    /// ms one attempt may take, connecting and reading the answer included (10..120000).
    /// Also the grace period for what is still queued at shutdown.
    pub timeout_ms: u64,
    /// Further attempts after a 5xx, 408 or 429 answer, a timeout or a connection error
    /// (0..10). Any other answer is final: 2xx delivered, the rest failed.
    pub retries: u32,
    /// ms before the first retry, doubling for each further one, each wait at most a minute
    /// (0..60000).
    pub backoff_ms: u64,
    /// HMAC-SHA256 key; when set, each POST carries `X-Callguard-Signature: sha256=<hex>` of
    /// the exact body bytes. Empty = unsigned.
    pub secret: String,
    /// Deliveries that may wait to be sent (1..65536); when full, a new one is dropped and
    /// counted rather than ever slowing a call.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 5000,
            retries: 3,
            backoff_ms: 500,
            secret: String::new(),
            queue: 256,
        }
    }
}

/// The secret is never printed.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("backoff_ms", &self.backoff_ms)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookConfig {
    /// Whether a webhook is configured at all.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks the ranges and, when set, that `url` is an absolute http(s) URL with a host.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled() {
            let url = reqwest::Url::parse(&self.url)
                .map_err(|e| format!("webhook.url {:?} is not a URL: {e}", self.url))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "webhook.url {:?} must be an http:// or https:// URL with a host",
                    self.url
                ));
            }
        }
        if !(10..=120_000).contains(&self.timeout_ms) {
            return Err(format!(
                "webhook.timeout_ms = {} is outside 10..120000",
                self.timeout_ms
            ));
        }
        if self.retries > 10 {
            return Err(format!("webhook.retries = {} is over 10", self.retries));
        }
        if self.backoff_ms > 60_000 {
            return Err(format!(
                "webhook.backoff_ms = {} is over 60000",
                self.backoff_ms
            ));
        }
        if !(1..=65_536).contains(&self.queue) {
            return Err(format!(
                "webhook.queue = {} is outside 1..65536",
                self.queue
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap as AxumHeaders;
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;

    /// One request as the test server saw it.
    #[derive(Debug)]
    struct Received {
        headers: AxumHeaders,
        body: Bytes,
    }

    impl Received {
        fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    struct ServerState {
        /// Statuses to answer, in order; 200 once they run out.
        statuses: Mutex<VecDeque<u16>>,
        /// When set, each request waits for a permit before it is answered.
        gate: Option<Arc<Semaphore>>,
        seen: mpsc::UnboundedSender<Received>,
    }

    async fn record(
        State(s): State<Arc<ServerState>>,
        headers: AxumHeaders,
        body: Bytes,
    ) -> axum::http::StatusCode {
        let _ = s.seen.send(Received { headers, body });
        if let Some(gate) = &s.gate {
            gate.acquire().await.unwrap().forget();
        }
        let status = s.statuses.lock().unwrap().pop_front().unwrap_or(200);
        axum::http::StatusCode::from_u16(status).unwrap()
    }

    /// A real HTTP server on a free port: (its URL, what it received).
    async fn server(
        statuses: &[u16],
        gate: Option<Arc<Semaphore>>,
    ) -> (String, mpsc::UnboundedReceiver<Received>) {
        let (seen, received) = mpsc::unbounded_channel();
        let state = Arc::new(ServerState {
            statuses: Mutex::new(statuses.iter().copied().collect()),
            gate,
            seen,
        });
        let app = Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), received)
    }

    /// Accepts connections and never answers; counts them.
    async fn silent_server() -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (format!("http://{addr}/hook"), accepted)
    }

    fn cfg(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.to_owned(),
            timeout_ms: 200,
            retries: 3,
            backoff_ms: 20,
            secret: String::new(),
            queue: 16,
        }
    }

    fn start(cfg: &WebhookConfig) -> (WebhookHandle, CancellationToken) {
        let shutdown = CancellationToken::new();
        let handle = Webhook::try_start(cfg, shutdown.clone()).unwrap().unwrap();
        (handle, shutdown)
    }

    /// Waits (at most 5 s) until the stats satisfy `done`, and returns them.
    async fn wait_for(
        handle: &WebhookHandle,
        done: impl Fn(&WebhookStats) -> bool,
    ) -> WebhookStats {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let stats = handle.stats();
                if done(&stats) {
                    return stats;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        match waited {
            Ok(stats) => stats,
            Err(_) => panic!("timed out; stats now {:?}", handle.stats()),
        }
    }

    async fn next(received: &mut mpsc::UnboundedReceiver<Received>) -> Received {
        tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .expect("no request reached the server")
            .unwrap()
    }

    #[tokio::test]
    async fn off_when_url_is_empty() {
        let off = Webhook::try_start(&WebhookConfig::default(), CancellationToken::new());
        assert!(off.unwrap().is_none());
        assert!(Webhook::start(&WebhookConfig::default(), CancellationToken::new()).is_none());
    }

    #[tokio::test]
    async fn https_client_builds_with_the_rustls_config() {
        // reqwest takes a preconfigured rustls config by downcast; a version mismatch would
        // make build() fail, and start would return an error.
        let mut c = cfg("https://crm.example.com/hooks/callguard");
        c.secret = "s3cret".into();
        assert!(
            Webhook::try_start(&c, CancellationToken::new())
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn delivers_json_with_headers_and_a_verifiable_signature() {
        let (url, mut received) = server(&[], None).await;
        let mut c = cfg(&url);
        c.secret = "top secret".into();
        let (hook, _shutdown) = start(&c);
        let body = json!({"type": "alert", "alert_id": "c1-a1", "call_id": "c1", "score": 72.5,
                          "reasons": ["threat_legal"], "text": "我要投诉"});
        hook.send("alert", body.clone());
        let got = next(&mut received).await;
        let stats = wait_for(&hook, |s| s.delivered == 1).await;
        assert_eq!(
            stats,
            WebhookStats {
                delivered: 1,
                ..Default::default()
            }
        );

        assert_eq!(got.json(), body);
        assert_eq!(got.header("content-type"), "application/json");
        assert_eq!(got.header(EVENT_HEADER), "alert");
        let id = got.header(DELIVERY_HEADER);
        assert!(id.len() > 17 && id.contains('-'), "{id}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"top secret").unwrap();
        mac.update(&got.body);
        let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
        assert_eq!(got.header(SIGNATURE_HEADER), expected);
        // The signature is over these exact bytes: a different key does not verify.
        let mut other = Hmac::<Sha256>::new_from_slice(b"wrong").unwrap();
        other.update(&got.body);
        assert_ne!(
            got.header(SIGNATURE_HEADER),
            format!("sha256={}", hex(&other.finalize().into_bytes()))
        );

        // A second delivery gets another id; unsigned config sends no signature header.
        hook.send("alert_dismissed", json!({"type": "alert_dismissed"}));
        let second = next(&mut received).await;
        assert_ne!(second.header(DELIVERY_HEADER), id);
        assert_eq!(second.header(EVENT_HEADER), "alert_dismissed");

        let (url, mut received) = server(&[], None).await;
        let (plain, _s) = start(&cfg(&url));
        plain.send("alert", json!({}));
        assert!(
            next(&mut received)
                .await
                .headers
                .get(SIGNATURE_HEADER)
                .is_none()
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_the_same_delivery_id() {
        let (url, mut received) = server(&[503, 503, 200], None).await;
        let mut c = cfg(&url);
        c.secret = "k".into();
        let (hook, _shutdown) = start(&c);
        hook.send(
            "transfer_accepted",
            json!({"type": "transfer_accepted", "alert_id": "a"}),
        );
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!(
            stats,
            WebhookStats {
                delivered: 1,
                failed: 0,
                dropped: 0,
                retried: 2
            }
        );
        let attempts: Vec<Received> = std::iter::from_fn(|| received.try_recv().ok()).collect();
        assert_eq!(attempts.len(), 3);
        for a in &attempts[1..] {
            assert_eq!(
                a.header(DELIVERY_HEADER),
                attempts[0].header(DELIVERY_HEADER)
            );
            assert_eq!(
                a.header(SIGNATURE_HEADER),
                attempts[0].header(SIGNATURE_HEADER)
            );
            assert_eq!(a.body, attempts[0].body);
        }
    }

    #[tokio::test]
    async fn too_many_requests_is_retried_until_retries_run_out() {
        let (url, mut received) = server(&[429, 429, 429], None).await;
        let mut c = cfg(&url);
        c.retries = 2;
        let (hook, _shutdown) = start(&c);
        hook.send("alert", json!({}));
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 2));
        assert_eq!(std::iter::from_fn(|| received.try_recv().ok()).count(), 3);
    }

    #[tokio::test]
    async fn client_error_is_not_retried() {
        let (url, mut received) = server(&[400, 200], None).await;
        let (hook, _shutdown) = start(&cfg(&url));
        hook.send("alert", json!({"type": "alert"}));
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!(
            stats,
            WebhookStats {
                failed: 1,
                ..Default::default()
            }
        );
        assert_eq!(std::iter::from_fn(|| received.try_recv().ok()).count(), 1);
    }

    #[tokio::test]
    async fn silent_server_times_out_is_retried_then_failed() {
        let (url, accepted) = silent_server().await;
        let mut c = cfg(&url);
        c.retries = 2;
        let (hook, _shutdown) = start(&c);
        let began = std::time::Instant::now();
        hook.send("alert", json!({}));
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 2));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "one connection per attempt"
        );
        // Three 200 ms timeouts and 20 + 40 ms of backoff at the least (how much longer a
        // busy machine takes is not this test's business).
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(660), "{took:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_retried_then_failed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut c = cfg(&format!("http://{addr}/hook"));
        c.retries = 1;
        let (hook, _shutdown) = start(&c);
        hook.send("alert", json!({}));
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 1));
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let (url, mut received) = server(&[307], None).await;
        let (hook, _shutdown) = start(&cfg(&url));
        hook.send("alert", json!({}));
        let stats = wait_for(&hook, |s| s.delivered + s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 0));
        assert_eq!(std::iter::from_fn(|| received.try_recv().ok()).count(), 1);
    }

    #[tokio::test]
    async fn full_queue_drops_new_deliveries_and_keeps_order() {
        let gate = Arc::new(Semaphore::new(0));
        let (url, mut received) = server(&[], Some(Arc::clone(&gate))).await;
        let mut c = cfg(&url);
        c.queue = 1;
        c.timeout_ms = 5000;
        let (hook, _shutdown) = start(&c);
        hook.send("alert", json!({"n": 1}));
        // The first is in flight, held by the server; the second fills the queue.
        assert_eq!(next(&mut received).await.json(), json!({"n": 1}));
        hook.send("alert", json!({"n": 2}));
        // `send` is synchronous and the server holds the first delivery until the gate opens
        // below: had a full queue made it wait, the test would never get past these lines.
        hook.send("alert", json!({"n": 3}));
        hook.send("alert", json!({"n": 4}));
        assert_eq!(hook.stats().dropped, 2);

        gate.add_permits(10);
        let stats = wait_for(&hook, |s| s.delivered == 2).await;
        assert_eq!(
            stats,
            WebhookStats {
                delivered: 2,
                dropped: 2,
                ..Default::default()
            }
        );
        assert_eq!(next(&mut received).await.json(), json!({"n": 2}));
        assert!(received.try_recv().is_err());
    }

    #[tokio::test]
    async fn shutdown_flushes_what_is_queued_in_order() {
        let gate = Arc::new(Semaphore::new(0));
        let (url, mut received) = server(&[], Some(Arc::clone(&gate))).await;
        let mut c = cfg(&url);
        c.timeout_ms = 3000;
        let (hook, shutdown) = start(&c);
        for n in 0..4 {
            hook.send("alert", json!({ "n": n }));
        }
        assert_eq!(next(&mut received).await.json(), json!({"n": 0}));
        shutdown.cancel();
        gate.add_permits(10);
        tokio::time::timeout(Duration::from_secs(3), hook.stopped())
            .await
            .expect("the webhook did not stop within its grace period");
        assert_eq!(
            hook.stats(),
            WebhookStats {
                delivered: 4,
                ..Default::default()
            }
        );
        for n in 1..4 {
            assert_eq!(next(&mut received).await.json(), json!({ "n": n }));
        }
        // After it has stopped, a send is dropped and counted, never blocks.
        hook.send("alert", json!({}));
        assert_eq!(hook.stats().dropped, 1);
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let (url, _accepted) = silent_server().await;
        let mut c = cfg(&url);
        c.timeout_ms = 200;
        c.retries = 5;
        let (hook, shutdown) = start(&c);
        for n in 0..5 {
            hook.send("alert", json!({ "n": n }));
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), hook.stopped())
            .await
            .expect("the webhook did not stop after its grace period");
        // The first was attempted and cut off, with none of its five retries (each a 200 ms
        // timeout) made after the grace period; the rest were never tried.
        assert_eq!(
            hook.stats(),
            WebhookStats {
                failed: 1,
                dropped: 4,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn handles_dropped_ends_the_task() {
        let (url, _received) = server(&[], None).await;
        let (hook, _shutdown) = start(&cfg(&url));
        let stopped = hook.shared.stopped.clone();
        drop(hook);
        tokio::time::timeout(Duration::from_secs(2), stopped.cancelled())
            .await
            .expect("the task outlived every handle");
    }

    #[test]
    fn start_outside_a_runtime_is_an_error_not_a_panic() {
        let c = cfg("http://127.0.0.1:9/x");
        let err = Webhook::try_start(&c, CancellationToken::new());
        assert!(matches!(err, Err(WebhookError::NoRuntime)));
        assert!(Webhook::start(&c, CancellationToken::new()).is_none());
    }
}
