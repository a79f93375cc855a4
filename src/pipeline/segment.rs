//! Voice activity -> utterances, for one leg at 16 kHz.
//!
//! A pure state machine: `push` takes samples as they arrive (any chunk size), `finish` flushes
//! at the end of the call, and both return the utterances completed so far. No clock, no I/O;
//! positions are sample counts since the start of the leg.
//!
//! How it decides: each 10 ms frame is high-passed (phone lines carry hum and DC) and its level
//! compared with a noise floor tracked per leg (falls fast, rises slowly), so the same settings
//! work on a quiet line and a hot one, and on 8 kHz band-limited audio with hiss. Speech must
//! last `min_speech_ms` to open an utterance; `preroll_ms` of audio before the onset is kept so
//! first consonants are not clipped; `hangover_ms` of silence closes it; an utterance that grows
//! past `max_utterance_ms` is cut at its quietest recent frame. It does not transcribe, judge
//! loudness against the speaker, or know about words: that is for `asr` and `detect`.

use std::collections::VecDeque;

use crate::domain::leg::{Leg, PIPELINE_RATE, samples_to_ms};
use crate::pipeline::audio::dsp::{FRAME, HighPass, NoiseGate};
use serde::{Deserialize, Serialize};

/// How far back (ms) a max-length cut looks for the quietest frame.
const CUT_SEARCH_MS: u32 = 3000;
/// Trailing silence (ms) kept after the last speech frame: Whisper ends words more cleanly
/// with a little room, and more is wasted compute.
const TAIL_MS: u32 = 200;
/// A stretch of speech cut from one leg, with its pre-roll and a short tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub leg: Leg,
    /// First sample, counted from the start of the leg at 16 kHz.
    pub start_sample: u64,
    pub samples: Vec<f32>,
    /// True when the utterance was cut at the maximum length rather than by a pause.
    pub cut: bool,
}

impl Utterance {
    pub fn start_ms(&self) -> u64 {
        samples_to_ms(self.start_sample, PIPELINE_RATE)
    }
    pub fn end_ms(&self) -> u64 {
        samples_to_ms(self.start_sample + self.samples.len() as u64, PIPELINE_RATE)
    }
    pub fn duration_ms(&self) -> u64 {
        samples_to_ms(self.samples.len() as u64, PIPELINE_RATE)
    }

    /// The stretch (ms) that holds speech: without the pre-roll kept before its onset (none
    /// when it goes on from an utterance cut at the maximum length) and the short tail kept
    /// after its last speech (none when it was itself cut).
    pub fn speech_ms(&self, preroll_ms: u32, continues_cut: bool) -> (u64, u64) {
        let (start, end) = (self.start_ms(), self.end_ms());
        let start = if continues_cut {
            start
        } else {
            start + u64::from(preroll_ms)
        };
        let end = if self.cut {
            end
        } else {
            end.saturating_sub(u64::from(TAIL_MS))
        };
        (start.min(end), end)
    }
}

/// The speech stretches (leg, start ms, end ms) of one leg's utterances, in order.
pub fn speech_spans(utterances: &[Utterance], cfg: &SegmentConfig) -> Vec<(Leg, u64, u64)> {
    let mut after_cut = false;
    utterances
        .iter()
        .map(|u| {
            let (start, end) = u.speech_ms(cfg.preroll_ms, after_cut);
            after_cut = u.cut;
            (u.leg, start, end)
        })
        .collect()
}

struct Active {
    start_sample: u64,
    samples: Vec<f32>,
    /// Level (dB) of each whole frame in `samples`, for choosing a cut point.
    levels: Vec<f32>,
    /// Consecutive non-speech frames at the end.
    silent_frames: u32,
}

/// The per-leg segmenter.
pub struct Segmenter {
    leg: Leg,
    min_speech_frames: u32,
    hangover_frames: u32,
    preroll: usize,
    max_samples: usize,
    frame: Vec<f32>,
    /// Samples consumed so far (whole frames only).
    position: u64,
    high_pass: HighPass,
    gate: NoiseGate,
    /// Recent samples while idle, for the pre-roll and the onset run.
    history: VecDeque<f32>,
    history_cap: usize,
    /// Speech decisions of the last frames while idle (newest last); an utterance opens when
    /// enough of them are speech, so syllable dips inside an onset do not reset it.
    onset: VecDeque<bool>,
    onset_window: usize,
    active: Option<Active>,
}

fn ms_to_frames(ms: u32) -> u32 {
    ms.div_ceil(10)
}

impl Segmenter {
    pub fn new(leg: Leg, cfg: &SegmentConfig) -> Self {
        let min_speech_frames = ms_to_frames(cfg.min_speech_ms).max(1);
        let preroll = (cfg.preroll_ms as usize) * FRAME / 10;
        // Speech must fill half of a window twice its minimum length: syllables dip between
        // them, and requiring one unbroken run misses quiet speakers.
        let onset_window = 2 * min_speech_frames as usize;
        // The onset window also lives in the history, ahead of the pre-roll.
        let history_cap = preroll + onset_window * FRAME;
        Self {
            leg,
            min_speech_frames,
            hangover_frames: ms_to_frames(cfg.hangover_ms).max(1),
            preroll,
            max_samples: cfg.max_utterance_ms as usize * FRAME / 10,
            frame: Vec::with_capacity(FRAME),
            position: 0,
            high_pass: HighPass::default(),
            gate: NoiseGate::new(cfg.threshold_db, cfg.min_level_dbfs),
            history: VecDeque::with_capacity(history_cap),
            history_cap,
            onset: VecDeque::with_capacity(onset_window),
            onset_window,
            active: None,
        }
    }

    pub fn leg(&self) -> Leg {
        self.leg
    }

    /// The current noise-floor estimate in dBFS, once a frame has been seen.
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.gate.floor_db()
    }

    /// Whether an utterance is open (speech heard and not yet closed).
    pub fn in_speech(&self) -> bool {
        self.active.is_some()
    }

    /// The utterance still being spoken, if any: its first sample (leg time) and its audio
    /// so far, for a partial transcript.
    pub fn open_utterance(&self) -> Option<(u64, &[f32])> {
        self.active
            .as_ref()
            .map(|a| (a.start_sample, a.samples.as_slice()))
    }

    /// Feeds samples (16 kHz, any count) and returns utterances completed by them.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Utterance> {
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.frame.len()).min(rest.len());
            self.frame.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.frame.len() == FRAME {
                let frame = std::mem::take(&mut self.frame);
                self.process_frame(&frame, &mut out);
                self.frame = frame;
                self.frame.clear();
            }
        }
        out
    }

    /// Ends the leg: an open utterance with enough speech is returned.
    pub fn finish(&mut self) -> Vec<Utterance> {
        let mut out = Vec::new();
        if let Some(mut active) = self.active.take() {
            // A partial frame at the very end still belongs to the utterance.
            active.samples.extend_from_slice(&self.frame);
            if let Some(u) = self.close(active) {
                out.push(u);
            }
        }
        self.frame.clear();
        self.history.clear();
        self.onset.clear();
        out
    }

    /// Audio lost on the way: `samples` (16 kHz) that never arrived. An open utterance ends
    /// where the audio stopped, as if silence had closed it, and positions jump past the gap,
    /// so utterances after it keep the call's time. The noise floor is kept: nothing was heard.
    pub fn skip(&mut self, samples: u64) -> Vec<Utterance> {
        // `position` counts whole frames; a part-frame waiting here was audio all the same.
        let pending = self.frame.len() as u64;
        let out = self.finish();
        self.position += pending + samples;
        out
    }

    fn process_frame(&mut self, frame: &[f32], out: &mut Vec<Utterance>) {
        let level = self.high_pass.frame_level_db(frame);
        let speech = self.gate.update(level);
        self.position += FRAME as u64;

        match self.active.as_mut() {
            Some(active) => {
                active.samples.extend_from_slice(frame);
                active.levels.push(level);
                if speech {
                    active.silent_frames = 0;
                } else {
                    active.silent_frames += 1;
                }
                if active.silent_frames >= self.hangover_frames {
                    if let Some(active) = self.active.take()
                        && let Some(u) = self.close(active)
                    {
                        out.push(u);
                    }
                } else if active.samples.len() >= self.max_samples {
                    self.cut_at_max(out);
                }
            }
            None => self.idle_frame(frame, speech),
        }
    }

    fn idle_frame(&mut self, frame: &[f32], speech: bool) {
        self.history.extend(frame.iter().copied());
        while self.history.len() > self.history_cap {
            self.history.pop_front();
        }
        if self.onset.len() == self.onset_window {
            self.onset.pop_front();
        }
        self.onset.push_back(speech);
        let count = self.onset.iter().filter(|&&s| s).count();
        if count >= self.min_speech_frames as usize {
            // Speech began at the first speech frame of the window; keep the pre-roll before.
            let first = self.onset.iter().position(|&s| s).unwrap_or(0);
            let run_samples = (self.onset.len() - first) * FRAME;
            let keep = (run_samples + self.preroll).min(self.history.len());
            let skip = self.history.len() - keep;
            let samples: Vec<f32> = self.history.iter().skip(skip).copied().collect();
            let start_sample = self.position - keep as u64;
            // Levels only serve to choose cut points; marking the kept onset audio as loud
            // (0 dBFS) keeps a max-length cut away from the first words.
            let levels = vec![0.0; keep / FRAME];
            self.active = Some(Active {
                start_sample,
                samples,
                levels,
                silent_frames: 0,
            });
            self.history.clear();
            self.onset.clear();
        }
    }

    /// Splits an over-long utterance at its quietest frame in the last few seconds, emits the
    /// first part and keeps the rest open.
    fn cut_at_max(&mut self, out: &mut Vec<Utterance>) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let n = active.levels.len();
        let search = (CUT_SEARCH_MS / 10) as usize;
        let lo = n.saturating_sub(search).max(1);
        let mut cut_frame = n;
        let mut best = f32::INFINITY;
        for (i, &l) in active.levels.iter().enumerate().take(n).skip(lo) {
            if l < best {
                best = l;
                cut_frame = i;
            }
        }
        let cut = (cut_frame * FRAME).min(active.samples.len());
        let rest_samples = active.samples.split_off(cut);
        let rest_levels = active.levels.split_off(cut_frame.min(active.levels.len()));
        let rest = Active {
            start_sample: active.start_sample + cut as u64,
            samples: rest_samples,
            levels: rest_levels,
            silent_frames: active.silent_frames,
        };
        out.push(Utterance {
            leg: self.leg,
            start_sample: active.start_sample,
            samples: active.samples,
            cut: true,
        });
        self.active = Some(rest);
    }

    /// Closes an utterance: trims trailing silence beyond the tail, drops it if too little
    /// speech is left.
    fn close(&self, mut active: Active) -> Option<Utterance> {
        let silent = active.silent_frames as usize * FRAME;
        let tail = (TAIL_MS as usize * FRAME / 10).min(silent);
        let keep = active.samples.len().saturating_sub(silent) + tail;
        active.samples.truncate(keep);
        let speech_frames = (active.samples.len() / FRAME) as u32;
        if speech_frames < self.min_speech_frames {
            return None;
        }
        Some(Utterance {
            leg: self.leg,
            start_sample: active.start_sample,
            samples: active.samples,
            cut: false,
        })
    }
}

/// Runs a whole leg through a fresh segmenter (the offline path).
pub fn segment_all(leg: Leg, cfg: &SegmentConfig, samples: &[f32]) -> Vec<Utterance> {
    let mut seg = Segmenter::new(leg, cfg);
    let mut out = seg.push(samples);
    out.extend(seg.finish());
    out
}

/// Voice-activity segmentation: how speech is cut into utterances for Whisper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// A frame is speech when its level is this many dB above the leg's tracked noise floor.
    pub threshold_db: f32,
    /// Frames quieter than this (dBFS) are never speech, however quiet the line is.
    pub min_level_dbfs: f32,
    /// Speech must last this long (ms) to open an utterance; shorter blips are clicks.
    pub min_speech_ms: u32,
    /// Silence (ms) that closes an utterance; shorter pauses stay inside it.
    pub hangover_ms: u32,
    /// Audio (ms) kept before the detected onset so first consonants are not clipped.
    pub preroll_ms: u32,
    /// An utterance longer than this (ms) is cut, at the quietest recent frame.
    pub max_utterance_ms: u32,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            threshold_db: 9.0,
            min_level_dbfs: -55.0,
            min_speech_ms: 200,
            hangover_ms: 600,
            preroll_ms: 250,
            max_utterance_ms: 15_000,
        }
    }
}

impl SegmentConfig {
    /// Checks the ranges and that speech can be shorter than an utterance.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if !(0.0..=40.0).contains(&s.threshold_db) {
            return Err(format!(
                "segment.threshold_db = {} is outside 0..40",
                s.threshold_db
            ));
        }
        if !(-100.0..=0.0).contains(&s.min_level_dbfs) {
            return Err(format!(
                "segment.min_level_dbfs = {} is outside -100..0",
                s.min_level_dbfs
            ));
        }
        if s.max_utterance_ms < 1000 || s.max_utterance_ms > 30_000 {
            return Err(format!(
                "segment.max_utterance_ms = {} is outside 1000..30000 (Whisper sees 30 s at most)",
                s.max_utterance_ms
            ));
        }
        if s.hangover_ms < 50 || s.hangover_ms > 5000 {
            return Err(format!(
                "segment.hangover_ms = {} is outside 50..5000",
                s.hangover_ms
            ));
        }
        if s.preroll_ms > 1000 {
            return Err(format!(
                "segment.preroll_ms = {} is over 1000",
                s.preroll_ms
            ));
        }
        if s.min_speech_ms < 10 || s.min_speech_ms >= s.max_utterance_ms {
            return Err(format!(
                "segment.min_speech_ms = {} must be at least 10 and below max_utterance_ms",
                s.min_speech_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = PIPELINE_RATE as f32;

    /// Deterministic white noise (xorshift), amplitude-scaled to `dbfs` RMS.
    fn noise(n: usize, dbfs: f32, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let rms = 10f32.powf(dbfs / 20.0);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f32 / (1u64 << 53) as f32;
                (u * 2.0 - 1.0) * rms * 3f32.sqrt()
            })
            .collect()
    }

    /// A speech-like sound: a 140 Hz harmonic series with a 4 Hz syllable rhythm, at
    /// roughly `dbfs` RMS.
    fn voiced(n: usize, dbfs: f32) -> Vec<f32> {
        let amp = 10f32.powf(dbfs / 20.0);
        (0..n)
            .map(|i| {
                let t = i as f32 / SR;
                let syllable = 0.55 + 0.45 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                let mut v = 0.0;
                for h in 1..=12 {
                    let f = 140.0 * h as f32;
                    v += (2.0 * std::f32::consts::PI * f * t).sin() / h as f32;
                }
                v * syllable * amp * 0.9
            })
            .collect()
    }

    fn mix_into(base: &mut [f32], at: usize, add: &[f32]) {
        for (b, a) in base[at..].iter_mut().zip(add) {
            *b += a;
        }
    }

    fn secs(s: f32) -> usize {
        (s * SR) as usize
    }

    fn cfg() -> SegmentConfig {
        SegmentConfig::default()
    }

    /// Noise of `noise_db` with voiced bursts `(start_s, len_s)` at `speech_db`.
    fn scene(total_s: f32, noise_db: f32, speech_db: f32, bursts: &[(f32, f32)]) -> Vec<f32> {
        let mut x = noise(secs(total_s), noise_db, 7);
        for &(at, len) in bursts {
            mix_into(&mut x, secs(at), &voiced(secs(len), speech_db));
        }
        x
    }

    fn spans(us: &[Utterance]) -> Vec<(u64, u64)> {
        us.iter().map(|u| (u.start_ms(), u.end_ms())).collect()
    }

    #[test]
    fn silence_and_steady_noise_give_nothing() {
        assert!(segment_all(Leg::Customer, &cfg(), &vec![0.0; secs(5.0)]).is_empty());
        for db in [-70.0, -50.0, -35.0] {
            let x = noise(secs(8.0), db, 3);
            assert!(
                segment_all(Leg::Customer, &cfg(), &x).is_empty(),
                "noise at {db} dBFS made utterances"
            );
        }
    }

    #[test]
    fn bursts_in_noise_become_utterances_with_preroll() {
        let bursts = [(1.0, 1.5), (4.0, 2.0), (7.5, 0.8)];
        let x = scene(10.0, -50.0, -20.0, &bursts);
        let us = segment_all(Leg::Agent, &cfg(), &x);
        assert_eq!(us.len(), 3, "{:?}", spans(&us));
        for (u, &(at, len)) in us.iter().zip(&bursts) {
            let start = (at * 1000.0) as u64;
            let end = ((at + len) * 1000.0) as u64;
            // Starts at least most of the pre-roll before the onset, never after it.
            assert!(
                u.start_ms() + 150 <= start,
                "start {} vs {start}",
                u.start_ms()
            );
            assert!(
                u.start_ms() + 400 >= start,
                "start {} vs {start}",
                u.start_ms()
            );
            // Ends just after the burst: the tail, not the whole hangover.
            assert!(u.end_ms() >= end, "end {} vs {end}", u.end_ms());
            assert!(u.end_ms() <= end + 350, "end {} vs {end}", u.end_ms());
            assert_eq!(u.leg, Leg::Agent);
            assert!(!u.cut);
        }
    }

    #[test]
    fn works_on_quiet_and_hot_lines() {
        for (noise_db, speech_db) in [(-75.0, -40.0), (-60.0, -35.0), (-30.0, -6.0)] {
            let x = scene(6.0, noise_db, speech_db, &[(1.0, 1.0), (3.5, 1.2)]);
            let us = segment_all(Leg::Customer, &cfg(), &x);
            assert_eq!(
                us.len(),
                2,
                "noise {noise_db} speech {speech_db}: {:?}",
                spans(&us)
            );
        }
    }

    #[test]
    fn clicks_are_not_speech_and_short_pauses_stay_inside() {
        let mut x = noise(secs(6.0), -55.0, 11);
        mix_into(&mut x, secs(1.0), &voiced(secs(0.05), -10.0));
        mix_into(&mut x, secs(2.0), &voiced(secs(1.0), -20.0));
        mix_into(&mut x, secs(3.3), &voiced(secs(1.0), -20.0));
        let us = segment_all(Leg::Customer, &cfg(), &x);
        assert_eq!(us.len(), 1, "{:?}", spans(&us));
        assert!(us[0].start_ms() >= 1600 && us[0].end_ms() >= 4300);
    }

    #[test]
    fn long_speech_is_cut_at_max_length_without_losing_audio() {
        let c = SegmentConfig {
            max_utterance_ms: 5000,
            ..cfg()
        };
        let x = scene(22.0, -55.0, -20.0, &[(1.0, 20.0)]);
        let us = segment_all(Leg::Customer, &c, &x);
        assert!(us.len() >= 4, "{:?}", spans(&us));
        for u in &us {
            assert!(u.duration_ms() <= 5000, "{:?}", spans(&us));
        }
        for pair in us.windows(2) {
            assert_eq!(
                pair[0].start_sample + pair[0].samples.len() as u64,
                pair[1].start_sample,
                "gap between cut pieces"
            );
            assert!(pair[0].cut);
        }
        assert!(!us.last().unwrap().cut);
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let x = scene(8.0, -50.0, -25.0, &[(0.5, 1.0), (3.0, 2.5)]);
        let whole = segment_all(Leg::Mixed, &cfg(), &x);
        let mut seg = Segmenter::new(Leg::Mixed, &cfg());
        let mut chunked = Vec::new();
        for chunk in x.chunks(37) {
            chunked.extend(seg.push(chunk));
        }
        chunked.extend(seg.finish());
        assert_eq!(whole, chunked);
    }

    #[test]
    fn speech_running_to_the_end_is_flushed() {
        let x = scene(3.0, -55.0, -20.0, &[(1.0, 2.0)]);
        let us = segment_all(Leg::Customer, &cfg(), &x);
        assert_eq!(us.len(), 1);
        assert_eq!(us[0].end_ms(), 3000);
    }

    #[test]
    fn noise_floor_follows_the_line() {
        let mut seg = Segmenter::new(Leg::Customer, &cfg());
        seg.push(&noise(secs(3.0), -40.0, 5));
        let floor = seg.noise_floor_db().unwrap();
        assert!((floor - -40.0).abs() < 4.0, "floor {floor}");
    }
}
