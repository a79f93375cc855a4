//! Asterisk AudioSocket over TCP: one connection per leg, framed by `source::audiosocket`; with
//! an agent listener, two connections with the same UUID are the two legs of one call.
//! AudioSocket carries no credentials: its listeners belong on addresses only the Asterisk
//! servers reach. A malformed frame closes that connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::{CallServices, host_call};
use crate::audio::Leg;
use crate::hub::state::CallRefused;
use crate::source::audiosocket::AudiosocketSession;
use crate::source::{CallInfo, SourceEvent};

/// AudioSocket calls whose two legs come as two connections with the same UUID, one on the
/// customer listener and one on the agent listener (`--audiosocket-agent`).
#[derive(Default)]
struct PairedCalls {
    calls: std::sync::Mutex<std::collections::HashMap<String, PairedCall>>,
}

struct PairedCall {
    tx: mpsc::Sender<SourceEvent>,
    /// Connections still feeding the call; the last one to leave ends it.
    open: usize,
    started: std::time::Instant,
    sample_rate: u32,
}

/// A connection's share of a call: its input, the call's handle when this connection started
/// it, and the silence (samples) to put in front of its audio.
type Joined = (
    mpsc::Sender<SourceEvent>,
    Option<tokio::task::JoinHandle<()>>,
    usize,
);

/// The longest gap a late second leg is padded with (silence), to keep the legs aligned.
const MAX_LEG_OFFSET_S: u64 = 60;

impl PairedCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, PairedCall>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the call with this UUID, or starts it with both legs. Returns the call's input,
    /// its handle when this connection started it, and the silence (samples) the joining leg
    /// needs in front to line up with the other.
    fn join(
        &self,
        mut info: CallInfo,
        services: &Arc<CallServices>,
    ) -> Result<Joined, CallRefused> {
        let mut calls = self.lock();
        if let Some(call) = calls.get_mut(&info.call_id) {
            call.open += 1;
            let late = call
                .started
                .elapsed()
                .as_secs_f64()
                .min(MAX_LEG_OFFSET_S as f64);
            let pad = (late * call.sample_rate as f64) as usize;
            tracing::info!(call_id = %info.call_id, late_ms = (late * 1000.0) as u64, "second AudioSocket leg joined");
            return Ok((call.tx.clone(), None, pad));
        }
        info.legs = vec![Leg::Customer, Leg::Agent];
        let id = info.call_id.clone();
        let sample_rate = info.sample_rate;
        let (tx, handle) = host_call(info, services)?;
        calls.insert(
            id,
            PairedCall {
                tx: tx.clone(),
                open: 1,
                started: std::time::Instant::now(),
                sample_rate,
            },
        );
        Ok((tx, Some(handle), 0))
    }

    /// A connection left; true when it was the call's last.
    fn leave(&self, call_id: &str) -> bool {
        let mut calls = self.lock();
        let Some(call) = calls.get_mut(call_id) else {
            return true;
        };
        call.open = call.open.saturating_sub(1);
        if call.open == 0 {
            calls.remove(call_id);
            return true;
        }
        false
    }
}

/// One Asterisk AudioSocket connection: framed bytes in, a hosted call out. Alone, a
/// connection is a one-leg call; with `paired`, connections with the same UUID on the customer
/// and agent listeners are the two legs of one call, which ends when both have gone.
/// AudioSocket has no credentials of its own: keep its listeners on a private address that
/// only the Asterisk servers reach. A malformed frame closes this connection only.
async fn audiosocket_conn(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    leg: Leg,
    paired: Option<Arc<PairedCalls>>,
    services: Arc<CallServices>,
    stop: CancellationToken,
) {
    use tokio::io::AsyncReadExt;
    let mut session = AudiosocketSession::new(leg);
    let mut call: Option<(
        String,
        mpsc::Sender<SourceEvent>,
        Option<tokio::task::JoinHandle<()>>,
    )> = None;
    let mut ended = None;
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
                    let id = info.call_id.clone();
                    let joined = match &paired {
                        Some(p) => p.join(info, &services),
                        None => host_call(info, &services).map(|(tx, h)| (tx, Some(h), 0)),
                    };
                    // Refused (logged by host_call): AudioSocket has no way to say why, so
                    // the connection is closed.
                    let Ok((tx, handle, pad)) = joined else {
                        break 'read;
                    };
                    if pad > 0 {
                        let silence = SourceEvent::Audio {
                            leg,
                            start_sample: 0,
                            samples: vec![0.0; pad],
                        };
                        let _ = tx.send(silence).await;
                    }
                    call = Some((id, tx, handle));
                }
                (SourceEvent::Started(_), Some(_)) => {}
                (SourceEvent::Ended(reason), Some(_)) => {
                    ended = Some(reason);
                    break 'read;
                }
                (event, Some((_, tx, _))) => {
                    if tx.send(event).await.is_err() {
                        break 'read;
                    }
                }
                (_, None) => {}
            }
        }
    }
    let Some((id, tx, handle)) = call else {
        return;
    };
    let last = paired.as_ref().is_none_or(|p| p.leave(&id));
    if last {
        // Only the call's last connection says how it ended.
        let closing = session.on_close();
        for event in ended.map(SourceEvent::Ended).into_iter().chain(closing) {
            let _ = tx.send(event).await;
        }
    }
    drop(tx);
    if let Some(handle) = handle {
        let _ = handle.await;
    }
}

/// Binds the AudioSocket listeners `opts` asks for (customer/default, and agent for pairing)
/// and accepts connections on them until `stop`; each connection is a tracked task.
pub(super) async fn listen(
    opts: &super::ServeOptions,
    services: &Arc<CallServices>,
    stop: &CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let shutdown = stop;
    if opts.audiosocket_agent.is_some()
        && (opts.audiosocket.is_none() || opts.audiosocket_leg != Leg::Customer)
    {
        anyhow::bail!(
            "--audiosocket-agent pairs agent legs with customer legs: it needs --audiosocket with --audiosocket-leg customer"
        );
    }
    // With an agent listener, the two listeners' connections pair up by UUID.
    let paired = opts
        .audiosocket_agent
        .map(|_| Arc::new(PairedCalls::default()));
    let listeners = [
        (opts.audiosocket, opts.audiosocket_leg),
        (opts.audiosocket_agent, Leg::Agent),
    ];
    for (at, leg) in listeners {
        let Some(at) = at else { continue };
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot listen for AudioSocket on {at}"))?;
        tracing::info!(addr = %at, %leg, "AudioSocket listening");
        let (services, stop, conns, paired) = (
            Arc::clone(services),
            shutdown.clone(),
            tracker.clone(),
            paired.clone(),
        );
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let (services, stop) = (Arc::clone(&services), stop.clone());
                        let paired = paired.clone();
                        conns.spawn(audiosocket_conn(stream, peer, leg, paired, services, stop));
                    }
                    Err(e) => tracing::warn!(error = %e, "AudioSocket accept failed"),
                }
            }
        });
    }
    Ok(())
}
