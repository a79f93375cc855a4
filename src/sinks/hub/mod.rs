//! The supervisor and agent side of the live daemon, without its sockets: access tokens
//! (`auth`), the `/ws` protocol's messages (`protocol`), and the live state and fan-out to
//! screens (`state`), with the `[hub]` settings. The websocket itself is `http::ws`; who may do
//! what is `domain::access`.

pub mod auth;
pub mod protocol;
pub mod state;

use serde::{Deserialize, Serialize};

/// The supervisor/agent websocket hub (`/ws`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Seconds a transfer prompt may stay unanswered before it is re-sent, escalated, to
    /// every supervisor (the playbook wants a senior person on the call within minutes).
    pub alert_resend_s: u64,
    /// Messages a screen may have waiting before partial transcripts are dropped for it and,
    /// once only final messages are left, it is disconnected (close code 1008).
    pub client_queue: usize,
    /// Final transcript lines per call shown to a screen that connects mid-call.
    pub snapshot_lines: usize,
    /// Calls monitored at once (1..100000). A call past it is refused (its stream closed with
    /// a reason, counted on /metrics), so that memory stays bounded however many arrive;
    /// size it to the Whisper workers' capacity.
    pub max_calls: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            alert_resend_s: 60,
            client_queue: 1024,
            snapshot_lines: 20,
            max_calls: 100,
        }
    }
}

impl HubConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: &str| Err(m.to_owned());
        if !(1..=86_400).contains(&self.alert_resend_s) {
            return bad("hub.alert_resend_s must be between 1 and 86400");
        }
        if !(16..=1_000_000).contains(&self.client_queue) {
            return bad("hub.client_queue must be between 16 and 1000000");
        }
        if self.snapshot_lines > 1000 {
            return bad("hub.snapshot_lines is at most 1000");
        }
        if !(1..=100_000).contains(&self.max_calls) {
            return bad("hub.max_calls must be between 1 and 100000");
        }
        Ok(())
    }

    /// The hub's runtime settings.
    pub fn settings(&self) -> state::HubSettings {
        state::HubSettings {
            client_queue: self.client_queue,
            alert_resend: std::time::Duration::from_secs(self.alert_resend_s),
            snapshot_lines: self.snapshot_lines,
            max_calls: self.max_calls,
        }
    }
}
