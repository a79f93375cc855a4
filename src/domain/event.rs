//! The project's central vocabulary: one serde enum of everything the pipeline tells the
//! outside world. `analyze` prints these as JSON lines; the live daemon streams the same values
//! over websockets and writes them to the store, so a field added here is added everywhere at
//! once.
//!
//! Every event carries the call it belongs to and a call-relative time in milliseconds
//! (`at_ms()`), so that consumers can order events without a clock.

use serde::{Deserialize, Serialize};

use crate::domain::alert::{Alert, QaFlag, RiskUpdate, Summary};
use crate::domain::leg::Leg;
use crate::domain::signal::Signal;

/// One thing the pipeline learned about a call. Serialised with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// What someone said: one Whisper segment of one leg.
    Transcript(Transcript),
    /// A detector finding: raised voice, lexicon words, a repeated complaint.
    Signal(SignalEvent),
    /// The call's risk score or level changed.
    Risk(RiskUpdate),
    /// Transfer prompt: a supervisor should take the call over.
    Alert(Alert),
    /// Something for QA review (the agent's forbidden phrases), with a coaching hint.
    QaFlag(QaFlag),
    /// The end-of-call roll-up.
    Summary(Summary),
}

/// A detector's signal, tagged with its call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalEvent {
    pub call_id: String,
    #[serde(flatten)]
    pub signal: Signal,
}

/// A transcribed stretch of one leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub call_id: String,
    pub leg: Leg,
    /// Call-relative start, in milliseconds of call audio.
    pub start_ms: u64,
    /// Call-relative end, in milliseconds of call audio.
    pub end_ms: u64,
    /// When the words were known: their end (the live daemon adds transcription delay).
    pub at_ms: u64,
    pub text: String,
    /// Whisper's language code for the text (`en`, `zh`, ...).
    pub lang: String,
    /// `false` for a partial: the words so far of an utterance still being spoken, replaced
    /// by the leg's next partial and superseded by its final lines. Detection and the store
    /// use final lines only.
    #[serde(rename = "final", default = "yes")]
    pub is_final: bool,
}

fn yes() -> bool {
    true
}

impl Event {
    /// The call-audio time this event refers to, for ordering.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Transcript(t) => t.at_ms,
            Event::Signal(s) => s.signal.at_ms,
            Event::Risk(r) => r.at_ms,
            Event::Alert(a) => a.at_ms,
            Event::QaFlag(f) => f.at_ms,
            Event::Summary(s) => s.at_ms,
        }
    }

    pub fn call_id(&self) -> &str {
        match self {
            Event::Transcript(t) => &t.call_id,
            Event::Signal(s) => &s.call_id,
            Event::Risk(r) => &r.call_id,
            Event::Alert(a) => &a.call_id,
            Event::QaFlag(f) => &f.call_id,
            Event::Summary(s) => &s.call_id,
        }
    }

    /// Order among events at the same moment: words, then what was found in them, then what
    /// that means for the call.
    fn rank(&self) -> u8 {
        match self {
            Event::Transcript(_) => 0,
            Event::Signal(_) => 1,
            Event::QaFlag(_) => 2,
            Event::Risk(_) => 3,
            Event::Alert(_) => 4,
            Event::Summary(_) => 5,
        }
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serialising plain strings and integers cannot fail; fall back to an error object
        // rather than panicking if a future variant makes it possible.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"))
    }
}

/// Orders events by call time (`at_ms`), then by kind; the sort is stable, so events of one
/// kind at one moment keep the order they were produced in.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by_key(|e| (e.at_ms(), e.rank()));
}

/// A final transcript line said on `leg` from `start` to `end` ms of call "c": for the
/// detectors' tests.
#[cfg(test)]
pub(crate) fn test_line(leg: Leg, start: u64, end: u64, text: &str, lang: &str) -> Transcript {
    Transcript {
        call_id: "c".into(),
        leg,
        start_ms: start,
        end_ms: end,
        at_ms: end,
        text: text.into(),
        lang: lang.into(),
        is_final: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signal::SignalKind;

    fn transcript(leg: Leg, start: u64, end: u64) -> Event {
        Event::Transcript(Transcript {
            call_id: "c1".into(),
            leg,
            start_ms: start,
            end_ms: end,
            at_ms: end,
            text: "I want a refund".into(),
            lang: "en".into(),
            is_final: true,
        })
    }

    #[test]
    fn transcript_serialises_with_the_documented_fields() {
        let e = transcript(Leg::Customer, 1200, 3400);
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "transcript", "call_id": "c1", "leg": "customer",
                "start_ms": 1200, "end_ms": 3400, "at_ms": 3400,
                "text": "I want a refund", "lang": "en", "final": true
            })
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn signal_events_are_flat_objects_with_type_and_kind() {
        let mut s = Signal::new(SignalKind::ThreatMedia, Leg::Customer, 1000, 4000, 4000);
        s.terms = vec!["go to the press".into()];
        let e = Event::Signal(SignalEvent {
            call_id: "c1".into(),
            signal: s,
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(v["type"], "signal");
        assert_eq!(v["kind"], "threat_media");
        assert_eq!(v["at_ms"], 4000);
        assert_eq!(v["terms"][0], "go to the press");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn events_sort_by_call_time_then_kind() {
        let sig = Event::Signal(SignalEvent {
            call_id: "c1".into(),
            signal: Signal::new(SignalKind::Complaint, Leg::Customer, 0, 900, 900),
        });
        let mut v = vec![
            sig.clone(),
            transcript(Leg::Agent, 0, 500),
            transcript(Leg::Customer, 100, 900),
        ];
        sort_events(&mut v);
        let order: Vec<(u64, u8)> = v.iter().map(|e| (e.at_ms(), e.rank())).collect();
        assert_eq!(order, vec![(500, 0), (900, 0), (900, 1)]);
    }
}
