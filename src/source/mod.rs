//! Live audio sources: how phone systems hand call audio to callguard. One module per
//! protocol, each a pure session state machine that turns the protocol's messages into
//! [`SourceEvent`]s (call started, audio for a leg, DTMF, call ended), so the protocol logic is
//! tested without sockets. The network side (websocket endpoints, the TCP listener) and the
//! per-call pipeline that consumes these events come with `callguard serve`.
//!
//! | module        | protocol |
//! |---------------|----------|
//! | `twilio`      | Twilio Media Streams: JSON text frames, base64 mu-law 8 kHz, inbound/outbound tracks |
//! | `audiofork`   | FreeSWITCH mod_audio_fork and jambonz `listen`: JSON metadata, then binary L16 |
//! | `audiosocket` | Asterisk AudioSocket: type/length framed TCP, slin 8 kHz, one leg per connection |
//! | `device`      | a local sound card (cpal/ALSA): an agent's headset or a line tap as one call |
//! | `replay`      | a recorded call played at real-time pace (demo, tests) |

pub mod audiofork;
pub mod audiosocket;
pub mod device;
pub mod replay;
pub mod twilio;

use serde::{Deserialize, Serialize};

use crate::audio::Leg;

/// Which protocol a call arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Twilio,
    Audiofork,
    Audiosocket,
    Device,
    Replay,
    /// A recording analysed offline and stored by `callguard analyze --store`.
    File,
}

/// What a source knows about a call when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The phone system's id for the call (Twilio CallSid, FreeSWITCH/jambonz call id,
    /// AudioSocket UUID).
    pub call_id: String,
    pub source: SourceKind,
    /// The legs the call's audio will carry.
    pub legs: Vec<Leg>,
    /// The audio's sample rate (Hz), before resampling.
    pub sample_rate: u32,
    /// A language given by the source's metadata (`en`, `zh`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The agent (name or extension) on the call, if the metadata says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Everything else the source sent (custom parameters, raw metadata), kept for the store.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The phone system said the call (or stream) is over.
    Hangup,
    /// The connection closed without saying so.
    Disconnected,
    /// The source reported an error (its code or text).
    SourceError(String),
}

/// One thing a source session produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Started(CallInfo),
    /// Samples for one leg at the call's sample rate, in [-1, 1]. `start_sample` counts this
    /// leg's samples since the call started, so gaps and realignment are explicit.
    Audio {
        leg: Leg,
        start_sample: u64,
        samples: Vec<f32>,
    },
    /// A key the caller pressed, at call time `at_ms`.
    Dtmf {
        digit: char,
        at_ms: u64,
    },
    Ended(EndReason),
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
