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
    /// One party talking over the other mid-utterance (抢话): the leg is the one who cut in.
    /// The agent cutting in is a QA flag; a customer doing it again and again adds to risk.
    Interruption,
    /// Both legs silent for a long stretch while the call is up (静音): a QA flag and a live
    /// hint to the agent.
    DeadAir,
    /// Speaking rate (语速): a customer speaking well faster than at the start of the call (an
    /// anger cue that adds to a raised voice), or an agent speaking too fast (a QA flag).
    SpeakingRate,
}

impl SignalKind {
    pub const ALL: [SignalKind; 13] = [
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
        SignalKind::Interruption,
        SignalKind::DeadAir,
        SignalKind::SpeakingRate,
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
            SignalKind::Interruption => "interruption",
            SignalKind::DeadAir => "dead_air",
            SignalKind::SpeakingRate => "speaking_rate",
        }
    }

    pub fn parse(s: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Lexicon categories that are about the customer (the rest of the lexicon is the agent's).
    pub fn is_customer_side(self) -> bool {
        !matches!(self, SignalKind::AgentConduct)
    }

    /// Kinds found in the words (the lexicon and the repetition detector), as opposed to the
    /// voice and the timing of the call.
    pub fn is_words(self) -> bool {
        !matches!(
            self,
            SignalKind::RaisedVoice
                | SignalKind::Interruption
                | SignalKind::DeadAir
                | SignalKind::SpeakingRate
        )
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

/// The timing behind `interruption`, `dead_air` and `speaking_rate`; each kind fills its own
/// fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimingEvidence {
    /// interruption: the leg that was talked over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<Leg>,
    /// interruption: ms both spoke at once, as far as known when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_ms: Option<u64>,
    /// interruption: this leg's interruptions in the minute up to this one, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// dead_air: ms of silence on every leg when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_ms: Option<u64>,
    /// speaking_rate: syllables per second of the utterance (Chinese characters, English
    /// syllables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syllables_per_s: Option<f32>,
    /// speaking_rate: the speaker's own rate at the start of the call, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_per_s: Option<f32>,
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
    /// Timing evidence for `interruption`, `dead_air` and `speaking_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingEvidence>,
    /// For `complaint`: the customer lodges a complaint ("I want to make a formal
    /// complaint", 我要投诉), rather than only voicing displeasure ("this is ridiculous").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub formal: bool,
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
            timing: None,
            formal: false,
        }
    }
}
