//! `callguard serve`: wires the layers and owns shutdown. It opens the token file and the store,
//! loads the model and the lexicon, starts the Whisper workers, the store's writer and the
//! webhook, serves the HTTP router (`http`) with the ingest websockets (`ingest::ws`) merged in,
//! runs the AudioSocket listeners (`ingest::tcp`), the sound-card call and the replays, and
//! keeps house: prompts nobody answered are re-sent, the retention sweep runs, and the token
//! file is re-read when it changes. Every call is hosted by `call` (this folder): the pipeline's
//! call task, its way out through `sinks::egress`.
//!
//! Nothing here blocks the async runtime: opening files, loading the model and reading
//! recordings to replay run on blocking threads.
//!
//! Shutdown is a `CancellationToken` the caller passes in (Ctrl-C/SIGTERM in `main`, the test's
//! own token in tests): ingest stops (ingest sockets close with 1001, replays and the sound
//! card stop), each call drains its queued utterances and sends its summary (at most
//! `DRAIN_LIMIT`), then screens get what is queued for them and close with 1001, the webhook
//! flushes, and `run` returns. Every task is tracked.

mod call;
mod housekeeping;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Role;
use crate::cluster::events::{EdgeLink, Publisher, run_hub as run_hub_events};
use crate::cluster::remote::RemoteAsr;
use crate::config::Config;
use crate::domain::leg::Leg;
use crate::http::{AppState, router};
use crate::ingest::device::DeviceSource;
use crate::ingest::replay::Replay;
use crate::ingest::tcp::AudiosocketListeners;
use crate::ingest::ws::{TwilioAuth, WsIngest};
use crate::ingest::{CallHost, IngestCounters};
use crate::pipeline::asr::LanguageSetting;
use crate::pipeline::asr::worker::{AsrPool, Model, Transcriber, WorkerSettings};
use crate::pipeline::call::CallContext;
use crate::sinks::egress::Egress;
use crate::sinks::hub::auth::TokenStore;
use crate::sinks::hub::state::Hub;
use crate::sinks::store::{Store, StoreHandle, StoreWriter};
use crate::sinks::webhook::Webhook;

pub use call::CallServices;

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
    /// Which parts run (`--role`); anything but `all` needs NATS.
    pub role: Role,
    /// The NATS server (`--nats`), overriding `[cluster] nats`.
    pub nats: Option<String>,
    /// This process's name in the cluster (`--node`); default: role, host and pid.
    pub node: Option<String>,
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
            role: Role::All,
            nats: None,
            node: None,
        }
    }
}

/// The longest a shutdown waits for calls to finish their queued utterances.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs blocking startup work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a startup task failed")?
}

/// Runs the daemon until `shutdown` is cancelled. `ready` receives the bound address once the
/// server accepts connections (port 0 in tests).
pub async fn run(
    mut cfg: Config,
    opts: ServeOptions,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    if let Some(url) = &opts.nats {
        cfg.cluster.nats = url.clone();
        cfg.cluster
            .validate()
            .map_err(crate::config::ConfigError::Invalid)?;
    }
    if cfg.cluster.nats.is_empty() && opts.role != Role::All {
        anyhow::bail!(
            "--role {:?} needs a NATS server: --nats URL or [cluster] nats",
            opts.role
        );
    }
    if opts.role == Role::Asr {
        return run_asr(cfg, opts, shutdown).await;
    }
    if opts.role == Role::Hub {
        return run_hub(cfg, opts, shutdown, ready).await;
    }
    let data_dir = opts.data_dir.clone();
    let recordings = data_dir.join(crate::sinks::store::recording::RECORDINGS_DIR);
    let (tokens, store, store_thread) = open_store(&data_dir, Some(recordings.clone())).await?;
    // The sound card first: a device that cannot be opened fails before the model loads.
    let device_cfg = cfg.device.clone();
    let device = blocking(move || Ok(DeviceSource::from_config(&device_cfg)?)).await?;
    let pipeline_cfg = cfg.pipeline();
    // An edge loads no model: its utterances go to the asr nodes.
    let local_whisper = opts.role == Role::All;
    let (local, lexicon) = blocking(move || {
        let pool = if local_whisper {
            let model = Model::load(&pipeline_cfg.asr.model)?;
            let pool = AsrPool::start(model, WorkerSettings::from_config(&pipeline_cfg.asr))?;
            Some(Arc::new(pool))
        } else {
            None
        };
        let lexicon = pipeline_cfg.detect.load_lexicon()?;
        Ok((pool, lexicon))
    })
    .await?;
    // With NATS, calls send their utterances to the cluster's asr nodes (this process is one
    // of them in role `all`); without, straight to the local pool. Both stop after the calls
    // have drained, since draining calls still wait for transcripts.
    let cluster_stop = CancellationToken::new();
    let cluster_tasks = TaskTracker::new();
    let mut joined = None;
    let pool: Arc<dyn Transcriber> = if cfg.cluster.nats.is_empty() {
        local.clone().context("the local Whisper pool")?
    } else {
        let node = opts
            .node
            .clone()
            .unwrap_or_else(|| crate::cluster::default_node_name(opts.role));
        let client = crate::cluster::connect(&cfg.cluster, &node).await?;
        crate::cluster::ensure_streams(&async_nats::jetstream::new(client.clone()), &cfg.cluster)
            .await?;
        if let Some(local) = &local {
            let (client, cluster, local, node, stop) = (
                client.clone(),
                cfg.cluster.clone(),
                Arc::clone(local),
                node.clone(),
                cluster_stop.clone(),
            );
            cluster_tasks.spawn(async move {
                if let Err(e) =
                    crate::cluster::node::run_asr_node(client, cluster, local, node, stop).await
                {
                    tracing::error!(error = %e, "this process's asr node stopped");
                }
            });
        }
        tracing::info!(%node, nats = %cfg.cluster.nats, role = ?opts.role, "joined the cluster");
        joined = Some((client.clone(), node.clone()));
        RemoteAsr::start(
            client,
            &cfg.cluster,
            &node,
            cfg.asr.max_queued_utterances,
            cluster_stop.clone(),
        )
        .await
        .context("subscribing to transcripts")?
    };
    let replays = open_replays(&opts, cfg.audio.stereo_legs).await?;
    let ctx = Arc::new(CallContext {
        lexicon,
        pool: Arc::clone(&pool),
        lang: opts.lang,
        cfg: cfg.pipeline(),
        calls: TaskTracker::new(),
    });
    // Screens and the webhook outlive ingest: they stop once the calls have drained, so the
    // last words, prompts and `call_ended` messages still reach them.
    let screens_stop = CancellationToken::new();
    // A configured webhook that cannot start (TLS setup) stops startup rather than going quiet.
    let webhook = Webhook::try_start(&cfg.webhook, screens_stop.clone())?;
    let hub = Hub::new(tokens, cfg.hub.settings(), webhook);
    let tracker = TaskTracker::new();
    let mut egress = Egress::new(
        &cfg.redact,
        store.clone(),
        Some(Arc::clone(&hub)),
        Some(recordings),
    );
    // In a cluster, everything the calls commit also goes to the hubs, and decisions taken on
    // any hub come back to this process's screens.
    let mut publisher = None;
    if let Some((client, node)) = joined {
        let p = Publisher::start(client.clone(), &node, cluster_stop.clone(), &cluster_tasks);
        if opts.role == Role::All {
            // The hub too: this process's screens and store also get the other edges' calls.
            let (client, cluster, node, hub, store, stop) = (
                client.clone(),
                cfg.cluster.clone(),
                node.clone(),
                Arc::clone(&hub),
                store.clone(),
                cluster_stop.clone(),
            );
            cluster_tasks.spawn(async move {
                if let Err(e) = run_hub_events(client, cluster, node, true, hub, store, stop).await
                {
                    tracing::error!(error = %e, "this process's hub stopped");
                }
            });
        }
        let link = EdgeLink::start(
            client,
            Arc::clone(&p),
            Arc::clone(&hub),
            store.clone(),
            opts.role,
            cluster_stop.clone(),
            &cluster_tasks,
        )
        .await?;
        egress = egress.with_mirror(link);
        publisher = Some(p);
    }
    let egress = Arc::new(egress);
    let host: Arc<dyn CallHost> = Arc::new(CallServices {
        pipeline: Arc::clone(&ctx),
        hub: Arc::clone(&hub),
        egress,
    });
    let ingest_counters = Arc::new(IngestCounters::default());

    let listener = bind(opts.listen, ready).await?;
    let app = router(AppState {
        hub: Arc::clone(&hub),
        store: store.clone(),
        api: crate::http::api::Api::new(data_dir.clone()),
        screens_stop: screens_stop.clone(),
        pool: Some(pool),
        cluster: publisher,
        ingest: Arc::clone(&ingest_counters),
    })
    .merge(crate::ingest::ws::routes(Arc::new(WsIngest {
        host: Arc::clone(&host),
        twilio: TwilioAuth {
            auth_token: opts.twilio_auth_token.clone(),
            public_url: opts.public_url.clone(),
        },
        shutdown: shutdown.clone(),
        counters: ingest_counters,
    })));
    housekeeping::spawn(&hub, &store, &cfg.store, &shutdown, &tracker);
    let server = serve_http(listener, app, &shutdown, &tracker);

    crate::ingest::tcp::listen(
        AudiosocketListeners {
            customer: opts.audiosocket,
            leg: opts.audiosocket_leg,
            agent: opts.audiosocket_agent,
        },
        &host,
        &shutdown,
        &tracker,
    )
    .await?;
    if let Some(source) = device {
        tracker.spawn(crate::ingest::device::run_as_call(
            source,
            Arc::clone(&host),
            shutdown.clone(),
        ));
    }
    crate::ingest::replay::spawn(
        replays,
        &host,
        opts.loop_replay,
        opts.replay_speed,
        &shutdown,
        &tracker,
    );

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
    cluster_stop.cancel();
    cluster_tasks.close();
    cluster_tasks.wait().await;
    tracker.close();
    tracker.wait().await;
    drop((store, host));
    // The writer thread ends once every handle is gone (the router's went with the server).
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    server_result(server).await
}

/// Opens the token file and the store (before anything else that takes time: a second daemon
/// on the same data folder fails here, and calls a crash left open are closed, `recovered`,
/// before new ones start), repairs interrupted recordings when this process records, and
/// starts the store's writer.
async fn open_store(
    data_dir: &std::path::Path,
    recordings: Option<PathBuf>,
) -> Result<(TokenStore, StoreHandle, std::thread::JoinHandle<()>)> {
    let data_dir = data_dir.to_owned();
    let (tokens, store) = blocking(move || {
        let tokens = TokenStore::open(&data_dir)?;
        let store = Store::open(&data_dir)?;
        if let Some(recordings) = &recordings {
            housekeeping::repair_recordings(recordings);
        }
        Ok((tokens, store))
    })
    .await?;
    if store.recovered() > 0 {
        tracing::warn!(
            calls = store.recovered(),
            "calls left open by an earlier run marked recovered"
        );
    }
    let (store, thread) = StoreWriter::start(store)?;
    Ok((tokens, store, thread))
}

/// Listens on `listen`; `ready` gets the bound address (port 0 in tests).
async fn bind(
    listen: SocketAddr,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "serving");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    Ok(listener)
}

/// How the HTTP server ended.
async fn server_result(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<()> {
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("http server"),
        Err(e) => Err(e).context("http server task"),
    }
}

/// Serves `app` until `shutdown`.
fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    })
}

/// The hub role: screens, the API, `/metrics` and the store for every edge's calls, fed from
/// the cluster's event stream (`cluster::events::run_hub`); no ingest and no model. Webhooks
/// are sent by the edges (which hold the calls), not here.
async fn run_hub(
    cfg: Config,
    opts: ServeOptions,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    let data_dir = opts.data_dir.clone();
    let (tokens, store, store_thread) = open_store(&data_dir, None).await?;
    let node = opts
        .node
        .clone()
        .unwrap_or_else(|| crate::cluster::default_node_name(Role::Hub));
    let client = crate::cluster::connect(&cfg.cluster, &node).await?;
    crate::cluster::ensure_streams(&async_nats::jetstream::new(client.clone()), &cfg.cluster)
        .await?;
    // The edges hold the calls and refuse past their own `hub.max_calls`; a hub shows them all.
    let settings = crate::sinks::hub::state::HubSettings {
        max_calls: usize::MAX,
        ..cfg.hub.settings()
    };
    let hub = Hub::new(tokens, settings, None);
    let (cluster_stop, cluster_tasks) = (CancellationToken::new(), TaskTracker::new());
    let publisher = Publisher::start(client.clone(), &node, cluster_stop.clone(), &cluster_tasks);
    cluster_tasks.spawn({
        let (cluster, node, hub, store, stop) = (
            cfg.cluster.clone(),
            node.clone(),
            Arc::clone(&hub),
            store.clone(),
            cluster_stop.clone(),
        );
        async move {
            if let Err(e) = run_hub_events(client, cluster, node, false, hub, store, stop).await {
                tracing::error!(error = %e, "the hub's event stream stopped");
            }
        }
    });
    tracing::info!(%node, nats = %cfg.cluster.nats, "hub joined the cluster");
    let screens_stop = CancellationToken::new();
    let listener = bind(opts.listen, ready).await?;
    let app = router(AppState {
        hub: Arc::clone(&hub),
        store: store.clone(),
        api: crate::http::api::Api::new(data_dir.clone()),
        screens_stop: screens_stop.clone(),
        pool: None,
        cluster: Some(publisher),
        ingest: Arc::new(IngestCounters::default()),
    });
    let tracker = TaskTracker::new();
    housekeeping::spawn(&hub, &store, &cfg.store, &shutdown, &tracker);
    let server = serve_http(listener, app, &shutdown, &tracker);
    shutdown.cancelled().await;
    // What was taken from the stream is committed (and acked) before the screens go.
    cluster_stop.cancel();
    cluster_tasks.close();
    cluster_tasks.wait().await;
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "store not flushed");
    }
    screens_stop.cancel();
    tracker.close();
    tracker.wait().await;
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    server_result(server).await
}

/// The asr role: Whisper workers for the cluster, nothing else (no HTTP, no store). Runs
/// until `shutdown`, then finishes and acks the utterances it holds.
async fn run_asr(cfg: Config, opts: ServeOptions, shutdown: CancellationToken) -> Result<()> {
    let asr = cfg.asr.clone();
    let pool = blocking(move || {
        let model = Model::load(&asr.model)?;
        Ok(Arc::new(AsrPool::start(
            model,
            WorkerSettings::from_config(&asr),
        )?))
    })
    .await?;
    let node = opts
        .node
        .clone()
        .unwrap_or_else(|| crate::cluster::default_node_name(Role::Asr));
    let client = crate::cluster::connect(&cfg.cluster, &node).await?;
    crate::cluster::node::run_asr_node(
        client,
        cfg.cluster.clone(),
        Arc::clone(&pool),
        node,
        shutdown,
    )
    .await?;
    // The pool finishes what it holds as it drops (off the runtime: it joins threads).
    let _ = tokio::task::spawn_blocking(move || drop(pool)).await;
    Ok(())
}

/// Reads the recordings to replay (blocking file work, off the runtime), each named
/// `replay-<i>-<file stem>` and given its agent.
async fn open_replays(opts: &ServeOptions, stereo_legs: [Leg; 2]) -> Result<Vec<Replay>> {
    let mut replays = Vec::with_capacity(opts.replay.len());
    for (i, path) in opts.replay.iter().enumerate() {
        let (id, path) = (replay_id(path, i), path.clone());
        let mut replay = blocking(move || {
            Replay::open(&path, &id, stereo_legs)
                .with_context(|| format!("cannot replay {}", path.display()))
        })
        .await?;
        replay.info.agent = opts.replay_agents.get(i).cloned();
        replays.push(replay);
    }
    Ok(replays)
}

fn replay_id(path: &std::path::Path, i: usize) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".into());
    format!("replay-{i}-{stem}")
}
