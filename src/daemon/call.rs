//! Hosting one live call: the daemon's side of `ingest::CallHost`. A call is registered with the
//! hub (which may refuse it) before any audio is taken; then one task opens the call's way out
//! (`sinks::egress`: its stored start and its recording), starts the pipeline's call task
//! (`pipeline::call::run_call`), tees the source's audio to the recorder, and takes every event
//! the call produces out through the egress step until the call has drained.
//!
//! Channels, per call: the source's input (`ingest::CALL_INPUT`, awaited: a full one holds the
//! source back), the pipeline's input (the same size, fed by the tee), the pipeline's output
//! (`CALL_OUTPUT`, awaited: the pipeline waits for the store), and the recorder's queue (audio
//! copies dropped when full, counted; see `sinks::recorder`).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::access::{Action, can};
use crate::domain::call::{CallInfo, CallRefused, EndReason, SourceEvent};
use crate::domain::clock::unix_ms;
use crate::ingest::{CALL_INPUT, CallHost, HostedCall};
use crate::pipeline::call::{CallContext, run_call};
use crate::sinks::egress::{CallSink, Egress};
use crate::sinks::hub::state::Hub;

/// Events buffered per call before the call task waits for the egress step.
const CALL_OUTPUT: usize = 1024;

/// What every hosted call is handed: the pipeline, the hub and the way out.
pub struct CallServices {
    pub pipeline: Arc<CallContext>,
    pub hub: Arc<Hub>,
    pub egress: Arc<Egress>,
}

impl CallHost for CallServices {
    fn host(&self, info: CallInfo) -> Result<HostedCall, CallRefused> {
        host_call(info, self)
    }

    fn may_ingest(&self, authorization: Option<&str>, token: Option<&str>) -> bool {
        self.hub
            .authenticate(authorization, token)
            .is_some_and(|p| can(&p, Action::Ingest))
    }
}

/// Starts hosting a live call. Feed the returned input with the call's source events; `done`
/// finishes once the call has drained, its last events are stored and its `call_ended` has
/// gone out. Refused, with the reason, when the daemon is at `hub.max_calls` or the call id
/// is live.
fn host_call(info: CallInfo, s: &CallServices) -> Result<HostedCall, CallRefused> {
    if let Err(e) = s.hub.call_started(&info) {
        tracing::warn!(call_id = %info.call_id, source = ?info.source, error = %e, "call refused");
        return Err(e);
    }
    let started = unix_ms();
    let (input, in_rx) = mpsc::channel::<SourceEvent>(CALL_INPUT);
    let (pipeline, egress) = (Arc::clone(&s.pipeline), Arc::clone(&s.egress));
    let done = s
        .pipeline
        .calls
        .spawn(serve_call(info, started, in_rx, pipeline, egress));
    Ok(HostedCall { input, done })
}

/// One hosted call from its stored start to its stored end.
async fn serve_call(
    info: CallInfo,
    started: u64,
    mut in_rx: mpsc::Receiver<SourceEvent>,
    pipeline: Arc<CallContext>,
    egress: Arc<Egress>,
) {
    let call_id = info.call_id.clone();
    let mut sink = CallSink::open(egress, &info, started).await;
    let (call_tx, call_rx) = mpsc::channel(CALL_INPUT);
    let (out_tx, mut out_rx) = mpsc::channel(CALL_OUTPUT);
    let call = tokio::spawn(run_call(info, call_rx, Arc::clone(&pipeline), out_tx));

    // The tee: the call gets every source event, the recorder a copy of the audio. It ends
    // with the source or with the call, whichever goes first, so that the recording can be
    // finished as soon as the call has drained.
    let tap = sink.audio_tap();
    pipeline.calls.spawn(async move {
        loop {
            let event = tokio::select! {
                e = in_rx.recv() => e,
                _ = call_tx.closed() => None,
            };
            let Some(event) = event else { break };
            if let (Some(tap), SourceEvent::Audio(chunk)) = (&tap, &event) {
                tap.try_send(chunk);
            }
            if call_tx.send(event).await.is_err() {
                break;
            }
        }
    });

    while let Some(event) = out_rx.recv().await {
        sink.emit(event).await;
    }
    let end = match call.await {
        Ok(Ok(outcome)) => {
            tracing::info!(%call_id, ?outcome.end, "call finished");
            outcome.end
        }
        Ok(Err(e)) => {
            tracing::error!(%call_id, error = %e, "call failed");
            EndReason::SourceError(e.to_string())
        }
        Err(e) => {
            tracing::error!(%call_id, error = %e, "call task panicked");
            EndReason::SourceError("the call task failed".into())
        }
    };
    sink.close(end, unix_ms()).await;
}
