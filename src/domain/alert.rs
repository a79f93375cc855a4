//! Risk levels, transfer prompts (alerts) and their lifecycle, QA flags and the end-of-call
//! summary: what the risk engine (`pipeline::risk`) produces and what the hub, the store and the
//! screens pass on. Pure data; the rules that make these are in `pipeline::risk`, the state
//! of a live prompt in `sinks::hub::state`.

use serde::{Deserialize, Serialize};

use super::access::Role;
use super::leg::Leg;
use super::signal::{Quote, SignalKind};

/// How worried to be about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Calm,
    Watch,
    Escalate,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Calm => "calm",
            Level::Watch => "watch",
            Level::Escalate => "escalate",
        }
    }
}

/// The playbook's three kinds of upset customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerType {
    /// 情绪主导型: needs to be heard first; empathise, then solve.
    EmotionLed,
    /// 问题主导型: wants the problem fixed; give a concrete plan with times.
    ProblemLed,
    /// 恶意煽动型: building a public case; stay calm, keep recording, involve legal.
    Instigating,
}

/// One reason for the current risk, summed over the signals of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: SignalKind,
    /// Points this kind contributes now.
    pub points: f32,
    /// How many signals of this kind contribute.
    pub count: u32,
    /// Matched lexicon terms, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
}

/// The raised-voice measurements behind an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceEvidence {
    pub leg: Leg,
    pub start_ms: u64,
    pub end_ms: u64,
    pub db_over_baseline: f32,
    pub cues: Vec<String>,
}

/// What an alert rests on: quotes with their times and legs, and loudness figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub quotes: Vec<Quote>,
    pub raised_voice: Vec<VoiceEvidence>,
}

/// The suggested way to handle the call, in the call's language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub lang: String,
    /// What to say to the customer while the supervisor joins.
    pub opening: String,
    /// The steps for this kind of customer, from the playbook.
    pub steps: Vec<String>,
    /// The playbook's time limits.
    pub deadline: String,
}

/// A transfer prompt: a supervisor should take this call over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub call_id: String,
    /// `<call_id>-a<n>`, unique per call.
    pub alert_id: String,
    pub at_ms: u64,
    pub level: Level,
    pub score: f32,
    pub reasons: Vec<Reason>,
    pub evidence: Evidence,
    pub customer_type: CustomerType,
    pub suggestion: Suggestion,
}

/// A score or level change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskUpdate {
    pub call_id: String,
    pub at_ms: u64,
    pub score: f32,
    pub level: Level,
    /// The level before, when this update is a level change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_level: Option<Level>,
    pub reasons: Vec<Reason>,
}

/// Something for QA review (the agent's forbidden phrases), with a coaching hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaFlag {
    pub call_id: String,
    pub at_ms: u64,
    pub kind: SignalKind,
    pub leg: Leg,
    pub terms: Vec<String>,
    pub quotes: Vec<Quote>,
    /// A hint for the agent, in the call's language.
    pub hint: String,
}

/// The end-of-call roll-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub call_id: String,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub max_score: f32,
    pub max_level: Level,
    pub alerts: Vec<String>,
    /// Every signal kind seen in the call, with its count.
    pub reasons: Vec<ReasonCount>,
    pub qa_flags: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_type: Option<CustomerType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub kind: SignalKind,
    pub count: u32,
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Accepted,
    Dismissed,
}

/// Who acted on an alert, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The token's name.
    pub by: String,
    pub role: Role,
    /// Wall-clock time of the decision, Unix milliseconds.
    pub at_unix_ms: u64,
    /// From the prompt to the decision.
    pub time_to_ack_ms: u64,
    /// The dismissal reason (empty for acceptances).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// An alert's lifecycle as the hub tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    pub call_id: String,
    pub alert_id: String,
    pub state: AlertState,
    /// Re-sent to every supervisor because nobody acted on it in time.
    pub escalated: bool,
    /// Wall-clock time the prompt went out, Unix milliseconds.
    pub fired_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}
