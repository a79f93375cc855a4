//! Hosting one live call: the call task (`live::run_call`) and the forwarding of its events to
//! the hub, in that order of trust: a call is registered with the hub (which may refuse it)
//! before any audio is taken.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{CALL_INPUT, CALL_OUTPUT};
use crate::hub::server::Hub;
use crate::hub::state::CallRefused;
use crate::live::{LiveContext, run_call};
use crate::source::{CallInfo, SourceEvent};

/// Starts hosting a live call: the call task (`live::run_call`) and the forwarding of its
/// events to the hub. Feed the returned sender with the call's source events; the handle
/// finishes once the call has drained and its `call_ended` has gone out.
/// Refused, with the reason, when the daemon is at `hub.max_calls` or the call id is live.
pub fn host_call(
    info: CallInfo,
    ctx: Arc<LiveContext>,
    hub: Arc<Hub>,
) -> Result<(mpsc::Sender<SourceEvent>, tokio::task::JoinHandle<()>), CallRefused> {
    if let Err(e) = hub.call_started(&info) {
        tracing::warn!(call_id = %info.call_id, source = ?info.source, error = %e, "call refused");
        return Err(e);
    }
    let call_id = info.call_id.clone();
    let (in_tx, in_rx) = mpsc::channel(CALL_INPUT);
    let (out_tx, mut out_rx) = mpsc::channel(CALL_OUTPUT);
    let calls = ctx.calls.clone();
    let call = tokio::spawn(run_call(info, in_rx, ctx, out_tx));
    let handle = calls.spawn(async move {
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
    Ok((in_tx, handle))
}
