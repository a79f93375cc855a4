//! Ingest: how phone systems hand call audio to callguard. One module per source; the protocol
//! sessions are pure state machines behind one [`Session`] trait that turn a connection's frames
//! into `domain::call::SourceEvent`s (call started, audio for a leg, DTMF, call ended), so the
//! protocol logic is tested without sockets. The socket glue drives any session the same way:
//! `ws` for the websocket protocols, `tcp` for AudioSocket. Each call a source starts is handed
//! to a [`CallHost`] (the daemon), which runs its pipeline and its way out; ingest never sees
//! the pipeline, the hub or the store behind it.
//!
//! | module        | source |
//! |---------------|--------|
//! | `twilio`      | Twilio Media Streams: JSON text frames, base64 mu-law 8 kHz, inbound/outbound tracks |
//! | `audiofork`   | FreeSWITCH mod_audio_fork and jambonz `listen`: JSON metadata, then binary L16 |
//! | `audiosocket` | Asterisk AudioSocket: type/length framed TCP, slin 8 kHz, one leg per connection |
//! | `device`      | a local sound card (cpal/ALSA): an agent's headset or a line tap as one call |
//! | `replay`      | a recorded call played at real-time pace (demo, tests) |
//! | `ws`          | the websocket endpoints `/ingest/twilio` and `/ingest/audiofork` |
//! | `tcp`         | the AudioSocket listeners, pairing two connections into one two-leg call |

pub mod audiofork;
pub mod audiosocket;
pub mod device;
pub mod replay;
pub mod tcp;
pub mod twilio;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::domain::call::{CallInfo, CallRefused, SourceEvent};

/// One connection's protocol state machine: frames in, source events out.
pub trait Session: Send {
    /// A text frame (websocket protocols).
    fn on_text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError>;
    /// A binary frame, or for a byte stream (TCP) whatever bytes arrived.
    fn on_binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError>;
    /// The connection closed: whatever ends the call, if the protocol did not say so itself.
    fn on_close(&mut self) -> Vec<SourceEvent>;
    /// An ingest token the protocol carries in-band (Twilio's `customParameters`).
    fn token(&self) -> Option<&str> {
        None
    }
}

/// Source events buffered per call before the source waits: a full channel holds the
/// connection's reader back, which is TCP backpressure to the phone system.
pub const CALL_INPUT: usize = 256;

/// A call being hosted: feed `input` with its source events (`Started` is already known);
/// `done` finishes once the call has drained and its last events are out.
pub struct HostedCall {
    pub input: mpsc::Sender<SourceEvent>,
    pub done: tokio::task::JoinHandle<()>,
}

/// What ingest needs from the daemon: a hosted call for each call a source starts, and a check
/// of the credentials a phone system presents.
pub trait CallHost: Send + Sync + 'static {
    /// Starts hosting a call, or says why not (the daemon is full, or the call id is live).
    fn host(&self, info: CallInfo) -> Result<HostedCall, CallRefused>;
    /// Whether a request may send call audio: by its `Authorization` header, or a token from
    /// its URL or from the protocol itself.
    fn may_ingest(&self, authorization: Option<&str>, token: Option<&str>) -> bool;
}

/// Ingest's counters for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Connections refused for credentials.
    pub refused: AtomicU64,
    /// Connections closed for malformed frames.
    pub errors: AtomicU64,
}

impl IngestCounters {
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why an ingest listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen for AudioSocket on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Options(String),
}

/// A message the session cannot accept. The connection that sent it is closed; other calls
/// are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("malformed {protocol} message: {what}")]
    Malformed {
        protocol: &'static str,
        what: String,
    },
    #[error("{protocol} protocol error: {what}")]
    Protocol {
        protocol: &'static str,
        what: String,
    },
    #[error("unsupported {protocol} audio: {what}")]
    Unsupported {
        protocol: &'static str,
        what: String,
    },
}

impl SourceError {
    pub fn malformed(protocol: &'static str, what: impl Into<String>) -> Self {
        SourceError::Malformed {
            protocol,
            what: what.into(),
        }
    }

    pub fn protocol(protocol: &'static str, what: impl Into<String>) -> Self {
        SourceError::Protocol {
            protocol,
            what: what.into(),
        }
    }
}
