//! The project's central vocabulary: one serde enum of everything the pipeline tells the
//! outside world. `analyze` prints these as JSON lines; the live daemon will stream the same
//! values over websockets and write them to the store, so a field added here is added
//! everywhere at once.
//!
//! Every event carries the call it belongs to and a call-relative time in milliseconds
//! (`at_ms()`), so that consumers can order events without a clock.

use serde::{Deserialize, Serialize};

use crate::audio::Leg;

/// One thing the pipeline learned about a call. Serialised with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// What someone said: one Whisper segment of one leg.
    Transcript(Transcript),
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
    pub text: String,
    /// Whisper's language code for the text (`en`, `zh`, ...).
    pub lang: String,
}

impl Event {
    /// The call-audio time this event refers to, for ordering.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Transcript(t) => t.start_ms,
        }
    }

    pub fn call_id(&self) -> &str {
        match self {
            Event::Transcript(t) => &t.call_id,
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

/// Orders events by call time; ties keep legs in a stable order (customer, agent, mixed).
pub fn sort_events(events: &mut [Event]) {
    events.sort_by_key(|e| match e {
        Event::Transcript(t) => (t.start_ms, t.leg, t.end_ms),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_serialises_with_the_documented_fields() {
        let e = Event::Transcript(Transcript {
            call_id: "c1".into(),
            leg: Leg::Customer,
            start_ms: 1200,
            end_ms: 3400,
            text: "I want a refund".into(),
            lang: "en".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "transcript", "call_id": "c1", "leg": "customer",
                "start_ms": 1200, "end_ms": 3400, "text": "I want a refund", "lang": "en"
            })
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn events_sort_by_call_time() {
        let t = |leg, start| {
            Event::Transcript(Transcript {
                call_id: "c".into(),
                leg,
                start_ms: start,
                end_ms: start + 10,
                text: String::new(),
                lang: "en".into(),
            })
        };
        let mut v = vec![
            t(Leg::Agent, 500),
            t(Leg::Customer, 900),
            t(Leg::Customer, 500),
        ];
        sort_events(&mut v);
        let order: Vec<_> = v
            .iter()
            .map(|e| match e {
                Event::Transcript(t) => (t.leg, t.start_ms),
            })
            .collect();
        assert_eq!(
            order,
            vec![
                (Leg::Customer, 500),
                (Leg::Agent, 500),
                (Leg::Customer, 900)
            ]
        );
    }
}
