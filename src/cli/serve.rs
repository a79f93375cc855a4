//! `callguard serve`: the daemon (`daemon::run`) on a multi-threaded runtime, with the flags as
//! its runtime options and Ctrl-C or SIGTERM as its shutdown.

use anyhow::{Context, Result};

use super::ServeArgs;

pub(super) fn run(args: ServeArgs) -> Result<()> {
    let mut cfg = args.pipeline.config()?;
    if args.replay_agent.len() > args.replay.len() {
        anyhow::bail!(
            "{} --replay-agent for {} --replay: each agent goes with the recording in the same position",
            args.replay_agent.len(),
            args.replay.len()
        );
    }
    if let Some(name) = args.device {
        cfg.device.name = name;
        cfg.device
            .validate()
            .map_err(crate::config::ConfigError::Invalid)?;
    }
    let opts = crate::daemon::ServeOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        lang: args.pipeline.lang,
        replay: args.replay,
        replay_agents: args.replay_agent,
        loop_replay: args.loop_replay,
        replay_speed: args.speed,
        audiosocket: args.audiosocket,
        audiosocket_leg: args.audiosocket_leg,
        audiosocket_agent: args.audiosocket_agent,
        twilio_auth_token: args.twilio_auth_token.filter(|t| !t.is_empty()),
        public_url: args.public_url,
        role: args.role,
        nats: args.nats,
        node: args.node,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            super::wait_for_signal().await;
            signal.cancel();
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok(addr) = ready_rx.await {
                eprintln!(
                    "callguard serving on http://{addr} (websocket: ws://{addr}/ws?token=...)"
                );
            }
        });
        crate::daemon::run(cfg, opts, shutdown, Some(ready_tx)).await
    })
}
