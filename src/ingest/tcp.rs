//! Asterisk AudioSocket over TCP: one connection per leg, framed by `ingest::audiosocket`; with
//! an agent listener, two connections with the same UUID are the two legs of one call, the
//! later one placed on the call's clock by the time it joined (its `start_sample`s are moved on
//! by that much, so the recording and the pipeline both see the gap where it was not yet
//! there). AudioSocket carries no credentials: its listeners belong on addresses only the
//! Asterisk servers reach. A malformed frame closes that connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::call::{CallInfo, CallRefused, SourceEvent};
use crate::domain::leg::Leg;
use crate::ingest::audiosocket::AudiosocketSession;
use crate::ingest::{CallHost, HostedCall, IngestError, Session};

/// Where to accept AudioSocket connections.
#[derive(Debug, Clone, Copy)]
pub struct AudiosocketListeners {
    /// The listener for customer (or, with `leg`, any single-leg) connections; none: no listener.
    pub customer: Option<SocketAddr>,
    /// The leg a connection on `customer` carries (one mono leg per connection).
    pub leg: Leg,
    /// A second listener for agent legs: a connection here and one on `customer` with the same
    /// UUID are the two legs of one call.
    pub agent: Option<SocketAddr>,
}

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
/// it, and how far (samples) its audio starts into the call.
type Joined = (
    mpsc::Sender<SourceEvent>,
    Option<tokio::task::JoinHandle<()>>,
    u64,
);

/// The furthest a late second leg is placed into the call, to keep the legs aligned.
const MAX_LEG_OFFSET_S: u64 = 60;

impl PairedCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, PairedCall>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the call with this UUID, or starts it with both legs. Returns the call's input,
    /// its handle when this connection started it, and the offset (samples) of the joining
    /// leg's audio in the call.
    fn join(&self, mut info: CallInfo, host: &dyn CallHost) -> Result<Joined, CallRefused> {
        let mut calls = self.lock();
        if let Some(call) = calls.get_mut(&info.call_id) {
            call.open += 1;
            let late = call
                .started
                .elapsed()
                .as_secs_f64()
                .min(MAX_LEG_OFFSET_S as f64);
            let offset = (late * call.sample_rate as f64) as u64;
            tracing::info!(call_id = %info.call_id, late_ms = (late * 1000.0) as u64, "second AudioSocket leg joined");
            return Ok((call.tx.clone(), None, offset));
        }
        info.legs = vec![Leg::Customer, Leg::Agent];
        let id = info.call_id.clone();
        let sample_rate = info.sample_rate;
        let HostedCall { input: tx, done } = host.host(info)?;
        calls.insert(
            id,
            PairedCall {
                tx: tx.clone(),
                open: 1,
                started: std::time::Instant::now(),
                sample_rate,
            },
        );
        Ok((tx, Some(done), 0))
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
    host: Arc<dyn CallHost>,
    stop: CancellationToken,
) {
    use tokio::io::AsyncReadExt;
    let mut session = AudiosocketSession::new(leg);
    let mut call: Option<(
        String,
        mpsc::Sender<SourceEvent>,
        Option<tokio::task::JoinHandle<()>>,
    )> = None;
    // Where this connection's audio starts in the call (a late second leg).
    let mut offset = 0u64;
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
        let events = match session.on_binary(&buf[..n]) {
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
                        Some(p) => p.join(info, host.as_ref()),
                        None => host.host(info).map(|c| (c.input, Some(c.done), 0)),
                    };
                    // Refused (logged by the host): AudioSocket has no way to say why, so the
                    // connection is closed.
                    let Ok((tx, handle, at)) = joined else {
                        break 'read;
                    };
                    offset = at;
                    call = Some((id, tx, handle));
                }
                (SourceEvent::Started(_), Some(_)) => {}
                (SourceEvent::Ended(reason), Some(_)) => {
                    ended = Some(reason);
                    break 'read;
                }
                (mut event, Some((_, tx, _))) => {
                    if let SourceEvent::Audio(chunk) = &mut event {
                        chunk.start_sample += offset;
                    }
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

/// Binds the AudioSocket listeners asked for (customer/default, and agent for pairing) and
/// accepts connections on them until `stop`; each connection is a tracked task.
pub async fn listen(
    at: AudiosocketListeners,
    host: &Arc<dyn CallHost>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), IngestError> {
    if at.agent.is_some() && (at.customer.is_none() || at.leg != Leg::Customer) {
        return Err(IngestError::Options(
            "--audiosocket-agent pairs agent legs with customer legs: it needs --audiosocket with --audiosocket-leg customer".into(),
        ));
    }
    // With an agent listener, the two listeners' connections pair up by UUID.
    let paired = at.agent.map(|_| Arc::new(PairedCalls::default()));
    for (addr, leg) in [(at.customer, at.leg), (at.agent, Leg::Agent)] {
        let Some(addr) = addr else { continue };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| IngestError::Bind { addr, source })?;
        tracing::info!(%addr, %leg, "AudioSocket listening");
        let (host, stop, conns, paired) = (
            Arc::clone(host),
            stop.clone(),
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
                        let (host, stop) = (Arc::clone(&host), stop.clone());
                        let paired = paired.clone();
                        conns.spawn(audiosocket_conn(stream, peer, leg, paired, host, stop));
                    }
                    Err(e) => tracing::warn!(error = %e, "AudioSocket accept failed"),
                }
            }
        });
    }
    Ok(())
}
