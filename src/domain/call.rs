//! A call as its source announces it (`CallInfo`), what a source tells the pipeline
//! (`SourceEvent`: started, audio, DTMF, ended), how a call ended, and why a call was refused.
//! Every ingest protocol produces these; the per-call pipeline, the hub and the store consume
//! them. Pure data.

use serde::{Deserialize, Serialize};

use super::leg::{AudioChunk, Leg};

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
    /// In a cluster: the edge that held the call (named here) stopped answering, so the call's
    /// end was never heard; a hub closes it with its last state.
    LostEdge(String),
}

/// One thing a source session produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Started(CallInfo),
    /// Samples for one leg at the call's own sample rate, in [-1, 1]. `start_sample` counts
    /// this leg's samples since the call started, so gaps and realignment are explicit: a chunk
    /// that starts past where the last one ended follows a gap (audio lost on the way), and
    /// every stage downstream keeps its times on that count.
    Audio(AudioChunk),
    /// A key the caller pressed, at call time `at_ms`.
    Dtmf {
        digit: char,
        at_ms: u64,
    },
    Ended(EndReason),
}

/// Why a new call was not taken on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallRefused {
    #[error("at capacity: {0} calls are being monitored (hub.max_calls)")]
    AtCapacity(usize),
    #[error("call {0} is already being monitored")]
    Duplicate(String),
}
