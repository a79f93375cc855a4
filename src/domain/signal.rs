//! Signals: what a detector found (a raised voice, warning words, a repeated grievance), with
//! the leg, the stretch of the call and the evidence. The detectors in `pipeline::detect` make
//! them, the risk engine weighs them, the store and the screens show them. Pure data.

use serde::{Deserialize, Serialize};

use super::leg::Leg;

/// What a signal is about. The names are part of the event vocabulary (`reasons[].kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A speaker clearly louder than their own earlier speech, with a cue that survives
    /// automatic gain control (pitch rise, spectral tilt, speech rate).
    RaisedVoice,
    /// The customer restating the same grievance again and again.
    RepeatedComplaint,
    /// Complaint words: 投诉, "I want to complain", "this is unacceptable".
    Complaint,
    /// Going to the press or TV: 曝光, 要向媒体反映, "call the newspapers".
    ThreatMedia,
    /// Posting online: 发微博, 发到网上, "post it on Twitter", "leave a review everywhere".
    ThreatSocial,
    /// Lawyers and courts: 起诉, 律师, "sue", "my lawyer".
    ThreatLegal,
    /// Regulators and consumer bodies: 消协, 12315, 工商, "consumer protection", "FTC".
    ThreatRegulator,
    /// Leaving: 再也不买, 退订, "cancel my account", "never buy from you again".
    Churn,
    /// Asking for someone senior: 找你们领导, 经理, "let me speak to your manager".
    EscalationRequest,
    /// The agent's forbidden phrases: 这不可能, 你自己看说明, "that's impossible".
    AgentConduct,
}

impl SignalKind {
    pub const ALL: [SignalKind; 10] = [
        SignalKind::RaisedVoice,
        SignalKind::RepeatedComplaint,
        SignalKind::Complaint,
        SignalKind::ThreatMedia,
        SignalKind::ThreatSocial,
        SignalKind::ThreatLegal,
        SignalKind::ThreatRegulator,
        SignalKind::Churn,
        SignalKind::EscalationRequest,
        SignalKind::AgentConduct,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::RaisedVoice => "raised_voice",
            SignalKind::RepeatedComplaint => "repeated_complaint",
            SignalKind::Complaint => "complaint",
            SignalKind::ThreatMedia => "threat_media",
            SignalKind::ThreatSocial => "threat_social",
            SignalKind::ThreatLegal => "threat_legal",
            SignalKind::ThreatRegulator => "threat_regulator",
            SignalKind::Churn => "churn",
            SignalKind::EscalationRequest => "escalation_request",
            SignalKind::AgentConduct => "agent_conduct",
        }
    }

    pub fn parse(s: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Lexicon categories that are about the customer (the rest of the lexicon is the agent's).
    pub fn is_customer_side(self) -> bool {
        !matches!(self, SignalKind::AgentConduct)
    }
}

impl std::fmt::Display for SignalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something said, quoted as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub leg: Leg,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// The acoustic measurements behind a `raised_voice` signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaisedVoiceEvidence {
    /// Median level of the raised stretch over the speaker's baseline, in dB.
    pub db_over_baseline: f32,
    /// Speech time in the raised stretch.
    pub duration_ms: u64,
    /// Median pitch change against the speaker's baseline, in semitones (None: unvoiced).
    pub pitch_rise_semitones: Option<f32>,
    /// Change of high-band over low-band energy against the baseline, in dB (vocal effort
    /// tilts the spectrum towards the highs, and phone gain control does not undo it).
    pub tilt_change_db: Option<f32>,
    /// Speech-rate change against the baseline, as a ratio (1.2 = 20 % faster), if measured.
    pub rate_ratio: Option<f32>,
    /// The cues that held, by name: `loudness`, `pitch`, `tilt`, `rate`.
    pub cues: Vec<String>,
}

/// One detector finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub leg: Leg,
    /// Call-audio time at which the detector knew (end of the words or the raised stretch).
    pub at_ms: u64,
    /// The stretch of call audio the signal is about.
    pub start_ms: u64,
    pub end_ms: u64,
    /// The words that matched, as said ("complain to your manager"): evidence to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    /// The lexicon entries behind them, as written in the lexicon file
    /// (`complain* to .. manager|supervisor`): what to look at when tuning the lexicon.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lexicon_terms: Vec<String>,
    /// What was said: the utterance(s) behind a lexicon or repetition signal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotes: Vec<Quote>,
    /// Acoustic evidence for `raised_voice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised: Option<RaisedVoiceEvidence>,
    /// For `repeated_complaint`: how many times the grievance has come up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl Signal {
    /// A signal with only the common fields set.
    pub fn new(kind: SignalKind, leg: Leg, start_ms: u64, end_ms: u64, at_ms: u64) -> Self {
        Self {
            kind,
            leg,
            at_ms,
            start_ms,
            end_ms,
            terms: Vec::new(),
            lexicon_terms: Vec::new(),
            quotes: Vec::new(),
            raised: None,
            count: None,
        }
    }
}
