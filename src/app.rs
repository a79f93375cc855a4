//! `callguard serve`, first version: wires the stages and owns shutdown. It loads the model
//! and the lexicon once, starts the Whisper workers, serves `/ws`, the websocket ingest
//! endpoints and `/healthz`, runs the AudioSocket listener, and plays each replayed recording
//! as a live call. Every call is a `live::run_call` task whose events go to the hub.
//!
//! Shutdown is a `CancellationToken` the caller passes in (Ctrl-C/SIGTERM in `main`, the test's
//! own token in tests): replays stop, each call drains its queued utterances and sends its
//! summary, websockets close with 1001, then `run` returns. Every task is tracked.
//! Not here yet: the sound card, metrics, the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::asr::worker::{AsrPool, Model, WorkerSettings};
use crate::audio::Leg;
use crate::config::{Config, LanguageSetting};
use crate::hub::auth::TokenStore;
use crate::hub::server::{Hub, router};
use crate::live::{LiveContext, run_call};
use crate::monitor::load_lexicon;
use crate::source::audiosocket::AudiosocketSession;
use crate::source::replay::Replay;
use crate::source::{CallInfo, EndReason, SourceEvent};

/// Runtime settings of the daemon (flags, not config).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub lang: Option<LanguageSetting>,
    /// Recordings to play as live calls.
    pub replay: Vec<PathBuf>,
    /// Play them again and again (the demo).
    pub loop_replay: bool,
    /// Replay pace: 1.0 is real time.
    pub replay_speed: f64,
    /// Where to accept Asterisk AudioSocket connections (none: no listener).
    pub audiosocket: Option<SocketAddr>,
    /// The leg an AudioSocket connection carries (one mono leg per connection).
    pub audiosocket_leg: Leg,
}

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
    let model = Model::load(&cfg.asr.model)?;
    let pool = AsrPool::start(model, WorkerSettings::from_config(&cfg))?;
    let ctx = Arc::new(LiveContext {
        lexicon: load_lexicon(&cfg)?,
        pool: Arc::new(pool),
        lang: opts.lang,
        cfg,
    });
    let hub = Hub::new(tokens);
    let tracker = TaskTracker::new();

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "serving");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    let app = router(Arc::clone(&hub), Arc::clone(&ctx), shutdown.clone());
    let server_shutdown = shutdown.clone();
    let server = tracker.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });

    if let Some(at) = opts.audiosocket {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot listen for AudioSocket on {at}"))?;
        tracing::info!(addr = %at, "AudioSocket listening");
        let (ctx, hub, stop, conns) = (
            Arc::clone(&ctx),
            Arc::clone(&hub),
            shutdown.clone(),
            tracker.clone(),
        );
        let leg = opts.audiosocket_leg;
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let (ctx, hub, stop) = (Arc::clone(&ctx), Arc::clone(&hub), stop.clone());
                        conns.spawn(audiosocket_conn(stream, peer, leg, ctx, hub, stop));
                    }
                    Err(e) => tracing::warn!(error = %e, "AudioSocket accept failed"),
                }
            }
        });
    }

    for (i, path) in opts.replay.iter().enumerate() {
        let replay = Replay::open(path, &replay_id(path, i), ctx.cfg.audio.stereo_legs)
            .with_context(|| format!("cannot replay {}", path.display()))?;
        let (ctx, hub, stop) = (Arc::clone(&ctx), Arc::clone(&hub), shutdown.clone());
        let (looping, speed, inner) = (opts.loop_replay, opts.replay_speed, tracker.clone());
        tracker.spawn(async move {
            let mut round = 0u32;
            loop {
                let mut r = replay.clone();
                if round > 0 {
                    r.info.call_id = format!("{}-{round}", replay.info.call_id);
                }
                let call = inner.spawn(one_call(
                    r,
                    Arc::clone(&ctx),
                    Arc::clone(&hub),
                    speed,
                    stop.clone(),
                ));
                let _ = call.await;
                round += 1;
                if !looping || stop.is_cancelled() {
                    break;
                }
            }
        });
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining calls");
    tracker.close();
    tracker.wait().await;
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

/// Starts hosting a live call: the call task (`live::run_call`) and the forwarding of its
/// events to the hub. Feed the returned sender with the call's source events; the handle
/// finishes once the call has drained and its `call_ended` has gone out.
pub fn host_call(
    info: CallInfo,
    ctx: Arc<LiveContext>,
    hub: Arc<Hub>,
) -> (mpsc::Sender<SourceEvent>, tokio::task::JoinHandle<()>) {
    let call_id = info.call_id.clone();
    let (in_tx, in_rx) = mpsc::channel(CALL_INPUT);
    let (out_tx, mut out_rx) = mpsc::channel(CALL_OUTPUT);
    hub.call_started(&info);
    let call = tokio::spawn(run_call(info, in_rx, ctx, out_tx));
    let handle = tokio::spawn(async move {
        while let Some(event) = out_rx.recv().await {
            hub.event(&event);
        }
        match call.await {
            Ok(Ok(outcome)) => tracing::info!(call_id, ?outcome.end, "call finished"),
            Ok(Err(e)) => tracing::error!(call_id, error = %e, "call failed"),
            Err(e) => tracing::error!(call_id, error = %e, "call task panicked"),
        }
        hub.call_ended(&call_id);
    });
    (in_tx, handle)
}

/// One Asterisk AudioSocket connection: framed bytes in, a hosted call (one mono leg) out.
/// AudioSocket has no credentials of its own: keep its listener on a private address that only
/// the Asterisk servers reach. A malformed frame closes this connection only.
async fn audiosocket_conn(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    leg: Leg,
    ctx: Arc<LiveContext>,
    hub: Arc<Hub>,
    stop: CancellationToken,
) {
    use tokio::io::AsyncReadExt;
    let mut session = AudiosocketSession::new(leg);
    let mut call: Option<(mpsc::Sender<SourceEvent>, tokio::task::JoinHandle<()>)> = None;
    let mut buf = vec![0u8; 8192];
    'read: loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let events = match session.on_bytes(&buf[..n]) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "AudioSocket connection refused");
                break;
            }
        };
        for event in events {
            match (event, &call) {
                (SourceEvent::Started(info), None) => {
                    call = Some(host_call(info, Arc::clone(&ctx), Arc::clone(&hub)));
                }
                (SourceEvent::Started(_), Some(_)) => {}
                (event, Some((tx, _))) => {
                    let ended = matches!(event, SourceEvent::Ended(_));
                    if tx.send(event).await.is_err() || ended {
                        break 'read;
                    }
                }
                (_, None) => {}
            }
        }
    }
    if let Some((tx, handle)) = call {
        for event in session.on_close() {
            let _ = tx.send(event).await;
        }
        drop(tx);
        let _ = handle.await;
    }
}

/// One replayed call: the player feeds the hosted call until it ends or shutdown.
async fn one_call(
    replay: Replay,
    ctx: Arc<LiveContext>,
    hub: Arc<Hub>,
    speed: f64,
    stop: CancellationToken,
) {
    let (in_tx, handle) = host_call(replay.info.clone(), ctx, hub);
    tokio::select! {
        _ = replay.play(in_tx.clone(), speed) => {}
        _ = stop.cancelled() => {
            let _ = in_tx.send(SourceEvent::Ended(EndReason::Disconnected)).await;
        }
    }
    drop(in_tx);
    let _ = handle.await;
}
