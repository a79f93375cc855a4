//! Speaking rate (语速) per leg, from the final transcript and its timings: syllables per
//! second, counting Chinese characters and English syllables.
//!
//! A pure state machine: `update(&mut self, transcript, now_ms)` returns a `speaking_rate`
//! signal when
//! - a customer speaks `speedup_ratio` times faster than their own start of the call (the
//!   median of their first `baseline_utterances` measurable utterances): an anger cue the risk
//!   engine adds to a raised voice;
//! - an agent speaks faster than `agent_max_en` / `agent_max_zh` syllables a second: a QA
//!   flag (the playbook asks agents to slow down with an upset customer).
//!
//! Only utterances long enough to measure count (`min_utterance_ms`, `min_syllables`), and a
//! leg is reported at most once every `repeat_ms`. It does not look at audio: the speech rate
//! the raised-voice detector measures is its own cue.

use serde::{Deserialize, Serialize};

use crate::domain::event::Transcript;
use crate::domain::leg::Leg;
use crate::domain::signal::{Quote, Signal, SignalKind, TimingEvidence};

/// Speaking-rate settings (`[detect.speaking_rate]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Utterances shorter than this (ms) are not measured: timings of a few words are too
    /// rough for a rate.
    pub min_utterance_ms: u64,
    /// Utterances with fewer syllables are not measured.
    pub min_syllables: u32,
    /// How many measurable utterances at the start of the call make a speaker's own pace.
    pub baseline_utterances: usize,
    /// A customer this many times faster than their own pace is speeding up (0 = off).
    pub speedup_ratio: f32,
    /// Syllables per second above which an English-speaking agent is too fast (0 = off).
    pub agent_max_en: f32,
    /// Characters per second above which a Mandarin-speaking agent is too fast (0 = off).
    pub agent_max_zh: f32,
    /// ms before the same leg's rate is reported again.
    pub repeat_ms: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            min_utterance_ms: 1500,
            min_syllables: 8,
            baseline_utterances: 5,
            speedup_ratio: 1.5,
            agent_max_en: 6.0,
            agent_max_zh: 6.5,
            repeat_ms: 30_000,
        }
    }
}

impl RateConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_utterance_ms < 500 || self.min_syllables < 2 {
            return Err(
                "detect.speaking_rate.min_utterance_ms must be at least 500 and min_syllables at least 2"
                    .into(),
            );
        }
        if !(1..=20).contains(&self.baseline_utterances) {
            return Err("detect.speaking_rate.baseline_utterances must be within 1..20".into());
        }
        if self.speedup_ratio != 0.0 && !(1.05..=3.0).contains(&self.speedup_ratio) {
            return Err(
                "detect.speaking_rate.speedup_ratio must be 0 (off) or within 1.05..3".into(),
            );
        }
        for (name, v) in [
            ("agent_max_en", self.agent_max_en),
            ("agent_max_zh", self.agent_max_zh),
        ] {
            if v != 0.0 && !(2.0..=15.0).contains(&v) {
                return Err(format!(
                    "detect.speaking_rate.{name} must be 0 (off) or within 2..15"
                ));
            }
        }
        Ok(())
    }
}

/// Syllables in a piece of text: one per Chinese character, and per English word its vowel
/// groups (a final silent e aside), at least one a word. Digits and symbols are not counted:
/// how a number is read varies too much.
pub fn syllables(text: &str) -> u32 {
    let mut n = 0;
    let mut word = String::new();
    let flush = |word: &mut String, n: &mut u32| {
        if !word.is_empty() {
            *n += english_syllables(word);
            word.clear();
        }
    };
    for c in text.chars() {
        if is_han(c) {
            flush(&mut word, &mut n);
            n += 1;
        } else if c.is_ascii_alphabetic() {
            word.push(c.to_ascii_lowercase());
        } else if c == '\'' && !word.is_empty() {
            // don't, I'm: one word.
        } else {
            flush(&mut word, &mut n);
        }
    }
    flush(&mut word, &mut n);
    n
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}

fn english_syllables(word: &str) -> u32 {
    let vowel = |c: char| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
    let mut groups = 0;
    let mut prev = false;
    for c in word.chars() {
        let v = vowel(c);
        if v && !prev {
            groups += 1;
        }
        prev = v;
    }
    // A final e is mostly silent (make, store), but not in -le (table) or a word like "the".
    if groups > 1 && word.ends_with('e') && !word.ends_with("le") && !word.ends_with("ee") {
        groups -= 1;
    }
    groups.max(1)
}

#[derive(Debug, Default)]
struct LegRate {
    /// Rates of the first measurable utterances, until the baseline is complete.
    first: Vec<f32>,
    baseline: Option<f32>,
    last_report: Option<u64>,
}

/// The speaking-rate detector of one call.
pub struct RateDetector {
    cfg: RateConfig,
    legs: Vec<(Leg, LegRate)>,
}

impl RateDetector {
    pub fn new(cfg: &RateConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            legs: Vec::new(),
        }
    }

    /// A final transcript known at call time `now_ms`.
    pub fn update(&mut self, t: &Transcript, now_ms: u64) -> Option<Signal> {
        // A mixed leg is both parties: whose pace would it be?
        if t.leg == Leg::Mixed {
            return None;
        }
        let duration = t.end_ms.saturating_sub(t.start_ms);
        let count = syllables(&t.text);
        if duration < self.cfg.min_utterance_ms || count < self.cfg.min_syllables {
            return None;
        }
        let rate = count as f32 * 1000.0 / duration as f32;
        let cfg = &self.cfg;
        let i = match self.legs.iter().position(|(l, _)| *l == t.leg) {
            Some(i) => i,
            None => {
                self.legs.push((t.leg, LegRate::default()));
                self.legs.len() - 1
            }
        };
        let state = &mut self.legs[i].1;
        let baseline = state.baseline;
        if baseline.is_none() {
            state.first.push(rate);
            if state.first.len() >= cfg.baseline_utterances {
                state.baseline = Some(median(&mut state.first));
            }
        }
        if state
            .last_report
            .is_some_and(|at| now_ms < at + cfg.repeat_ms)
        {
            return None;
        }
        let fires = match t.leg {
            Leg::Agent => {
                let max = if t.lang.starts_with("zh") {
                    cfg.agent_max_zh
                } else {
                    cfg.agent_max_en
                };
                max > 0.0 && rate > max
            }
            _ => baseline.is_some_and(|b| cfg.speedup_ratio > 0.0 && rate >= b * cfg.speedup_ratio),
        };
        if !fires {
            return None;
        }
        state.last_report = Some(now_ms);
        let mut s = Signal::new(
            SignalKind::SpeakingRate,
            t.leg,
            t.start_ms,
            t.end_ms,
            now_ms,
        );
        s.timing = Some(TimingEvidence {
            syllables_per_s: Some(round1(rate)),
            baseline_per_s: baseline.map(round1),
            ..TimingEvidence::default()
        });
        s.quotes = vec![Quote {
            leg: t.leg,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            text: t.text.clone(),
        }];
        Some(s)
    }
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round1(x: f32) -> f32 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::event::test_line as said;

    #[test]
    fn syllables_count_chinese_characters_and_english_vowel_groups() {
        assert_eq!(syllables("我的快递还没到。"), 7);
        assert_eq!(syllables("I want to make a complaint"), 7);
        assert_eq!(syllables("the table"), 3);
        assert_eq!(syllables("Don't, I'm sorry!"), 4);
        assert_eq!(syllables("订单 12315 refund"), 4);
        assert_eq!(syllables(""), 0);
    }

    #[test]
    fn a_customer_speeding_up_well_past_their_own_start_is_reported_once_a_while() {
        let mut d = RateDetector::new(&RateConfig::default());
        let calm = "My order has not arrived and I would like to know why"; // 15
        let mut t = 0;
        // Five calm utterances at 15 syllables in 4 s: 3.75 a second.
        for _ in 0..5 {
            assert!(
                d.update(&said(Leg::Customer, t, t + 4000, calm, "en"), t + 4000)
                    .is_none()
            );
            t += 6000;
        }
        // The same words in 3.5 s (4.3 a second, x1.14): not yet.
        assert!(
            d.update(&said(Leg::Customer, t, t + 3500, calm, "en"), t + 3500)
                .is_none()
        );
        t += 6000;
        // In 2.5 s (6 a second, x1.6): speeding up.
        let s = d
            .update(&said(Leg::Customer, t, t + 2500, calm, "en"), t + 2500)
            .expect("a speed-up");
        assert_eq!(s.kind, SignalKind::SpeakingRate);
        let timing = s.timing.unwrap();
        assert_eq!(timing.syllables_per_s, Some(6.0));
        assert_eq!(timing.baseline_per_s, Some(3.8));
        // Again 10 s later: within repeat_ms, not reported; after it, reported again.
        t += 10_000;
        assert!(
            d.update(&said(Leg::Customer, t, t + 2500, calm, "en"), t + 2500)
                .is_none()
        );
        t += 30_000;
        assert!(
            d.update(&said(Leg::Customer, t, t + 2500, calm, "en"), t + 2500)
                .is_some()
        );
    }

    #[test]
    fn a_customer_who_is_fast_from_the_start_or_speaks_briefly_is_not_reported() {
        let mut d = RateDetector::new(&RateConfig::default());
        let line = "我的快递一个星期了还没到你们到底怎么回事"; // 19
        let mut t = 0;
        for _ in 0..6 {
            // 19 characters in 3 s, every time: fast, but their own pace.
            assert!(
                d.update(&said(Leg::Customer, t, t + 3000, line, "zh"), t + 3000)
                    .is_none()
            );
            t += 5000;
        }
        // Short bursts are not measured at all.
        assert!(
            d.update(
                &said(Leg::Customer, t, t + 800, "还没到还没到还没到", "zh"),
                t + 800
            )
            .is_none()
        );
    }

    #[test]
    fn an_agent_over_the_language_limit_is_reported() {
        let mut d = RateDetector::new(&RateConfig::default());
        let en = "Let me just check that for you and get back to you in a moment"; // 16
        assert!(
            d.update(&said(Leg::Agent, 0, 4000, en, "en"), 4000)
                .is_none()
        );
        let s = d
            .update(&said(Leg::Agent, 5000, 7500, en, "en"), 7500)
            .expect("too fast");
        assert_eq!(s.leg, Leg::Agent);
        let mut d = RateDetector::new(&RateConfig::default());
        let zh = "您好请问有什么可以帮您的我这边马上为您查询一下"; // 22
        assert!(
            d.update(&said(Leg::Agent, 0, 4000, zh, "zh"), 4000)
                .is_none()
        );
        assert!(
            d.update(&said(Leg::Agent, 5000, 8000, zh, "zh"), 8000)
                .is_some()
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(RateConfig::default().validate().is_ok());
        let bad = RateConfig {
            speedup_ratio: 0.8,
            ..RateConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
