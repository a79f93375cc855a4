//! Turn-taking: who talks over whom (`interruption`, 抢话) and stretches where nobody speaks
//! (`dead_air`, 静音), from when each leg's speech starts and stops.
//!
//! A pure state machine like the other detectors: `update(&mut self, input, now_ms)` takes a
//! leg's speech opening or closing (the segmenter's utterances, known a little after the
//! fact) or plain time passing, and returns the signals found. It never sees audio or words,
//! and it does not judge: the risk engine decides that an agent's interruption is a QA flag
//! and a customer's adds to risk.
//!
//! Rules:
//! - an **interruption** is a leg starting a turn while the other leg has been speaking for
//!   at least `interruption_lead_ms`, with both still speaking `interruption_overlap_ms`
//!   later; a leg that stops before that was a backchannel ("mm-hm", 嗯) or the other yielded
//!   the floor, and neither counts. Speech resuming within `turn_gap_ms` of the same leg's
//!   last words (a breath, a long utterance cut in two) is not a new turn;
//! - **dead air** is every leg silent for `dead_air_ms` once someone has spoken, reported once
//!   per silent stretch when it reaches the limit (live: while it is still silent).
//!
//! An open utterance is only known to hold speech up to `hold_ms` (the segmenter's hangover)
//! before now, since the segmenter keeps an utterance open that long after the last speech.

use serde::{Deserialize, Serialize};

use crate::domain::leg::Leg;
use crate::domain::signal::{Signal, SignalKind, TimingEvidence};

/// Talk-over and silence settings (`[detect.turns]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// ms both legs must speak at once for a turn started over the other to be an
    /// interruption (shorter is a backchannel or a turn handed over).
    pub interruption_overlap_ms: u64,
    /// ms the interrupted leg must have been speaking when the other cut in (two parties
    /// starting together is not an interruption).
    pub interruption_lead_ms: u64,
    /// ms of silence on the same leg that make its next speech a new turn.
    pub turn_gap_ms: u64,
    /// ms of silence on every leg that are dead air (0 = not reported).
    pub dead_air_ms: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            interruption_overlap_ms: 800,
            interruption_lead_ms: 1000,
            turn_gap_ms: 300,
            dead_air_ms: 10_000,
        }
    }
}

impl TurnConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(200..=10_000).contains(&self.interruption_overlap_ms) {
            return Err("detect.turns.interruption_overlap_ms must be within 200..10000".into());
        }
        if self.interruption_lead_ms > 30_000 || self.turn_gap_ms > 5000 {
            return Err(
                "detect.turns.interruption_lead_ms must be at most 30000 and turn_gap_ms at most 5000"
                    .into(),
            );
        }
        if self.dead_air_ms != 0 && !(2000..=600_000).contains(&self.dead_air_ms) {
            return Err("detect.turns.dead_air_ms must be 0 (off) or within 2000..600000".into());
        }
        Ok(())
    }
}

/// What the detector is told, each at the call time it became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnInput {
    /// `leg` started speaking at `start_ms` (the utterance is still open).
    Opened { leg: Leg, start_ms: u64 },
    /// `leg`'s utterance ended: speech from `start_ms` to `end_ms`.
    Closed {
        leg: Leg,
        start_ms: u64,
        end_ms: u64,
    },
    /// Time passing with nothing new.
    Tick,
}

/// How long one minute is, for interruptions per minute.
const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Default)]
struct LegTurns {
    /// Start of the open utterance, if the leg is speaking.
    open: Option<u64>,
    /// Start of the current turn (an open utterance may continue an earlier one).
    turn_start: u64,
    /// Closed utterances still of interest, (start, end), oldest first.
    spans: Vec<(u64, u64)>,
    /// End of the leg's last closed utterance.
    last_end: Option<u64>,
    /// When this leg's interruptions happened (their start), for the rate per minute.
    interruptions: Vec<u64>,
}

impl LegTurns {
    /// Whether the leg is known to have spoken throughout `from..to`, and `Some(false)` when
    /// it is known not to have: `None` while it cannot be told yet.
    /// Speech resuming within `gap` ms of an utterance's end is the same turn (a breath).
    fn covers(&self, from: u64, to: u64, known_until: u64, gap: u64) -> Option<bool> {
        if let Some(&(_, end)) = self
            .spans
            .iter()
            .rev()
            .find(|&&(start, end)| start <= from && end >= from)
        {
            // A closed utterance holding `from`; speech that carried on after a short breath
            // is the same turn.
            if end >= to {
                return Some(true);
            }
            return match self.open {
                Some(open) if open <= end + gap && known_until >= to => Some(true),
                Some(open) if open <= end + gap => None,
                _ => Some(false),
            };
        }
        match self.open {
            Some(open) if open <= from => {
                if known_until >= to {
                    Some(true)
                } else {
                    None
                }
            }
            _ => Some(false),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    by: Leg,
    over: Leg,
    at: u64,
}

/// The turn-taking detector of one call.
pub struct TurnDetector {
    cfg: TurnConfig,
    hold_ms: u64,
    /// The leg a dead-air signal is put on: the agent's, whose silence it is to fill.
    air_leg: Leg,
    legs: Vec<(Leg, LegTurns)>,
    pending: Vec<Candidate>,
    /// Start of the silent stretch already reported as dead air.
    reported_silence: Option<u64>,
}

impl TurnDetector {
    /// `legs`: the call's legs; `hold_ms`: how long an open utterance may already have been
    /// silent (the segmenter's hangover).
    pub fn new(cfg: &TurnConfig, legs: &[Leg], hold_ms: u64) -> Self {
        let air_leg = if legs.contains(&Leg::Agent) {
            Leg::Agent
        } else {
            legs.first().copied().unwrap_or(Leg::Mixed)
        };
        Self {
            cfg: cfg.clone(),
            hold_ms,
            air_leg,
            legs: legs.iter().map(|&l| (l, LegTurns::default())).collect(),
            pending: Vec::new(),
            reported_silence: None,
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> &mut LegTurns {
        let i = match self.legs.iter().position(|(l, _)| *l == leg) {
            Some(i) => i,
            None => {
                self.legs.push((leg, LegTurns::default()));
                self.legs.len() - 1
            }
        };
        &mut self.legs[i].1
    }

    fn leg(&self, leg: Leg) -> Option<&LegTurns> {
        self.legs.iter().find(|(l, _)| *l == leg).map(|(_, t)| t)
    }

    /// Takes one input known at call time `now_ms`; returns the signals it completes.
    pub fn update(&mut self, input: TurnInput, now_ms: u64) -> Vec<Signal> {
        let mut out = Vec::new();
        match input {
            TurnInput::Opened { leg, start_ms } => self.opened(leg, start_ms),
            TurnInput::Closed {
                leg,
                start_ms,
                end_ms,
            } => {
                let gap = self.cfg.turn_gap_ms;
                let t = self.leg_mut(leg);
                match t.open {
                    // Closed without an opening seen: take its start as the turn's.
                    None if t.last_end.is_none_or(|e| start_ms > e + gap) => {
                        t.turn_start = start_ms;
                    }
                    // A later utterance is open already (an utterance cut at its maximum
                    // length goes on at once): it stays open.
                    Some(open) if open > start_ms => {}
                    _ => t.open = None,
                }
                t.spans.push((start_ms, end_ms.max(start_ms)));
                t.last_end = Some(t.last_end.map_or(end_ms, |e| e.max(end_ms)));
            }
            TurnInput::Tick => {}
        }
        self.resolve(now_ms, &mut out);
        self.dead_air(now_ms, &mut out);
        // Forget what no test can need any more.
        let keep_from = now_ms.saturating_sub(MINUTE_MS);
        for (_, t) in &mut self.legs {
            t.spans.retain(|&(_, end)| end >= keep_from);
            t.interruptions.retain(|&at| at + MINUTE_MS >= now_ms);
        }
        out
    }

    fn opened(&mut self, leg: Leg, start_ms: u64) {
        let gap = self.cfg.turn_gap_ms;
        let lead = self.cfg.interruption_lead_ms;
        let t = self.leg_mut(leg);
        // Still open (a cut utterance going on) or back within a breath: the same turn.
        let new_turn = t.open.is_none() && t.last_end.is_none_or(|e| start_ms > e + gap);
        t.open = Some(start_ms);
        if !new_turn {
            return;
        }
        t.turn_start = start_ms;
        // Who was mid-turn when this leg came in?
        let others: Vec<Leg> = self
            .legs
            .iter()
            .filter(|(l, o)| {
                *l != leg
                    && o.turn_start + lead <= start_ms
                    && o.open.is_some_and(|s| s <= start_ms)
            })
            .map(|(l, _)| *l)
            .collect();
        for over in others {
            self.pending.push(Candidate {
                by: leg,
                over,
                at: start_ms,
            });
        }
    }

    /// Settles pending talk-overs that can now be told either way.
    fn resolve(&mut self, now: u64, out: &mut Vec<Signal>) {
        let known_until = now.saturating_sub(self.hold_ms);
        let overlap = self.cfg.interruption_overlap_ms;
        let gap = self.cfg.turn_gap_ms;
        let mut still = Vec::new();
        for c in std::mem::take(&mut self.pending) {
            let to = c.at + overlap;
            let by = self
                .leg(c.by)
                .and_then(|t| t.covers(c.at, to, known_until, gap));
            let over = self
                .leg(c.over)
                .and_then(|t| t.covers(c.at, to, known_until, gap));
            match (by, over) {
                (Some(true), Some(true)) => {
                    let overlap_ms = self.overlap_so_far(c, known_until);
                    let t = self.leg_mut(c.by);
                    t.interruptions.push(c.at);
                    let per_minute = t
                        .interruptions
                        .iter()
                        .filter(|&&at| at + MINUTE_MS > c.at && at <= c.at)
                        .count() as u32;
                    let mut s = Signal::new(SignalKind::Interruption, c.by, c.at, to, now);
                    s.timing = Some(TimingEvidence {
                        over: Some(c.over),
                        overlap_ms: Some(overlap_ms.max(overlap)),
                        per_minute: Some(per_minute),
                        ..TimingEvidence::default()
                    });
                    out.push(s);
                }
                (Some(false), _) | (_, Some(false)) => {}
                _ => still.push(c),
            }
        }
        self.pending = still;
    }

    /// How long both legs of a talk-over are known to have spoken together.
    fn overlap_so_far(&self, c: Candidate, known_until: u64) -> u64 {
        let end_of = |leg: Leg| {
            self.leg(leg).map_or(c.at, |t| {
                if t.open.is_some() {
                    known_until
                } else {
                    t.last_end.unwrap_or(c.at)
                }
            })
        };
        end_of(c.by).min(end_of(c.over)).saturating_sub(c.at)
    }

    fn dead_air(&mut self, now: u64, out: &mut Vec<Signal>) {
        if self.cfg.dead_air_ms == 0 || self.legs.iter().any(|(_, t)| t.open.is_some()) {
            return;
        }
        // Silence since the last words on any leg; nothing before the first words counts
        // (a call can open on a ringing line or an announcement).
        let Some(since) = self.legs.iter().filter_map(|(_, t)| t.last_end).max() else {
            return;
        };
        let silent = now.saturating_sub(since);
        if silent < self.cfg.dead_air_ms || self.reported_silence == Some(since) {
            return;
        }
        self.reported_silence = Some(since);
        let mut s = Signal::new(SignalKind::DeadAir, self.air_leg, since, now, now);
        s.timing = Some(TimingEvidence {
            silence_ms: Some(silent),
            ..TimingEvidence::default()
        });
        out.push(s);
    }
}

/// The inputs a whole call's utterance spans give, each at the moment a live call would
/// know it: an opening once `min_speech_ms` of it was heard, a close `hold_ms` after its last
/// speech. Sorted by that moment (the offline path replays them).
pub fn turn_inputs(
    spans: &[(Leg, u64, u64)],
    min_speech_ms: u64,
    hold_ms: u64,
) -> Vec<(u64, TurnInput)> {
    let mut out = Vec::with_capacity(spans.len() * 2);
    for &(leg, start_ms, end_ms) in spans {
        out.push((
            (start_ms + min_speech_ms).min(end_ms),
            TurnInput::Opened { leg, start_ms },
        ));
        out.push((
            end_ms + hold_ms,
            TurnInput::Closed {
                leg,
                start_ms,
                end_ms,
            },
        ));
    }
    out.sort_by_key(|&(at, input)| (at, matches!(input, TurnInput::Opened { .. })));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: u64 = 600;

    /// Runs whole utterances, (leg, start, end), through a detector as a live call would see
    /// them, with a tick every 100 ms up to `until`.
    fn run(spans: &[(Leg, u64, u64)], until: u64, cfg: &TurnConfig) -> Vec<Signal> {
        let mut d = TurnDetector::new(cfg, &[Leg::Customer, Leg::Agent], HOLD);
        let inputs = turn_inputs(spans, 100, HOLD);
        let mut out = Vec::new();
        let mut it = inputs.into_iter().peekable();
        let mut now = 0;
        while now <= until {
            while let Some(&(at, input)) = it.peek() {
                if at > now {
                    break;
                }
                out.extend(d.update(input, at));
                it.next();
            }
            out.extend(d.update(TurnInput::Tick, now));
            now += 100;
        }
        out
    }

    fn kinds(s: &[Signal]) -> Vec<(SignalKind, Leg, u64)> {
        s.iter().map(|s| (s.kind, s.leg, s.start_ms)).collect()
    }

    #[test]
    fn cutting_in_mid_sentence_and_holding_on_is_an_interruption_by_the_one_who_cut_in() {
        let cfg = TurnConfig::default();
        // The agent speaks 0-5 s; the customer comes in at 3 s and talks to 8 s.
        let s = run(
            &[(Leg::Agent, 0, 5000), (Leg::Customer, 3000, 8000)],
            12_000,
            &cfg,
        );
        assert_eq!(
            kinds(&s),
            vec![(SignalKind::Interruption, Leg::Customer, 3000)]
        );
        let t = s[0].timing.as_ref().unwrap();
        assert_eq!(t.over, Some(Leg::Agent));
        assert_eq!(t.per_minute, Some(1));
        assert!(t.overlap_ms.unwrap() >= 800, "{t:?}");
        // Known once both have spoken 0.8 s together and the segmenter could tell.
        assert!(
            s[0].at_ms >= 3800 + HOLD && s[0].at_ms <= 3800 + HOLD + 200,
            "{s:?}"
        );
    }

    #[test]
    fn a_backchannel_a_handover_or_a_joint_start_is_not_an_interruption() {
        let cfg = TurnConfig::default();
        for spans in [
            // "mm-hm" under the agent's sentence.
            vec![(Leg::Agent, 0, 6000), (Leg::Customer, 2000, 2400)],
            // The agent stops 0.3 s after the customer starts: a turn handed over.
            vec![(Leg::Agent, 0, 3300), (Leg::Customer, 3000, 7000)],
            // Both start together.
            vec![(Leg::Agent, 0, 4000), (Leg::Customer, 300, 4000)],
            // Strictly one after the other.
            vec![(Leg::Agent, 0, 3000), (Leg::Customer, 3400, 7000)],
        ] {
            let s = run(&spans, 12_000, &cfg);
            assert!(
                s.iter().all(|s| s.kind != SignalKind::Interruption),
                "{spans:?}: {s:?}"
            );
        }
    }

    #[test]
    fn interruptions_are_counted_per_minute_per_leg() {
        let cfg = TurnConfig::default();
        let mut spans = Vec::new();
        // Three times in a minute the customer talks over the agent's explanation.
        for i in 0..3u64 {
            let t = i * 15_000;
            spans.push((Leg::Agent, t, t + 5000));
            spans.push((Leg::Customer, t + 3000, t + 8000));
        }
        let s = run(&spans, 60_000, &cfg);
        let per_minute: Vec<u32> = s
            .iter()
            .filter(|s| s.kind == SignalKind::Interruption)
            .map(|s| s.timing.as_ref().unwrap().per_minute.unwrap())
            .collect();
        assert_eq!(per_minute, vec![1, 2, 3], "{s:?}");
        assert!(
            s.iter()
                .filter(|s| s.kind == SignalKind::Interruption)
                .all(|s| s.leg == Leg::Customer),
            "{s:?}"
        );
    }

    #[test]
    fn speech_resuming_after_a_breath_is_not_a_new_turn() {
        let cfg = TurnConfig::default();
        // The customer's long turn is cut in two by the segmenter's maximum length (4 s here)
        // and then a breath, while the agent, who came in under it at 2 s for a moment, is
        // listening again: neither part of the customer's is an interruption of the agent.
        let s = run(
            &[
                (Leg::Customer, 0, 4000),
                (Leg::Agent, 2000, 2300),
                (Leg::Customer, 4000, 9000),
                (Leg::Customer, 9200, 12_000),
            ],
            12_000,
            &cfg,
        );
        assert!(
            s.iter().all(|s| s.kind != SignalKind::Interruption),
            "{s:?}"
        );
    }

    #[test]
    fn ten_seconds_of_silence_is_dead_air_reported_once_while_it_lasts() {
        let cfg = TurnConfig::default();
        let s = run(
            &[
                (Leg::Agent, 0, 3000),
                (Leg::Customer, 3500, 6000),
                // 12 s of nothing: a hold without music.
                (Leg::Agent, 18_000, 21_000),
                // 8 s: under the limit.
                (Leg::Customer, 29_000, 31_000),
            ],
            32_000,
            &cfg,
        );
        assert_eq!(kinds(&s), vec![(SignalKind::DeadAir, Leg::Agent, 6000)]);
        assert_eq!(s[0].at_ms, 16_000);
        assert_eq!(s[0].timing.as_ref().unwrap().silence_ms, Some(10_000));
    }

    #[test]
    fn silence_before_the_first_words_or_with_dead_air_off_is_not_reported() {
        let s = run(
            &[(Leg::Agent, 15_000, 18_000)],
            20_000,
            &TurnConfig::default(),
        );
        assert!(s.is_empty(), "{s:?}");
        let off = TurnConfig {
            dead_air_ms: 0,
            ..TurnConfig::default()
        };
        let s = run(&[(Leg::Agent, 0, 1000)], 30_000, &off);
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(TurnConfig::default().validate().is_ok());
        for bad in [
            TurnConfig {
                interruption_overlap_ms: 50,
                ..TurnConfig::default()
            },
            TurnConfig {
                dead_air_ms: 500,
                ..TurnConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
