//! One call's detection and risk, wired together: transcripts go through the lexicon, the
//! repetition and the speaking-rate detectors, raised-voice signals come in from the audio
//! side, each leg's speech starting and stopping goes through the turn-taking detector
//! (interruptions, dead air), and everything feeds the risk engine. Pure like its parts (`update`-style methods with call time, no I/O, no
//! clock), so the offline `analyze` and the live daemon drive the same code, and tests can
//! drive it with text alone.
//!
//! It does not look at audio (the energy detector runs per leg, where the samples are) and
//! does not decide what happens to an alert.

use std::sync::Arc;

use crate::domain::event::{Event, SignalEvent, Transcript};
use crate::domain::leg::Leg;
use crate::domain::signal::{Signal, SignalKind};
use crate::pipeline::detect::DetectConfig;
use crate::pipeline::detect::lexicon::{Cues, Lexicon, LexiconDetector};
use crate::pipeline::detect::rate::RateDetector;
use crate::pipeline::detect::repetition::RepetitionDetector;
use crate::pipeline::detect::turns::{TurnDetector, TurnInput};
use crate::pipeline::risk::{RiskConfig, RiskEngine, RiskInput, RiskOutput, UtteranceFacts};

/// The settings a call's assessor is made from.
#[derive(Clone, Copy)]
pub struct AssessorSetup<'a> {
    pub detect: &'a DetectConfig,
    pub risk: &'a RiskConfig,
    /// How long the segmenter keeps an utterance open after its last speech (its hangover):
    /// an open utterance is only known to hold speech up to that long ago.
    pub hold_ms: u64,
}

/// Text-side detectors and the risk engine of one call.
pub struct CallAssessor {
    call_id: String,
    lexicon: Arc<Lexicon>,
    words: LexiconDetector,
    repetition: RepetitionDetector,
    rate: RateDetector,
    turns: TurnDetector,
    risk: RiskEngine,
}

impl CallAssessor {
    /// The detectors and risk engine of a call with these legs.
    pub fn new(
        call_id: &str,
        setup: AssessorSetup<'_>,
        lexicon: Arc<Lexicon>,
        legs: &[Leg],
    ) -> Self {
        Self {
            call_id: call_id.to_owned(),
            words: LexiconDetector::new(Arc::clone(&lexicon)),
            lexicon,
            repetition: RepetitionDetector::new(&setup.detect.repetition),
            rate: RateDetector::new(&setup.detect.speaking_rate),
            turns: TurnDetector::new(&setup.detect.turns, legs, setup.hold_ms),
            risk: RiskEngine::new(call_id, setup.risk),
        }
    }

    /// The call's current risk level (the live daemon puts escalating calls first in the
    /// Whisper queue).
    pub fn level(&self) -> crate::domain::alert::Level {
        self.risk.level()
    }

    /// Swaps in a reloaded lexicon; takes effect from the next transcript.
    pub fn set_lexicon(&mut self, lexicon: Arc<Lexicon>) {
        self.words.set_lexicon(Arc::clone(&lexicon));
        self.lexicon = lexicon;
    }

    /// A final transcript segment, known at call time `now_ms`.
    pub fn on_transcript(&mut self, t: &Transcript, now_ms: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let customer_side = matches!(t.leg, Leg::Customer | Leg::Mixed);
        // One scan of the words for everything but the alert reasons.
        let cues = if customer_side {
            self.lexicon.cues(t.leg, &t.text)
        } else {
            Cues::default()
        };
        let facts = UtteranceFacts {
            leg: t.leg,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            lang: t.lang.clone(),
            positive: cues.positive,
            mentions_recording: cues.recording,
            grievance: cues.grievance,
        };
        self.push_risk(RiskInput::Utterance(facts), now_ms, &mut out);

        let mut signals = self.words.update(t, now_ms);
        signals.extend(self.rate.update(t, now_ms));
        if customer_side {
            let bearing = cues.grievance || signals.iter().any(|s| s.kind == SignalKind::Complaint);
            signals.extend(self.repetition.update(t, bearing, cues.repeat, now_ms));
        }
        if signals.is_empty() {
            return out;
        }
        for s in &signals {
            out.push(Event::Signal(SignalEvent {
                call_id: self.call_id.clone(),
                signal: s.clone(),
            }));
        }
        // Weighed together: one utterance gives one prompt with all its reasons.
        self.push_risk(RiskInput::Signals(signals), now_ms, &mut out);
        out
    }

    /// A signal from elsewhere (the raised-voice detector), known at `now_ms`.
    pub fn on_signal(&mut self, signal: Signal, now_ms: u64) -> Vec<Event> {
        let mut out = Vec::new();
        self.on_signal_into(signal, now_ms, &mut out);
        out
    }

    /// A leg's speech starting or stopping (the segmenter's view), known at `now_ms`.
    pub fn on_activity(&mut self, input: TurnInput, now_ms: u64) -> Vec<Event> {
        let mut out = Vec::new();
        for s in self.turns.update(input, now_ms) {
            self.on_signal_into(s, now_ms, &mut out);
        }
        out
    }

    /// Time passing with nothing new: lets the risk level fall as signals age, and silence
    /// become dead air.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Event> {
        let mut out = self.on_activity(TurnInput::Tick, now_ms);
        self.push_risk(RiskInput::Tick, now_ms, &mut out);
        out
    }

    /// The end of the call: its summary event.
    pub fn finish(&mut self, end_ms: u64) -> Event {
        Event::Summary(self.risk.finish(end_ms))
    }

    fn on_signal_into(&mut self, signal: Signal, now_ms: u64, out: &mut Vec<Event>) {
        out.push(Event::Signal(SignalEvent {
            call_id: self.call_id.clone(),
            signal: signal.clone(),
        }));
        self.push_risk(RiskInput::Signal(signal), now_ms, out);
    }

    fn push_risk(&mut self, input: RiskInput, now_ms: u64, out: &mut Vec<Event>) {
        for o in self.risk.update(input, now_ms) {
            out.push(match o {
                RiskOutput::Risk(r) => Event::Risk(r),
                RiskOutput::Alert(a) => Event::Alert(a),
                RiskOutput::QaFlag(f) => Event::QaFlag(f),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::event::test_line as said;

    fn run(turns: &[(Leg, &str)], lang: &str) -> Vec<Event> {
        let (detect, risk) = (DetectConfig::default(), RiskConfig::default());
        let setup = AssessorSetup {
            detect: &detect,
            risk: &risk,
            hold_ms: 600,
        };
        let mut m = CallAssessor::new(
            "c",
            setup,
            Arc::new(Lexicon::builtin()),
            &[Leg::Customer, Leg::Agent],
        );
        let mut events = Vec::new();
        let mut t = 0;
        for (leg, text) in turns {
            let tr = said(*leg, t, t + 3000, text, lang);
            events.extend(m.on_transcript(&tr, t + 3000));
            t += 4000;
        }
        events.push(m.finish(t));
        events
    }

    fn alerts(events: &[Event]) -> Vec<&crate::domain::alert::Alert> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_media_threat_alerts_in_english_and_chinese() {
        let en = run(
            &[
                (Leg::Agent, "Thank you for calling, how can I help?"),
                (Leg::Customer, "My fridge is broken and nobody came."),
                (
                    Leg::Customer,
                    "I am going to the newspapers with this story.",
                ),
            ],
            "en",
        );
        let a = alerts(&en);
        assert_eq!(a.len(), 1, "{en:?}");
        assert!(
            a[0].reasons
                .iter()
                .any(|r| r.kind == SignalKind::ThreatMedia)
        );
        assert_eq!(a[0].at_ms, 11_000);
        assert!(!a[0].evidence.quotes.is_empty());

        let zh = run(
            &[
                (Leg::Customer, "我的冰箱坏了两个星期。"),
                (Leg::Customer, "你们太过分了，我要去媒体曝光你们！"),
            ],
            "zh",
        );
        let a = alerts(&zh);
        assert_eq!(a.len(), 1, "{zh:?}");
        assert!(
            a[0].reasons
                .iter()
                .any(|r| r.kind == SignalKind::ThreatMedia)
        );
        assert_eq!(a[0].suggestion.lang, "zh");
    }

    #[test]
    fn repeated_grievance_alerts_on_the_third_time() {
        let ev = run(
            &[
                (Leg::Customer, "我的快递一个星期了还没到。"),
                (Leg::Agent, "我帮您查一下物流信息。"),
                (Leg::Customer, "快递到现在还没收到，我等了好几天了。"),
                (Leg::Agent, "系统显示包裹还在转运中心。"),
                (Leg::Customer, "说好的快递怎么还没到？"),
            ],
            "zh",
        );
        let a = alerts(&ev);
        assert_eq!(a.len(), 1, "{ev:?}");
        assert!(
            a[0].reasons
                .iter()
                .any(|r| r.kind == SignalKind::RepeatedComplaint)
        );
        assert_eq!(a[0].at_ms, 19_000);
    }

    #[test]
    fn calm_and_trap_calls_do_not_alert() {
        for (turns, lang) in [
            (
                vec![
                    (
                        Leg::Customer,
                        "The media player app on my tablet does not start.",
                    ),
                    (Leg::Agent, "Please press the power button for ten seconds."),
                    (Leg::Customer, "I am not complaining, I just want to know."),
                ],
                "en",
            ),
            (
                vec![
                    (Leg::Customer, "我不是要投诉，就是想问一下新的电价。"),
                    (Leg::Customer, "明白了，我不会退订的，谢谢。"),
                ],
                "zh",
            ),
        ] {
            let ev = run(&turns, lang);
            assert!(alerts(&ev).is_empty(), "{ev:?}");
        }
    }

    #[test]
    fn agent_conduct_is_a_qa_flag_not_an_alert() {
        let ev = run(
            &[
                (Leg::Customer, "I cannot find how to set the timer."),
                (
                    Leg::Agent,
                    "That is not my problem. Read the manual yourself.",
                ),
            ],
            "en",
        );
        assert!(alerts(&ev).is_empty());
        assert!(ev.iter().any(|e| matches!(e, Event::QaFlag(_))), "{ev:?}");
        let Some(Event::Summary(s)) = ev.last() else {
            panic!("no summary")
        };
        assert_eq!(s.qa_flags, 1);
    }
}
