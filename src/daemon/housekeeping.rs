//! The daemon's housekeeping, beside the calls: transfer prompts nobody answered are re-sent,
//! escalated; the retention sweep deletes old transcripts and recordings; the token file is
//! re-read when another process changed it; recordings a crash left with a stale header are
//! repaired at startup. File work runs on blocking threads, never on the async runtime.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::clock::unix_ms;
use crate::sinks::hub::state::Hub;
use crate::sinks::store::recording::repair;
use crate::sinks::store::{StoreConfig, StoreHandle};

/// How often the token file is checked for changes: a token revoked from the command line
/// stops working within this long.
pub const TOKEN_RELOAD: Duration = Duration::from_secs(1);

/// Starts the housekeeping tasks; they stop with `stop`.
pub fn spawn(
    hub: &Arc<Hub>,
    store: &StoreHandle,
    cfg: &StoreConfig,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(resend_prompts(Arc::clone(hub), store.clone(), stop.clone()));
    tracker.spawn(sweep(store.clone(), cfg.clone(), stop.clone()));
    tracker.spawn(reload_tokens(Arc::clone(hub), stop.clone()));
}

/// Re-sends unanswered transfer prompts, escalated (the hub decides which), and stores that
/// they were.
async fn resend_prompts(hub: Arc<Hub>, store: StoreHandle, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {
                for status in hub.tick(std::time::Instant::now()) {
                    if let Err(e) = store.alert_decided(status).await {
                        tracing::error!(error = %e, "escalation not stored");
                    }
                }
            }
        }
    }
}

/// Re-reads the token file when it changed, every [`TOKEN_RELOAD`].
async fn reload_tokens(hub: Arc<Hub>, stop: CancellationToken) {
    let mut every = tokio::time::interval(TOKEN_RELOAD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let hub = Arc::clone(&hub);
        match tokio::task::spawn_blocking(move || hub.reload_tokens()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "token store not reloaded"),
            Err(e) => tracing::warn!(error = %e, "token reload failed"),
        }
    }
}

/// Makes recordings a crash left with a stale header playable again (idempotent: a file whose
/// header is right is left alone). Blocking: called from a blocking thread at startup.
pub fn repair_recordings(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        match repair(&path) {
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
async fn sweep(store: StoreHandle, cfg: StoreConfig, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(cfg.sweep_interval_s));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let report = match store
            .sweep(
                unix_ms(),
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
            match tokio::fs::remove_file(&rec.path).await {
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
