//! The `/ws` protocol's own messages: what clients may send (`ClientCommand`) and the hub's
//! replies and notices (`HubMessage`). Call events themselves are `event::Event`, serialised
//! unchanged, so `analyze` and the live stream share one vocabulary. `docs/protocol.md`
//! documents every message with an example; keep it in step with these types.
//!
//! Pure data: parsing, no I/O and no state.

use serde::{Deserialize, Serialize};

use crate::domain::access::Role;
use crate::domain::alert::AlertStatus;
use crate::domain::alert::{Alert, Level};
use crate::domain::call::CallInfo;
use crate::domain::event::Transcript;

/// The protocol version, sent in the first message (`snapshot`). Version 2 added client
/// commands, `alert_updated` and partial transcripts.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest client message the hub reads; commands are tiny.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// A message from a client. `id` is optional and echoed in the reply (`ack`, `pong`, `error`)
/// so that a screen can match replies to requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientCommand {
    /// Watch more calls: `"all"` or a list of call ids. A new client watches all it may see.
    Subscribe {
        #[serde(default)]
        id: Option<String>,
        calls: CallSelection,
    },
    /// Stop watching calls: `"all"` or a list of call ids.
    Unsubscribe {
        #[serde(default)]
        id: Option<String>,
        calls: CallSelection,
    },
    /// The supervisor takes the call over.
    AcceptTransfer {
        #[serde(default)]
        id: Option<String>,
        alert_id: String,
    },
    /// The prompt needs no transfer, with a reason for QA.
    DismissAlert {
        #[serde(default)]
        id: Option<String>,
        alert_id: String,
        #[serde(default)]
        reason: String,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
}

impl ClientCommand {
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientCommand::Subscribe { id, .. }
            | ClientCommand::Unsubscribe { id, .. }
            | ClientCommand::AcceptTransfer { id, .. }
            | ClientCommand::DismissAlert { id, .. }
            | ClientCommand::Ping { id } => id.as_deref(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ClientCommand::Subscribe { .. } => "subscribe",
            ClientCommand::Unsubscribe { .. } => "unsubscribe",
            ClientCommand::AcceptTransfer { .. } => "accept_transfer",
            ClientCommand::DismissAlert { .. } => "dismiss_alert",
            ClientCommand::Ping { .. } => "ping",
        }
    }

    /// Parses one text frame; the error is what the client is told.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_COMMAND_BYTES {
            return Err(format!("message longer than {MAX_COMMAND_BYTES} bytes"));
        }
        let cmd: ClientCommand = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let ClientCommand::Subscribe { calls, .. } | ClientCommand::Unsubscribe { calls, .. } =
            &cmd
        {
            calls.check()?;
        }
        Ok(cmd)
    }
}

/// Which calls a `subscribe`/`unsubscribe` is about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CallSelection {
    /// Must be `"all"`.
    Word(String),
    List(Vec<String>),
}

impl CallSelection {
    fn check(&self) -> Result<(), String> {
        match self {
            CallSelection::Word(w) if w == "all" => Ok(()),
            CallSelection::Word(w) => Err(format!(
                "`calls` must be \"all\" or a list of call ids, not \"{w}\""
            )),
            CallSelection::List(_) => Ok(()),
        }
    }
}

/// One active call as a new client first sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallView {
    pub call: CallInfo,
    pub started_unix_ms: u64,
    pub level: Level,
    pub score: f32,
    /// Every transfer prompt of the call, with its state; the full prompts are in `alerts`.
    pub alert_status: Vec<AlertStatus>,
    pub alerts: Vec<Alert>,
    /// The last final transcript lines, oldest first.
    pub last_lines: Vec<Transcript>,
    /// In a cluster: the edge holding the call stopped answering (named here); the call is
    /// over as far as anyone can tell, and this is its last known state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_edge: Option<String>,
}

/// The hub's own messages (call events are sent as `Event`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMessage<'a> {
    Snapshot {
        version: u32,
        /// Who the token belongs to, so a screen can say "signed in as".
        you: You<'a>,
        calls: Vec<&'a CallView>,
    },
    CallStarted {
        call_id: &'a str,
        call: &'a CallInfo,
    },
    CallEnded {
        call_id: &'a str,
    },
    /// In a cluster: the edge holding the call stopped answering; the call stays on screen with
    /// its last state, marked lost, until the hub forgets it.
    CallLost {
        call_id: &'a str,
        edge: &'a str,
    },
    /// In a cluster: the edge of a call marked lost was only cut off and is back with the
    /// call still going (a network partition healed); the call is live again.
    CallResumed {
        call_id: &'a str,
    },
    /// An alert changed: accepted, dismissed, or re-sent louder (`escalated`, with the full
    /// `alert` again).
    AlertUpdated {
        #[serde(flatten)]
        status: &'a AlertStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        alert: Option<&'a Alert>,
        /// Seconds since the prompt fired (for "unanswered for 60 s").
        open_for_s: u64,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        command: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        code: ErrorCode,
        message: &'a str,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct You<'a> {
    pub name: &'a str,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a str>,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `type`, a missing or unknown field.
    BadRequest,
    /// The token's role may not do this.
    Forbidden,
    /// No such alert among the active calls this token may see.
    UnknownAlert,
    /// Someone already accepted or dismissed it (the reply's message says who).
    AlreadyHandled,
}

/// Serialises a message; these types cannot fail to serialise, but never panic if one could.
pub fn to_json<T: Serialize>(v: &T) -> std::sync::Arc<str> {
    serde_json::to_string(v)
        .unwrap_or_else(|e| {
            format!("{{\"type\":\"error\",\"code\":\"internal\",\"message\":\"{e}\"}}")
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::{AlertState, Decision};

    #[test]
    fn commands_parse_with_and_without_ids() {
        assert_eq!(
            ClientCommand::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientCommand::Ping { id: None }
        );
        assert_eq!(
            ClientCommand::parse(r#"{"type":"accept_transfer","id":"7","alert_id":"c1-a1"}"#)
                .unwrap(),
            ClientCommand::AcceptTransfer {
                id: Some("7".into()),
                alert_id: "c1-a1".into()
            }
        );
        let d = ClientCommand::parse(
            r#"{"type":"dismiss_alert","alert_id":"c1-a1","reason":"customer calmed down"}"#,
        )
        .unwrap();
        assert_eq!(d.name(), "dismiss_alert");
        assert_eq!(
            ClientCommand::parse(r#"{"type":"subscribe","calls":["a","b"]}"#).unwrap(),
            ClientCommand::Subscribe {
                id: None,
                calls: CallSelection::List(vec!["a".into(), "b".into()])
            }
        );
        assert!(ClientCommand::parse(r#"{"type":"unsubscribe","calls":"all"}"#).is_ok());
    }

    #[test]
    fn bad_commands_are_refused_with_a_reason() {
        for bad in [
            "not json",
            r#"{"type":"launch_missiles"}"#,
            r#"{"type":"accept_transfer"}"#,
            r#"{"type":"ping","extra":1}"#,
            r#"{"type":"subscribe","calls":"some"}"#,
            r#"{"type":"subscribe","calls":42}"#,
        ] {
            let e = ClientCommand::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(5000));
        assert!(ClientCommand::parse(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn alert_updated_is_flat_with_its_status() {
        let status = AlertStatus {
            call_id: "c1".into(),
            alert_id: "c1-a1".into(),
            state: AlertState::Accepted,
            escalated: false,
            fired_unix_ms: 1_000,
            decision: Some(Decision {
                by: "alice".into(),
                role: Role::Supervisor,
                at_unix_ms: 5_000,
                time_to_ack_ms: 4_000,
                reason: String::new(),
            }),
        };
        let json = to_json(&HubMessage::AlertUpdated {
            status: &status,
            alert: None,
            open_for_s: 4,
        });
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "alert_updated");
        assert_eq!(v["state"], "accepted");
        assert_eq!(v["decision"]["by"], "alice");
        assert_eq!(v["decision"]["role"], "supervisor");
        assert!(v.get("alert").is_none());
        assert!(v["decision"].get("reason").is_none());
    }
}
