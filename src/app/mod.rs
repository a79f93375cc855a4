//! `callguard serve`: wires the stages and owns shutdown. It loads the model and the lexicon
//! once, starts the Whisper workers and the webhook, serves `/ws`, the websocket ingest
//! endpoints, `/healthz` and `/metrics`, runs the AudioSocket listeners (pairing two legs of a
//! call by UUID), the sound-card call and the replays, and re-sends unanswered transfer prompts.
//! Every call is a `live::run_call` task whose events go to the hub.
//!
//! Shutdown is a `CancellationToken` the caller passes in (Ctrl-C/SIGTERM in `main`, the test's
//! own token in tests): ingest stops (ingest sockets close with 1001, replays and the sound
//! card stop), each call drains its queued utterances and sends its summary (at most
//! `DRAIN_LIMIT`), then screens get what is queued for them and close with 1001, the webhook
//! flushes, and `run` returns. Every task is tracked.
//! Every call is stored (`store`), recorded and redacted on its way out (`call`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::asr::worker::{AsrPool, Model, WorkerSettings};
use crate::audio::Leg;
use crate::config::{Config, LanguageSetting};
use crate::hub::auth::TokenStore;
use crate::hub::server::{AppState, Hub, TwilioAuth, router};
use crate::hub::webhook::Webhook;
use crate::live::LiveContext;
use crate::monitor::load_lexicon;
use crate::redact::Redactor;
use crate::source::replay::Replay;
use crate::source::{EndReason, SourceEvent};
use crate::store::db::Store;
use crate::store::writer::{StoreHandle, StoreWriter};

mod audiosocket;
mod call;

pub use call::{CallServices, host_call};

/// Runtime settings of the daemon (flags, not config).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub lang: Option<LanguageSetting>,
    /// Recordings to play as live calls.
    pub replay: Vec<PathBuf>,
    /// The agents of the replayed calls, by position (`replay_agents[i]` for `replay[i]`).
    pub replay_agents: Vec<String>,
    /// Play them again and again (the demo).
    pub loop_replay: bool,
    /// Replay pace: 1.0 is real time.
    pub replay_speed: f64,
    /// Where to accept Asterisk AudioSocket connections (none: no listener).
    pub audiosocket: Option<SocketAddr>,
    /// The leg an AudioSocket connection carries (one mono leg per connection).
    pub audiosocket_leg: Leg,
    /// A second AudioSocket listener for agent legs: a connection here and one on
    /// `audiosocket` with the same UUID are the two legs of one call.
    pub audiosocket_agent: Option<SocketAddr>,
    /// Twilio's account auth token: when set, `/ingest/twilio` accepts streams whose
    /// `X-Twilio-Signature` checks out (ingest tokens still work).
    pub twilio_auth_token: Option<String>,
    /// The public base URL Twilio connects to (`wss://callguard.example.com`), when a proxy
    /// in front rewrites the Host header; the signature covers the URL Twilio used.
    pub public_url: Option<String>,
}

impl Default for ServeOptions {
    /// The documented flag defaults: 127.0.0.1:8686, `./data`, no replays, real time.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            data_dir: PathBuf::from("data"),
            lang: None,
            replay: Vec::new(),
            replay_agents: Vec::new(),
            loop_replay: false,
            replay_speed: 1.0,
            audiosocket: None,
            audiosocket_leg: Leg::Customer,
            audiosocket_agent: None,
            twilio_auth_token: None,
            public_url: None,
        }
    }
}

/// The longest a shutdown waits for calls to finish their queued utterances.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Source events buffered per call before the source waits (backpressure).
const CALL_INPUT: usize = 256;
/// Events buffered per call before the call task waits for the hub.
const CALL_OUTPUT: usize = 1024;

/// Runs the daemon until `shutdown` is cancelled. `ready` receives the bound address once the
/// server accepts connections (port 0 in tests).
pub async fn run(
    cfg: Config,
    opts: ServeOptions,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    let tokens = TokenStore::open(&opts.data_dir)?;
    // The store before anything else that takes time: a second daemon on the same data folder
    // fails here, and calls a crash left open are closed (`recovered`) before new ones start.
    let store = Store::open(&opts.data_dir)?;
    if store.recovered() > 0 {
        tracing::warn!(
            calls = store.recovered(),
            "calls left open by an earlier run marked recovered"
        );
    }
    let recordings = opts.data_dir.join("recordings");
    repair_recordings(&recordings);
    let (store, store_thread) = StoreWriter::start(store)?;
    // The sound card first: a device that cannot be opened fails before the model loads.
    let device = crate::source::device::DeviceSource::from_config(&cfg.device)?;
    let model = Model::load(&cfg.asr.model)?;
    let pool = AsrPool::start(model, WorkerSettings::from_config(&cfg))?;
    let ctx = Arc::new(LiveContext {
        lexicon: load_lexicon(&cfg)?,
        pool: Arc::new(pool),
        lang: opts.lang,
        cfg,
        calls: TaskTracker::new(),
    });
    // Screens and the webhook outlive ingest: they stop once the calls have drained, so the
    // last words, prompts and `call_ended` messages still reach them.
    let screens_stop = CancellationToken::new();
    // A configured webhook that cannot start (TLS setup) stops startup rather than going quiet.
    let webhook = Webhook::try_start(&ctx.cfg.webhook, screens_stop.clone())?;
    let hub = Hub::new(tokens, ctx.cfg.hub.settings(), webhook);
    let tracker = TaskTracker::new();
    let services = Arc::new(CallServices {
        live: Arc::clone(&ctx),
        hub: Arc::clone(&hub),
        store: store.clone(),
        redactor: Redactor::new(&ctx.cfg.redact),
        recordings,
    });

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "serving");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    let app = router(AppState {
        hub: Arc::clone(&hub),
        live: Arc::clone(&ctx),
        shutdown: shutdown.clone(),
        screens_stop: screens_stop.clone(),
        twilio: Arc::new(TwilioAuth {
            auth_token: opts.twilio_auth_token.clone(),
            public_url: opts.public_url.clone(),
        }),
        calls: Arc::clone(&services),
        api: crate::hub::api::Api::new(opts.data_dir.clone()),
    });
    // Re-sends unanswered transfer prompts; stops with the daemon.
    let (timer_hub, timer_store, timer_stop) = (Arc::clone(&hub), store.clone(), shutdown.clone());
    tracker.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = timer_stop.cancelled() => break,
                _ = every.tick() => {
                    for status in timer_hub.tick(std::time::Instant::now()) {
                        if let Err(e) = timer_store.alert_decided(status).await {
                            tracing::error!(error = %e, "escalation not stored");
                        }
                    }
                }
            }
        }
    });
    tracker.spawn(sweep(
        store.clone(),
        ctx.cfg.store.clone(),
        shutdown.clone(),
    ));
    let server_shutdown = shutdown.clone();
    let server = tracker.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });

    audiosocket::listen(&opts, &services, &shutdown, &tracker).await?;

    if let Some(source) = device {
        tracker.spawn(device_call(source, Arc::clone(&services), shutdown.clone()));
    }

    for (i, path) in opts.replay.iter().enumerate() {
        let mut replay = Replay::open(path, &replay_id(path, i), ctx.cfg.audio.stereo_legs)
            .with_context(|| format!("cannot replay {}", path.display()))?;
        replay.info.agent = opts.replay_agents.get(i).cloned();
        let (services, stop) = (Arc::clone(&services), shutdown.clone());
        let (looping, speed, inner) = (opts.loop_replay, opts.replay_speed, tracker.clone());
        tracker.spawn(async move {
            let mut round = 0u32;
            loop {
                let mut r = replay.clone();
                if round > 0 {
                    r.info.call_id = format!("{}-{round}", replay.info.call_id);
                }
                let call = inner.spawn(one_call(r, Arc::clone(&services), speed, stop.clone()));
                let _ = call.await;
                round += 1;
                if !looping || stop.is_cancelled() {
                    break;
                }
            }
        });
    }

    shutdown.cancelled().await;
    tracing::info!(calls = hub.active_calls(), "shutting down: draining calls");
    ctx.calls.close();
    if tokio::time::timeout(DRAIN_LIMIT, ctx.calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            calls = hub.active_calls(),
            "calls still draining after {} s: closing anyway",
            DRAIN_LIMIT.as_secs()
        );
    }
    // Everything the calls sent is committed before the screens and the process go.
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "store not flushed");
    }
    screens_stop.cancel();
    tracker.close();
    tracker.wait().await;
    drop((store, services));
    // The writer thread ends once every handle is gone (the router's went with the server).
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("http server"),
        Err(e) => Err(e).context("http server task"),
    }
}

fn replay_id(path: &std::path::Path, i: usize) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".into());
    format!("replay-{i}-{stem}")
}

/// Makes recordings a crash left with a stale header playable again (idempotent: a file whose
/// header is right is left alone).
fn repair_recordings(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        match crate::store::recording::repair(&path) {
            Ok(r) if r.changed => {
                tracing::warn!(path = %path.display(), duration_ms = r.duration_ms, "recording repaired after a crash")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "recording not repaired"),
        }
    }
}

/// The retention sweep, every `store.sweep_interval_s`: old transcripts go, and old recordings
/// are deleted from disk, then marked deleted.
async fn sweep(store: StoreHandle, cfg: crate::config::StoreConfig, stop: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(cfg.sweep_interval_s));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let report = match store
            .sweep(
                crate::clock::unix_ms(),
                cfg.transcript_retention_days,
                cfg.audio_retention_days,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed");
                continue;
            }
        };
        for rec in report.expired_recordings {
            match std::fs::remove_file(&rec.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %rec.path.display(), error = %e, "expired recording not deleted");
                    continue;
                }
            }
            if let Err(e) = store.mark_audio_deleted(rec.id).await {
                tracing::error!(error = %e, "deleted recording not marked");
            }
        }
        if report.transcripts_deleted > 0 {
            tracing::info!(
                calls = report.transcripts_deleted,
                "retention: old transcripts deleted"
            );
        }
    }
}

/// The sound-card call (`[device]`): the opened device's audio as one hosted call from startup
/// until shutdown, or until the device fails or goes away (the call then ends with the error,
/// logged, and the daemon goes on without it).
async fn device_call(
    source: crate::source::device::DeviceSource,
    services: Arc<CallServices>,
    stop: CancellationToken,
) {
    let Ok((in_tx, handle)) = host_call(source.info().clone(), &services) else {
        return;
    };
    source.run(in_tx, stop).await;
    let _ = handle.await;
}

/// One replayed call: the player feeds the hosted call until it ends or shutdown.
async fn one_call(
    replay: Replay,
    services: Arc<CallServices>,
    speed: f64,
    stop: CancellationToken,
) {
    let Ok((in_tx, handle)) = host_call(replay.info.clone(), &services) else {
        return;
    };
    tokio::select! {
        _ = replay.play(in_tx.clone(), speed) => {}
        _ = stop.cancelled() => {
            let _ = in_tx.send(SourceEvent::Ended(EndReason::Disconnected)).await;
        }
    }
    drop(in_tx);
    let _ = handle.await;
}
