//! Raised voice, per leg: a speaker clearly louder than their own earlier speech, with a cue
//! that phone gain control cannot fake.
//!
//! A pure state machine over one leg's 16 kHz audio: [`RaisedVoiceDetector::update`] takes
//! samples in pieces of any size (the result does not depend on how the audio is cut),
//! [`RaisedVoiceDetector::finish`] ends the call, and both return the [`Signal`]s found. No
//! clock, no I/O: times are call-audio milliseconds from the chunks' sample positions.
//!
//! How it decides:
//! - The audio is cut into 10 ms frames; a frame is speech when it stands clear of the leg's
//!   tracked noise floor (the segmenter's gate, so silence and line hiss never count).
//! - Every feature is measured below 3.4 kHz, so 8 kHz phone audio and wideband audio look
//!   alike, and only on voiced frames (vowels carry vocal effort; a consonant's level and
//!   spectrum mostly say which consonant it was): the level of the 100 Hz - 3.4 kHz band; the
//!   pitch (YIN on the 100 Hz - 1 kHz band decimated to 8 kHz, 70-500 Hz, which also decides
//!   what is voiced); and the spectral tilt, the energy in 1-3.4 kHz over 100 Hz - 1 kHz in
//!   dB (vocal effort sharpens the glottal pulse and lifts the highs; gain changes cannot).
//! - Each speaker's baseline is the median of those features over their earlier speech,
//!   decayed with a half-life counted in speech time, not updated while they are raised, and
//!   fully trusted once `warmup_speech_ms` of speech has been heard; from 1.2 s of speech
//!   until then it is trusted for a clearly raised voice only (every threshold half as high
//!   again), so a caller who says one sentence and then shouts is heard.
//! - Each speech frame is judged on the medians of the 41 speech frames around it (so the
//!   judgement lags the audio by 200 ms of speech, and single stressed syllables do not
//!   count). It is raised when its pitch has risen `pitch_rise_semitones` and its level is
//!   `min_db_over_baseline` above the baseline, or only `agc_min_db_over_baseline` up when
//!   the tilt has risen too (gain control flattens a shout's loudness but not its voice).
//!   The pitch rise is required: vocal effort raises the pitch with the level (roughly half
//!   a semitone per dB), while louder, brighter speech at the same pitch is a handset held
//!   closer or a run of bright vowels (/i/ lifts the highs), which on phone audio and in
//!   Mandarin's vowels fooled a loudness-and-tilt rule. Once raised, 70 % of each threshold
//!   keeps it raised.
//! - Raised frames form a stretch, which ends at a pause longer than `max_pause_ms` or after
//!   a second of speech short even of the 70 %. A stretch is reported once, as soon as it
//!   holds `min_raised_ms` of speech and its own medians pass the full thresholds; the signal
//!   covers the stretch up to that moment.
//! - Nothing is allocated per frame: the live daemon runs one detector per leg of every call.
//!
//! It does not: judge a speaker who is raised from their first words (there is nothing earlier
//! to compare with), separate two speakers on one channel (a `Mixed` leg gets one baseline for
//! both), measure speech rate (`rate_ratio` is always `None`), or tell anger from other loud,
//! high-pitched speech such as excitement; weighing the signal is for the risk engine.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::domain::leg::{AudioChunk, Leg, PIPELINE_RATE, samples_to_ms};
use crate::domain::signal::{RaisedVoiceEvidence, Signal, SignalKind};
use crate::pipeline::audio::dsp::{FRAME, HighPass, NoiseGate};

/// Raised-voice detection settings (`[detect.raised_voice]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyConfig {
    /// dB: how far the speech level must rise over the speaker's baseline, together with a
    /// pitch rise, to count as raised. Higher misses more shouting, lower flags
    /// emphatic but calm speech.
    pub min_db_over_baseline: f32,
    /// dB: the smaller level rise that suffices when the pitch and the tilt have both risen
    /// (phone gain control squashes a shout's loudness but not its voice). Set it equal to
    /// `min_db_over_baseline` to always demand the full rise.
    pub agc_min_db_over_baseline: f32,
    /// Semitones: the rise of the median pitch over the speaker's baseline that counts as
    /// the `pitch` cue, which every raised voice needs.
    pub pitch_rise_semitones: f32,
    /// dB: the rise of the high-band (1-3.4 kHz) over low-band (0.1-1 kHz) energy ratio over
    /// the baseline that counts as the `tilt` cue.
    pub tilt_rise_db: f32,
    /// ms of speech: a raised stretch is reported once it holds this much speech; shorter
    /// outbursts (a stressed word, a laugh) are not.
    pub min_raised_ms: u32,
    /// ms: silence shorter than this inside a raised stretch does not end it, so a rant of
    /// several sentences is one stretch.
    pub max_pause_ms: u32,
    /// ms of speech heard before the speaker's baseline is trusted; nothing is judged before.
    pub warmup_speech_ms: u32,
    /// ms of speech after which an old frame weighs half as much in the baseline: how slowly
    /// the baseline follows a speaker (and a line) that changes.
    pub baseline_halflife_ms: u32,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            min_db_over_baseline: 6.0,
            agc_min_db_over_baseline: 3.0,
            pitch_rise_semitones: 2.0,
            tilt_rise_db: 3.0,
            min_raised_ms: 600,
            max_pause_ms: 800,
            warmup_speech_ms: 3000,
            baseline_halflife_ms: 60_000,
        }
    }
}

impl EnergyConfig {
    /// Checks every field's range; the message names the field as it appears in the config.
    pub fn validate(&self) -> Result<(), String> {
        fn float(name: &str, v: f32, lo: f32, hi: f32) -> Result<(), String> {
            // Written so that NaN fails too.
            if v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!(
                    "detect.raised_voice.{name} = {v} is outside {lo}..{hi}"
                ))
            }
        }
        fn ms(name: &str, v: u32, lo: u32, hi: u32) -> Result<(), String> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "detect.raised_voice.{name} = {v} is outside {lo}..{hi}"
                ))
            }
        }
        float("min_db_over_baseline", self.min_db_over_baseline, 1.0, 40.0)?;
        float(
            "agc_min_db_over_baseline",
            self.agc_min_db_over_baseline,
            0.0,
            self.min_db_over_baseline,
        )?;
        float("pitch_rise_semitones", self.pitch_rise_semitones, 0.5, 24.0)?;
        float("tilt_rise_db", self.tilt_rise_db, 0.5, 30.0)?;
        ms("min_raised_ms", self.min_raised_ms, 100, 60_000)?;
        ms("max_pause_ms", self.max_pause_ms, 50, 10_000)?;
        ms("warmup_speech_ms", self.warmup_speech_ms, 500, 600_000)?;
        ms(
            "baseline_halflife_ms",
            self.baseline_halflife_ms,
            5_000,
            3_600_000,
        )?;
        Ok(())
    }
}

/// A speaker's baseline, for display: medians over the voiced frames of their earlier,
/// non-raised speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Level in dBFS, measured over 100 Hz - 3.4 kHz.
    pub level_dbfs: f32,
    /// Pitch in Hz.
    pub pitch_hz: f32,
    /// High-band (1-3.4 kHz) over low-band (0.1-1 kHz) energy, in dB.
    pub tilt_db: f32,
}

/// How the speech around one moment compares with the speaker's baseline (medians over the
/// voiced frames of about 400 ms of speech).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rise {
    /// Level over the baseline level, dB.
    pub db_over_baseline: f32,
    /// Pitch over the baseline pitch, semitones.
    pub pitch_rise_semitones: f32,
    /// Tilt over the baseline tilt, dB (positive: more energy in the highs).
    pub tilt_change_db: f32,
}

/// Samples per analysis frame (10 ms), the segmenter's frame so the speech gate matches it.
const HOP: usize = FRAME;
const HOP_MS: u32 = (HOP as u32 * 1000) / PIPELINE_RATE;

/// The speech gate: the segmenter's default margin over the noise floor, and an absolute
/// guard against digital silence (far below any real line's speech, so not a loudness
/// threshold).
const GATE_OVER_FLOOR_DB: f32 = 9.0;
const GATE_MIN_DBFS: f32 = -60.0;

/// Speech frames either side of the judged one in the running medians: 200 ms, longer than
/// a stressed syllable, shorter than the shortest outburst worth reporting.
const HALF_WINDOW: usize = 20;
const WINDOW: usize = 2 * HALF_WINDOW + 1;
/// Voiced frames a window (or a stretch) needs before its medians mean anything.
const MIN_VOICED_IN_WINDOW: u64 = 8;
/// Voiced frames (1 s) the baseline needs before its pitch and tilt are trusted.
const MIN_VOICED_BASELINE: u64 = 100;
/// Silence (ms) after which the frames waiting for their right-hand context are judged
/// without it (so a stretch that ends in a pause is reported without waiting for more
/// speech), and the medians' window starts afresh.
const PHRASE_GAP_MS: u32 = 300;
/// The fraction of each threshold that keeps a raised stretch going, and the speech (ms) that
/// must fall short even of that to end it: hysteresis, so that a softer word or a low tone
/// does not split one rant into several signals.
const HOLD_SCALE: f32 = 0.7;
/// Before `warmup_speech_ms`, a baseline of at least this much speech is trusted for a
/// clearly raised voice only (every threshold times [`PROVISIONAL_SCALE`]): a caller who
/// says one sentence and then shouts is heard, and the shout stays out of the baseline.
const PROVISIONAL_MS: u32 = 1200;
const PROVISIONAL_SCALE: f32 = 1.5;
const RELEASE_MS: u32 = 1000;

/// Pitch analysis runs on the low band decimated by two.
const PITCH_RATE: f32 = (PIPELINE_RATE / 2) as f32;
const F0_MIN_HZ: f32 = 70.0;
const F0_MAX_HZ: f32 = 500.0;
const TAU_MIN: usize = (PITCH_RATE / F0_MAX_HZ) as usize;
const TAU_MAX: usize = (PITCH_RATE / F0_MIN_HZ) as usize + 1;
/// YIN's integration window: 25 ms, nearly two periods of the lowest voice.
const YIN_WINDOW: usize = 200;
/// The pitch analysis buffer: the window plus the longest lag, plus one for interpolation.
const PITCH_BUF: usize = YIN_WINDOW + TAU_MAX + 2;
/// YIN's dip threshold (the first dip below it is the period, which avoids octave-down
/// errors), and the weakest dip still taken as voiced when no dip gets below it.
const YIN_THRESHOLD: f32 = 0.2;
const YIN_VOICED_MAX: f32 = 0.35;
/// Pitch is kept in semitones relative to this.
const PITCH_REF_HZ: f32 = 100.0;

/// Histogram ranges and resolutions for the medians: level (dBFS), pitch (semitones re
/// 100 Hz, 70-500 Hz fits), tilt (dB).
const LEVEL_RANGE: (f32, f32, f32) = (-100.0, 10.0, 0.25);
const PITCH_RANGE: (f32, f32, f32) = (-7.0, 29.0, 0.1);
const TILT_RANGE: (f32, f32, f32) = (-60.0, 40.0, 0.25);

/// A second-order IIR section (RBJ cookbook), transposed direct form II.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b0: f32,
    b1: f32,
    b2: f32,
    a1: f32,
    a2: f32,
    z1: f32,
    z2: f32,
}

impl Biquad {
    fn new(high_pass: bool, cutoff_hz: f64, q: f64) -> Self {
        let w0 = 2.0 * std::f64::consts::PI * cutoff_hz / f64::from(PIPELINE_RATE);
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high_pass {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Self {
            b0: (b0 / a0) as f32,
            b1: (b1 / a0) as f32,
            b2: (b0 / a0) as f32,
            a1: (-2.0 * cos / a0) as f32,
            a2: ((1.0 - alpha) / a0) as f32,
            z1: 0.0,
            z2: 0.0,
        }
    }

    /// Fourth-order Butterworth as two sections.
    fn butterworth4(high_pass: bool, cutoff_hz: f64) -> [Self; 2] {
        [
            Self::new(high_pass, cutoff_hz, 0.541_196_1),
            Self::new(high_pass, cutoff_hz, 1.306_563),
        ]
    }

    #[inline]
    fn run(&mut self, x: f32) -> f32 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    /// States decaying through silence end up subnormal, which is very slow on x86; they are
    /// inaudible long before that.
    fn flush_tiny(&mut self) {
        if self.z1.abs() < 1e-20 && self.z2.abs() < 1e-20 {
            self.z1 = 0.0;
            self.z2 = 0.0;
        }
    }
}

#[inline]
fn cascade(sections: &mut [Biquad; 2], x: f32) -> f32 {
    let y = sections[0].run(x);
    sections[1].run(y)
}

/// The band filters: everything is measured below 3.4 kHz so that wideband audio looks like
/// a phone line.
#[derive(Debug, Clone)]
struct Bands {
    /// Limits the input to 3.4 kHz.
    top: [Biquad; 2],
    /// Removes hum and rumble below 100 Hz.
    bottom: Biquad,
    /// The low band (100 Hz - 1 kHz), also the pitch analysis signal.
    low: [Biquad; 2],
    /// The high band (1 - 3.4 kHz).
    high: [Biquad; 2],
}

/// Energies of one frame: the whole analysis band, the low band, the high band.
struct BandEnergy {
    band: f32,
    low: f32,
    high: f32,
}

impl Bands {
    fn new() -> Self {
        Self {
            top: Biquad::butterworth4(false, 3400.0),
            bottom: Biquad::new(true, 100.0, std::f64::consts::FRAC_1_SQRT_2),
            low: Biquad::butterworth4(false, 1000.0),
            high: Biquad::butterworth4(true, 1000.0),
        }
    }

    /// Filters one frame, appending every other low-band sample (8 kHz) to `pitch`.
    fn run(&mut self, frame: &[f32], pitch: &mut [f32; PITCH_BUF]) -> BandEnergy {
        let new = frame.len() / 2;
        pitch.copy_within(new.., 0);
        let mut e = BandEnergy {
            band: 0.0,
            low: 0.0,
            high: 0.0,
        };
        let base = PITCH_BUF - new;
        for (i, &x) in frame.iter().enumerate() {
            let x = self.bottom.run(cascade(&mut self.top, x));
            let lo = cascade(&mut self.low, x);
            let hi = cascade(&mut self.high, x);
            e.band += x * x;
            e.low += lo * lo;
            e.high += hi * hi;
            // The 1 kHz low-pass leaves nothing near 4 kHz to alias.
            if i % 2 == 0 {
                pitch[base + i / 2] = lo;
            }
        }
        for f in self
            .top
            .iter_mut()
            .chain(std::iter::once(&mut self.bottom))
            .chain(self.low.iter_mut())
            .chain(self.high.iter_mut())
        {
            f.flush_tiny();
        }
        e
    }
}

/// The sum of squared differences, in eight independent lanes: a single running sum would
/// pin the loop to one add at a time (floating-point order), and this is the hot loop.
#[inline]
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (ca, cb) in a8.zip(b8) {
        for k in 0..LANES {
            let d = ca[k] - cb[k];
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// YIN (de Cheveigné & Kawahara 2002) on the newest `YIN_WINDOW + TAU_MAX` samples: the
/// pitch in semitones re [`PITCH_REF_HZ`], or None when the frame is not clearly voiced.
fn yin(buf: &[f32; PITCH_BUF], diff: &mut [f32; TAU_MAX + 2]) -> Option<f32> {
    let x = &buf[PITCH_BUF - YIN_WINDOW - TAU_MAX - 1..];
    diff[0] = 1.0;
    let mut running = 0.0f32;
    let mut pick = None;
    for tau in 1..=TAU_MAX + 1 {
        let d = squared_distance(&x[..YIN_WINDOW], &x[tau..tau + YIN_WINDOW]);
        running += d;
        // The cumulative mean normalisation: 1 at small lags, dips towards 0 at the period.
        diff[tau] = if running > 0.0 {
            d * tau as f32 / running
        } else {
            1.0
        };
        // The period is the bottom of the first dip below the threshold; the longer lags
        // need not be computed (most of the cost, for all but the deepest voices).
        let prev = tau - 1;
        if prev >= TAU_MIN && diff[prev] < YIN_THRESHOLD && diff[tau] >= diff[prev] {
            pick = Some(prev);
            break;
        }
    }
    let tau = match pick {
        Some(t) => t,
        None => {
            let mut best = TAU_MIN;
            for t in TAU_MIN..=TAU_MAX {
                if diff[t] < diff[best] {
                    best = t;
                }
            }
            if diff[best] >= YIN_VOICED_MAX {
                return None;
            }
            best
        }
    };
    // Parabolic interpolation: at 8 kHz one lag step is a semitone at the highest voices.
    let (a, b, c) = (diff[tau - 1], diff[tau], diff[tau + 1]);
    let den = a - 2.0 * b + c;
    let shift = if den > 0.0 {
        (0.5 * (a - c) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let f0 = PITCH_RATE / (tau as f32 + shift);
    if !(F0_MIN_HZ..=F0_MAX_HZ).contains(&f0) {
        return None;
    }
    Some(12.0 * (f0 / PITCH_REF_HZ).log2())
}

/// A histogram for running medians. Weights may grow over time: the baseline's decay is done
/// by weighting new values up rather than by decaying every bin.
#[derive(Debug, Clone)]
struct Histogram {
    lo: f32,
    step: f32,
    bins: Vec<f32>,
    total: f32,
}

impl Histogram {
    fn new((lo, hi, step): (f32, f32, f32)) -> Self {
        let n = ((hi - lo) / step).ceil() as usize;
        Self {
            lo,
            step,
            bins: vec![0.0; n.max(1)],
            total: 0.0,
        }
    }

    fn add(&mut self, v: f32, weight: f32) {
        let last = self.bins.len() - 1;
        // `as usize` saturates (NaN becomes 0), so out-of-range values land in the end bins.
        let i = ((v - self.lo) / self.step) as usize;
        self.bins[i.min(last)] += weight;
        self.total += weight;
    }

    fn scale(&mut self, k: f32) {
        for b in &mut self.bins {
            *b *= k;
        }
        self.total *= k;
    }

    fn clear(&mut self) {
        self.bins.fill(0.0);
        self.total = 0.0;
    }

    /// The weighted median, interpolated within its bin.
    fn median(&self) -> Option<f32> {
        if self.total <= 0.0 {
            return None;
        }
        let half = self.total / 2.0;
        let mut below = 0.0;
        for (i, &b) in self.bins.iter().enumerate() {
            if b > 0.0 && below + b >= half {
                let frac = ((half - below) / b).clamp(0.0, 1.0);
                return Some(self.lo + (i as f32 + frac) * self.step);
            }
            below += b;
        }
        None
    }
}

/// The measurements of a voiced frame.
#[derive(Debug, Clone, Copy)]
struct Voice {
    /// dBFS over 100 Hz - 3.4 kHz.
    level: f32,
    /// Semitones re [`PITCH_REF_HZ`].
    pitch: f32,
    /// High over low band, dB.
    tilt: f32,
}

/// One speech frame. Only voiced frames are measured: vowels carry vocal effort, while the
/// level and spectrum of consonants say more about which consonant it was.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// First sample of the frame, call-relative.
    start: u64,
    voice: Option<Voice>,
}

/// Level, pitch and tilt histograms: a speaker's baseline, or one raised stretch.
#[derive(Debug, Clone)]
struct Stats {
    level: Histogram,
    pitch: Histogram,
    tilt: Histogram,
    voiced: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            level: Histogram::new(LEVEL_RANGE),
            pitch: Histogram::new(PITCH_RANGE),
            tilt: Histogram::new(TILT_RANGE),
            voiced: 0,
        }
    }

    fn add(&mut self, v: &Voice, weight: f32) {
        self.level.add(v.level, weight);
        self.pitch.add(v.pitch, weight);
        self.tilt.add(v.tilt, weight);
        self.voiced += 1;
    }

    fn scale(&mut self, k: f32) {
        self.level.scale(k);
        self.pitch.scale(k);
        self.tilt.scale(k);
    }

    fn clear(&mut self) {
        self.level.clear();
        self.pitch.clear();
        self.tilt.clear();
        self.voiced = 0;
    }

    /// The medians, once `min_voiced` voiced frames are behind them.
    fn medians(&self, min_voiced: u64) -> Option<Medians> {
        if self.voiced < min_voiced {
            return None;
        }
        Some(Medians {
            level: self.level.median()?,
            pitch: self.pitch.median()?,
            tilt: self.tilt.median()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Medians {
    level: f32,
    pitch: f32,
    tilt: f32,
}

impl Medians {
    fn over(&self, base: &Medians) -> Rise {
        Rise {
            db_over_baseline: self.level - base.level,
            pitch_rise_semitones: self.pitch - base.pitch,
            tilt_change_db: self.tilt - base.tilt,
        }
    }
}

/// The raised stretch in progress.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    start: u64,
    /// End of the last frame that passed the test.
    end: u64,
    /// Speech frames from the start to `end`.
    speech_frames: u32,
    /// Speech frames since `end`, all short of the test.
    failing: u32,
    reported: bool,
    /// The threshold scale it is judged with (above 1 while the baseline is provisional).
    scale: f32,
}

/// Raised-voice detection for one leg: see the module documentation.
pub struct RaisedVoiceDetector {
    leg: Leg,
    cfg: EnergyConfig,
    /// Next expected input sample, call-relative.
    next_sample: u64,
    /// End of the audio processed so far: when a signal raised now is known.
    now: u64,
    /// The frame being filled, and where it starts.
    pending: Vec<f32>,
    pending_start: u64,
    high_pass: HighPass,
    gate: NoiseGate,
    bands: Bands,
    pitch_buf: Box<[f32; PITCH_BUF]>,
    yin_scratch: Box<[f32; TAU_MAX + 2]>,
    /// Consecutive non-speech frames.
    silent_frames: u32,
    speech_frames: u64,
    /// Speech frames of the current phrase: up to `HALF_WINDOW` judged ones, then the ones
    /// waiting for their right-hand context (the last `unjudged`).
    window: VecDeque<Frame>,
    unjudged: usize,
    scratch: [f32; WINDOW],
    baseline: Stats,
    /// The weight the next baseline frame gets; grows by 1/decay per speech frame.
    baseline_weight: f32,
    baseline_decay: f32,
    /// Speech frames (voiced or not) the baseline has seen.
    baseline_frames: u64,
    baseline_medians: Option<Medians>,
    stretch: Option<Stretch>,
    stretch_stats: Stats,
    latest: Option<Rise>,
}

impl RaisedVoiceDetector {
    pub fn new(leg: Leg, cfg: &EnergyConfig) -> Self {
        let halflife_frames = (cfg.baseline_halflife_ms / HOP_MS).max(1) as f32;
        Self {
            leg,
            cfg: cfg.clone(),
            next_sample: 0,
            now: 0,
            pending: Vec::with_capacity(HOP),
            pending_start: 0,
            high_pass: HighPass::default(),
            gate: NoiseGate::new(GATE_OVER_FLOOR_DB, GATE_MIN_DBFS),
            bands: Bands::new(),
            pitch_buf: Box::new([0.0; PITCH_BUF]),
            yin_scratch: Box::new([0.0; TAU_MAX + 2]),
            silent_frames: 0,
            speech_frames: 0,
            window: VecDeque::with_capacity(WINDOW + 1),
            unjudged: 0,
            scratch: [0.0; WINDOW],
            baseline: Stats::new(),
            baseline_weight: 1.0,
            baseline_decay: 0.5f32.powf(1.0 / halflife_frames),
            baseline_frames: 0,
            baseline_medians: None,
            stretch: None,
            stretch_stats: Stats::new(),
            latest: None,
        }
    }

    pub fn leg(&self) -> Leg {
        self.leg
    }

    /// Speech heard on this leg so far (ms).
    pub fn speech_ms(&self) -> u64 {
        self.speech_frames * u64::from(HOP_MS)
    }

    /// The speaker's baseline, once `warmup_speech_ms` of speech has gone into it.
    pub fn baseline(&self) -> Option<Baseline> {
        let m = self.warm_baseline()?;
        Some(Baseline {
            level_dbfs: m.level,
            pitch_hz: PITCH_REF_HZ * 2f32.powf(m.pitch / 12.0),
            tilt_db: m.tilt,
        })
    }

    /// Whether the latest judged speech is inside a raised stretch (reported or not yet).
    pub fn is_raised(&self) -> bool {
        self.stretch.is_some()
    }

    /// The latest judged speech against the baseline (None until there is a baseline).
    /// Judgements lag the audio by about 200 ms of speech.
    pub fn latest_rise(&self) -> Option<Rise> {
        self.latest
    }

    /// The line's noise floor in dBFS, as the speech gate tracks it.
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.gate.floor_db()
    }

    /// Feeds this leg's 16 kHz samples. `chunk.start_sample` places them in the call: a gap
    /// since the previous chunk counts as silence, samples already seen are skipped. The
    /// chunk's `leg` is not checked; signals carry the detector's.
    pub fn update(&mut self, chunk: &AudioChunk) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut samples = chunk.samples.as_slice();
        if chunk.start_sample > self.next_sample {
            // Lost audio: the unfinished frame is dropped and the gap is a pause.
            let gap_frames = (chunk.start_sample - self.pending_start) / HOP as u64;
            self.pending.clear();
            self.pending_start = chunk.start_sample;
            self.next_sample = chunk.start_sample;
            self.now = chunk.start_sample;
            self.silence(u32::try_from(gap_frames).unwrap_or(u32::MAX), &mut out);
        } else if chunk.start_sample < self.next_sample {
            let seen = self.next_sample - chunk.start_sample;
            let skip = usize::try_from(seen).map_or(samples.len(), |n| n.min(samples.len()));
            samples = &samples[skip..];
        }
        self.next_sample += samples.len() as u64;
        while !samples.is_empty() {
            let take = (HOP - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == HOP {
                self.frame(&mut out);
                self.pending.clear();
                self.pending_start += HOP as u64;
            }
        }
        out
    }

    /// Ends the call: judges the speech still waiting for context and closes any stretch.
    /// A trailing part-frame (under 10 ms) is ignored.
    pub fn finish(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        self.now = self.now.max(self.next_sample);
        self.judge_all(&mut out);
        self.stretch = None;
        out
    }

    fn frame(&mut self, out: &mut Vec<Signal>) {
        let gate_level = self.high_pass.frame_level_db(&self.pending);
        let speech = self.gate.update(gate_level);
        // The filters and the pitch buffer run through silence too, so that speech onsets
        // start from settled filters and a full pitch window.
        let e = self.bands.run(&self.pending, &mut self.pitch_buf);
        self.now = self.pending_start + HOP as u64;
        if !speech {
            self.silence(1, out);
            return;
        }
        self.silent_frames = 0;
        self.speech_frames += 1;
        const EPS: f32 = 1e-12;
        let voice = yin(&self.pitch_buf, &mut self.yin_scratch).map(|pitch| Voice {
            level: 10.0 * (e.band / HOP as f32 + EPS).log10(),
            pitch,
            tilt: 10.0 * ((e.high + EPS) / (e.low + EPS)).log10(),
        });
        self.window.push_back(Frame {
            start: self.pending_start,
            voice,
        });
        self.unjudged += 1;
        if self.unjudged > HALF_WINDOW {
            self.judge_next(out);
        }
    }

    fn silence(&mut self, frames: u32, out: &mut Vec<Signal>) {
        self.silent_frames = self.silent_frames.saturating_add(frames);
        let silent_ms = self.silent_frames.saturating_mul(HOP_MS);
        if silent_ms >= PHRASE_GAP_MS.min(self.cfg.max_pause_ms) && !self.window.is_empty() {
            self.judge_all(out);
        }
        if silent_ms >= self.cfg.max_pause_ms {
            self.stretch = None;
        }
    }

    /// Judges every waiting frame with whatever context there is, and starts a new phrase.
    fn judge_all(&mut self, out: &mut Vec<Signal>) {
        while self.unjudged > 0 {
            self.judge_next(out);
        }
        self.window.clear();
    }

    /// Judges the oldest unjudged frame on the medians of the window around it.
    fn judge_next(&mut self, out: &mut Vec<Signal>) {
        let idx = self.window.len() - self.unjudged;
        self.unjudged -= 1;
        let Some(&frame) = self.window.get(idx) else {
            return;
        };
        let lo = idx.saturating_sub(HALF_WINDOW);
        let hi = (idx + HALF_WINDOW + 1).min(self.window.len());
        let local = self.window_medians(lo, hi);
        // Keep only what the next frame's left half needs.
        while self.window.len() - self.unjudged > HALF_WINDOW {
            self.window.pop_front();
        }

        let Some((base, scale)) = self.judging_baseline() else {
            self.add_to_baseline(&frame);
            return;
        };
        let rise = local.map(|m| m.over(&base));
        if rise.is_some() {
            self.latest = rise;
        }
        let Some(mut stretch) = self.stretch else {
            if rise.is_some_and(|r| self.meets(&r, scale)) {
                self.stretch_stats.clear();
                self.stretch = Some(Stretch {
                    start: frame.start,
                    end: frame.start,
                    speech_frames: 0,
                    failing: 0,
                    reported: false,
                    scale,
                });
                self.extend_stretch(&frame, out);
            } else {
                self.add_to_baseline(&frame);
            }
            return;
        };
        if rise.is_some_and(|r| self.meets(&r, HOLD_SCALE * stretch.scale)) {
            self.extend_stretch(&frame, out);
            return;
        }
        // Short of the test: frozen out of the baseline, kept in the stretch's statistics in
        // case it resumes, and the end of the stretch once there is enough of it.
        stretch.failing += 1;
        if stretch.failing * HOP_MS >= RELEASE_MS {
            self.stretch = None;
            return;
        }
        if let Some(v) = &frame.voice {
            self.stretch_stats.add(v, 1.0);
        }
        self.stretch = Some(stretch);
    }

    /// Adds a frame that passed the test to the stretch; reports the stretch once it is long
    /// enough and its own medians pass too.
    fn extend_stretch(&mut self, frame: &Frame, out: &mut Vec<Signal>) {
        let Some(mut s) = self.stretch else {
            return;
        };
        if let Some(v) = &frame.voice {
            self.stretch_stats.add(v, 1.0);
        }
        s.speech_frames += s.failing + 1;
        s.failing = 0;
        s.end = frame.start + HOP as u64;
        if !s.reported && s.speech_frames * HOP_MS >= self.cfg.min_raised_ms {
            let own = self.stretch_stats.medians(MIN_VOICED_IN_WINDOW);
            let base = self.judging_baseline().map(|(b, _)| b);
            if let Some(rise) = own.zip(base).map(|(o, b)| o.over(&b))
                && self.meets(&rise, s.scale)
            {
                s.reported = true;
                out.push(self.signal(&s, &rise));
            }
        }
        self.stretch = Some(s);
    }

    fn signal(&self, s: &Stretch, rise: &Rise) -> Signal {
        let cfg = &self.cfg;
        let mut cues = Vec::with_capacity(3);
        if rise.db_over_baseline >= cfg.min_db_over_baseline {
            cues.push("loudness".to_string());
        }
        if rise.pitch_rise_semitones >= cfg.pitch_rise_semitones {
            cues.push("pitch".to_string());
        }
        if rise.tilt_change_db >= cfg.tilt_rise_db {
            cues.push("tilt".to_string());
        }
        let mut sig = Signal::new(
            SignalKind::RaisedVoice,
            self.leg,
            samples_to_ms(s.start, PIPELINE_RATE),
            samples_to_ms(s.end, PIPELINE_RATE),
            samples_to_ms(self.now.max(s.end), PIPELINE_RATE),
        );
        sig.raised = Some(RaisedVoiceEvidence {
            db_over_baseline: rise.db_over_baseline,
            duration_ms: u64::from(s.speech_frames) * u64::from(HOP_MS),
            pitch_rise_semitones: Some(rise.pitch_rise_semitones),
            tilt_change_db: Some(rise.tilt_change_db),
            rate_ratio: None,
            cues,
        });
        sig
    }

    /// The raised test, with every threshold scaled by `scale`: a clear level rise with a
    /// voice cue, or (gain control having flattened the level) both voice cues with a
    /// smaller level rise.
    fn meets(&self, r: &Rise, scale: f32) -> bool {
        let cfg = &self.cfg;
        let pitch = r.pitch_rise_semitones >= cfg.pitch_rise_semitones * scale;
        let tilt = r.tilt_change_db >= cfg.tilt_rise_db * scale;
        pitch
            && (r.db_over_baseline >= cfg.min_db_over_baseline * scale
                || (tilt && r.db_over_baseline >= cfg.agc_min_db_over_baseline * scale))
    }

    /// Medians over the voiced frames of `window[lo..hi]`, if there are enough of them.
    fn window_medians(&mut self, lo: usize, hi: usize) -> Option<Medians> {
        let mut median_of = |pick: fn(&Voice) -> f32| {
            let mut n = 0;
            for v in self.window.range(lo..hi).filter_map(|f| f.voice.as_ref()) {
                self.scratch[n] = pick(v);
                n += 1;
            }
            if (n as u64) < MIN_VOICED_IN_WINDOW {
                return None;
            }
            median_in_place(&mut self.scratch[..n])
        };
        Some(Medians {
            level: median_of(|v| v.level)?,
            pitch: median_of(|v| v.pitch)?,
            tilt: median_of(|v| v.tilt)?,
        })
    }

    fn warm_baseline(&self) -> Option<Medians> {
        if self.baseline_frames * u64::from(HOP_MS) < u64::from(self.cfg.warmup_speech_ms) {
            return None;
        }
        self.baseline_medians
    }

    /// The baseline to judge against and the threshold scale: the warm one as configured,
    /// else a provisional one (see [`PROVISIONAL_MS`]) with stricter thresholds.
    fn judging_baseline(&self) -> Option<(Medians, f32)> {
        if let Some(b) = self.warm_baseline() {
            return Some((b, 1.0));
        }
        let heard = self.baseline_frames * u64::from(HOP_MS);
        let provisional = u64::from(PROVISIONAL_MS.min(self.cfg.warmup_speech_ms));
        (heard >= provisional)
            .then_some(self.baseline_medians)
            .flatten()
            .map(|b| (b, PROVISIONAL_SCALE))
    }

    fn add_to_baseline(&mut self, f: &Frame) {
        self.baseline_frames += 1;
        self.baseline_weight /= self.baseline_decay;
        if let Some(v) = &f.voice {
            self.baseline.add(v, self.baseline_weight);
            self.baseline_medians = self.baseline.medians(MIN_VOICED_BASELINE);
        }
        if self.baseline_weight > 1e20 {
            self.baseline.scale(1.0 / self.baseline_weight);
            self.baseline_weight = 1.0;
        }
    }
}

/// The upper median, reordering `v`.
fn median_in_place(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    Some(*m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = PIPELINE_RATE as f32;

    fn secs(s: f32) -> usize {
        (s * SR).round() as usize
    }

    fn amp(dbfs: f32) -> f32 {
        10f32.powf(dbfs / 20.0)
    }

    /// How a synthetic talker sounds: vowel level, pitch, and the slope of the harmonic
    /// amplitudes (dB per octave of harmonic number; less steep = more vocal effort).
    #[derive(Debug, Clone, Copy)]
    struct Style {
        dbfs: f32,
        f0: f32,
        slope: f32,
    }

    const CALM: Style = Style {
        dbfs: -26.0,
        f0: 120.0,
        slope: -12.0,
    };

    /// 10 dB louder, 4 semitones higher, 4 dB/octave flatter (vocal effort raises the
    /// pitch by roughly half a semitone per dB).
    fn shouting(c: Style) -> Style {
        Style {
            dbfs: c.dbfs + 10.0,
            f0: c.f0 * 2f32.powf(4.0 / 12.0),
            slope: c.slope + 4.0,
        }
    }

    fn louder(c: Style, db: f32) -> Style {
        Style {
            dbfs: c.dbfs + db,
            ..c
        }
    }

    /// One period of a harmonic series with `slope` dB per octave, band-limited for
    /// fundamentals up to `max_f0`, normalised to unit RMS.
    fn wavetable(max_f0: f32, slope: f32) -> Vec<f32> {
        const N: usize = 2048;
        let harmonics = (3800.0 / max_f0).floor().max(1.0) as usize;
        let gains: Vec<f32> = (1..=harmonics)
            .map(|h| 10f32.powf(slope * (h as f32).log2() / 20.0))
            .collect();
        let rms = (gains.iter().map(|g| g * g).sum::<f32>() / 2.0).sqrt();
        (0..N)
            .map(|i| {
                let ph = 2.0 * std::f32::consts::PI * i as f32 / N as f32;
                gains
                    .iter()
                    .enumerate()
                    .map(|(k, g)| g * ((k + 1) as f32 * ph).sin())
                    .sum::<f32>()
                    / rms
            })
            .collect()
    }

    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in -1..1.
    fn unit(bits: u64) -> f32 {
        (bits >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A leg of synthetic speech: `parts` are (seconds, style) in order. Speech comes in
    /// utterances of 2.4 s with 0.6 s pauses (on a 3 s grid from the start of the leg), four
    /// syllables a second (a vowel, then a short fricative-like noise burst), each utterance
    /// with its own level (+-2 dB) and pitch (+-1 semitone), a falling intonation and a
    /// little vibrato; line noise at `noise_dbfs` throughout.
    fn talk(parts: &[(f32, Style)], noise_dbfs: f32) -> Vec<f32> {
        let total: usize = parts.iter().map(|p| secs(p.0)).sum();
        let mut out = Vec::with_capacity(total);
        let mut phase = 0.0f32;
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        let noise = amp(noise_dbfs) * 3f32.sqrt();
        for &(len, style) in parts {
            let table = wavetable(style.f0 * 1.3, style.slope);
            let n = table.len() as f32;
            for _ in 0..secs(len) {
                let t = out.len() as f32 / SR;
                rng = splitmix(rng);
                let mut v = unit(rng) * noise;
                let utt = (t / 3.0).floor();
                let pos = t - utt * 3.0;
                if pos < 2.4 {
                    let h = splitmix(utt as u64 + 7);
                    let level = style.dbfs + 2.0 * unit(h);
                    let st = unit(splitmix(h))
                        + (1.0 - pos / 1.2)
                        + 0.3 * (2.0 * std::f32::consts::PI * 5.0 * t).sin();
                    let f0 = style.f0 * 2f32.powf(st / 12.0);
                    phase = (phase + f0 / SR).fract();
                    let syl = (pos / 0.25).fract();
                    if syl < 0.65 {
                        let env = (std::f32::consts::PI * syl / 0.65).sin().powi(2);
                        let idx = ((phase * n) as usize).min(table.len() - 1);
                        // sin^2 has mean power 3/8: scale so the vowel's RMS is `level`.
                        v += env * amp(level) * table[idx] * (8.0f32 / 3.0).sqrt();
                    } else if (0.72..0.84).contains(&syl) {
                        v += unit(splitmix(rng)) * amp(level - 15.0) * 3f32.sqrt();
                    }
                }
                out.push(v);
            }
        }
        out
    }

    /// The usual test call: calm, then `raised` from 10 s for `raised_s`, then calm.
    fn call(raised: Style, raised_s: f32, after_s: f32) -> Vec<f32> {
        talk(&[(10.0, CALM), (raised_s, raised), (after_s, CALM)], -66.0)
    }

    fn run_chunked(x: &[f32], chunk: usize, cfg: &EnergyConfig) -> Vec<Signal> {
        let mut d = RaisedVoiceDetector::new(Leg::Customer, cfg);
        let mut out = Vec::new();
        let mut at = 0;
        for piece in x.chunks(chunk.max(1)) {
            out.extend(d.update(&AudioChunk {
                leg: Leg::Customer,
                start_sample: at as u64,
                samples: piece.to_vec(),
            }));
            at += piece.len();
        }
        out.extend(d.finish());
        out
    }

    fn run(x: &[f32]) -> Vec<Signal> {
        run_chunked(x, 320, &EnergyConfig::default())
    }

    fn feed(d: &mut RaisedVoiceDetector, x: &[f32]) -> Vec<Signal> {
        d.update(&AudioChunk {
            leg: d.leg(),
            start_sample: d.next_sample,
            samples: x.to_vec(),
        })
    }

    fn evidence(s: &Signal) -> &RaisedVoiceEvidence {
        s.raised
            .as_ref()
            .expect("raised_voice signals carry evidence")
    }

    fn brief(sigs: &[Signal]) -> Vec<(u64, u64, u64, Vec<String>)> {
        sigs.iter()
            .map(|s| (s.start_ms, s.end_ms, s.at_ms, evidence(s).cues.clone()))
            .collect()
    }

    #[test]
    fn default_config_is_valid_and_reads_from_toml() {
        let cfg = EnergyConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let parsed: EnergyConfig = toml::from_str("min_raised_ms = 900").expect("parses");
        assert_eq!(parsed.min_raised_ms, 900);
        assert_eq!(parsed.pitch_rise_semitones, cfg.pitch_rise_semitones);
        assert!(toml::from_str::<EnergyConfig>("min_raised = 900").is_err());
        let text = toml::to_string(&cfg).expect("serialises");
        assert_eq!(toml::from_str::<EnergyConfig>(&text).ok(), Some(cfg));
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let bad = [
            EnergyConfig {
                min_db_over_baseline: f32::NAN,
                ..Default::default()
            },
            EnergyConfig {
                agc_min_db_over_baseline: 8.0,
                ..Default::default()
            },
            EnergyConfig {
                pitch_rise_semitones: 0.0,
                ..Default::default()
            },
            EnergyConfig {
                tilt_rise_db: -1.0,
                ..Default::default()
            },
            EnergyConfig {
                min_raised_ms: 0,
                ..Default::default()
            },
            EnergyConfig {
                warmup_speech_ms: 10,
                ..Default::default()
            },
            EnergyConfig {
                baseline_halflife_ms: 100,
                ..Default::default()
            },
        ];
        for cfg in bad {
            let err = cfg.validate().expect_err("out of range");
            assert!(err.starts_with("detect.raised_voice."), "{err}");
        }
    }

    #[test]
    fn yin_finds_the_pitch_of_harmonic_sounds() {
        let mut scratch = [0.0; TAU_MAX + 2];
        for f0 in [75.0f32, 110.0, 180.0, 260.0, 400.0, 480.0] {
            let mut buf = [0.0f32; PITCH_BUF];
            for (i, v) in buf.iter_mut().enumerate() {
                let t = i as f32 / PITCH_RATE;
                // Like the phone band: harmonics from 300 Hz to 1 kHz only, no fundamental.
                *v = (1..=12)
                    .map(|h| h as f32 * f0)
                    .filter(|f| (300.0..1000.0).contains(f))
                    .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                    .sum();
            }
            let st = yin(&buf, &mut scratch).expect("voiced");
            let hz = PITCH_REF_HZ * 2f32.powf(st / 12.0);
            assert!(
                (12.0 * (hz / f0).log2()).abs() < 0.2,
                "{f0} Hz read as {hz}"
            );
        }
        let mut s = 99u64;
        let noise: Vec<f32> = (0..PITCH_BUF)
            .map(|_| {
                s = splitmix(s);
                unit(s)
            })
            .collect();
        let mut buf = [0.0f32; PITCH_BUF];
        buf.copy_from_slice(&noise);
        assert_eq!(yin(&buf, &mut scratch), None, "white noise is unvoiced");
    }

    #[test]
    fn calm_speech_gives_nothing_and_learns_a_baseline() {
        let x = talk(&[(40.0, CALM)], -66.0);
        let mut d = RaisedVoiceDetector::new(Leg::Customer, &EnergyConfig::default());
        assert!(feed(&mut d, &x[..secs(2.0)]).is_empty());
        assert_eq!(d.baseline(), None, "no baseline before the warm-up");
        let mut sigs = feed(&mut d, &x[secs(2.0)..]);
        sigs.extend(d.finish());
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
        let b = d.baseline().expect("warm");
        assert!((b.pitch_hz / CALM.f0 - 1.0).abs() < 0.06, "{b:?}");
        assert!(!d.is_raised());
        let rise = d.latest_rise().expect("judged");
        assert!(rise.db_over_baseline.abs() < 4.0, "{rise:?}");
        assert!(d.speech_ms() > 20_000 && d.speech_ms() < 40_000);
    }

    #[test]
    fn a_raised_stretch_gives_one_signal_with_its_times_and_evidence() {
        let sigs = run(&call(shouting(CALM), 4.0, 6.0));
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        let s = &sigs[0];
        assert_eq!((s.kind, s.leg), (SignalKind::RaisedVoice, Leg::Customer));
        assert!((9_800..=10_500).contains(&s.start_ms), "{:?}", brief(&sigs));
        assert!(
            s.end_ms > s.start_ms && s.end_ms <= 14_300,
            "{:?}",
            brief(&sigs)
        );
        // Known within a second or two of the shouting starting, not at its end.
        assert!(
            s.at_ms >= s.end_ms && s.at_ms < 11_800,
            "{:?}",
            brief(&sigs)
        );
        // The evidence covers the stretch up to the report, so it carries the talker's own
        // variation (+-2 dB and +-1 semitone from utterance to utterance).
        let e = evidence(s);
        assert!((e.db_over_baseline - 10.0).abs() < 2.5, "{e:?}");
        let pitch = e.pitch_rise_semitones.expect("voiced");
        assert!((pitch - 3.0).abs() < 1.5, "{e:?}");
        assert!(e.tilt_change_db.expect("voiced") > 3.0, "{e:?}");
        assert!(e.duration_ms >= 600, "{e:?}");
        assert!(e.cues.starts_with(&["loudness".into()]), "{e:?}");
        assert!(e.cues.contains(&"tilt".into()), "{e:?}");
        assert_eq!(e.cues.contains(&"pitch".into()), pitch >= 2.0, "{e:?}");
        assert_eq!(e.rate_ratio, None);
    }

    #[test]
    fn louder_without_a_voice_change_is_not_raised() {
        // The handset moved closer, or the line's gain jumped: same pitch, same spectrum.
        let sigs = run(&call(louder(CALM, 10.0), 15.0, 5.0));
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }

    #[test]
    fn quiet_and_hot_lines_alike() {
        for dbfs in [-40.0, -6.0] {
            let style = Style { dbfs, ..CALM };
            let calm = talk(&[(30.0, style)], dbfs - 40.0);
            let sigs = run(&calm);
            assert!(sigs.is_empty(), "{dbfs} dBFS: {:?}", brief(&sigs));
            let raised = Style {
                dbfs: dbfs.min(-12.0),
                ..style
            };
            let parts = [(10.0, raised), (4.0, shouting(raised)), (4.0, raised)];
            let sigs = run(&talk(&parts, dbfs - 40.0));
            assert_eq!(sigs.len(), 1, "{dbfs} dBFS: {:?}", brief(&sigs));
        }
    }

    #[test]
    fn slow_gain_drift_is_not_raised() {
        // Gain control creeping 15 dB up over 40 s, then back down over 20 s.
        let mut x = talk(&[(70.0, CALM)], -66.0);
        for (i, v) in x.iter_mut().enumerate() {
            let t = i as f32 / SR;
            let db = if t < 10.0 {
                0.0
            } else if t < 50.0 {
                (t - 10.0) / 40.0 * 15.0
            } else {
                15.0 - (t - 50.0) / 20.0 * 15.0
            };
            *v *= amp(db);
        }
        let sigs = run(&x);
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }

    #[test]
    fn a_short_outburst_is_not_reported() {
        let sigs = run(&call(shouting(CALM), 0.35, 8.0));
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }

    #[test]
    fn gain_flattened_shouting_is_caught_by_pitch_and_tilt() {
        // Phone gain control squashed the loudness to +4 dB; the voice still changed.
        let squashed = Style {
            dbfs: CALM.dbfs + 4.0,
            ..shouting(CALM)
        };
        let sigs = run(&call(squashed, 4.0, 4.0));
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        assert_eq!(evidence(&sigs[0]).cues, ["pitch", "tilt"]);
        // Pitch alone (no tilt, no loudness) is intonation, not shouting.
        let higher = Style {
            f0: CALM.f0 * 2f32.powf(3.0 / 12.0),
            ..CALM
        };
        let sigs = run(&call(higher, 4.0, 4.0));
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }

    #[test]
    fn loudness_needs_a_pitch_rise() {
        let with_pitch = Style {
            slope: CALM.slope,
            ..shouting(CALM)
        };
        let sigs = run(&call(with_pitch, 4.0, 4.0));
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        assert_eq!(evidence(&sigs[0]).cues, ["loudness", "pitch"]);
        // Louder and brighter at the same pitch: the handset closer to the mouth, or a run
        // of bright vowels (/i/ lifts the highs) said with emphasis. Vocal effort raises
        // the pitch with the level; without that rise it is not a raised voice.
        let with_tilt = Style {
            f0: CALM.f0,
            ..shouting(CALM)
        };
        let sigs = run(&call(with_tilt, 4.0, 4.0));
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let x = talk(
            &[
                (10.0, CALM),
                (3.0, shouting(CALM)),
                (8.0, CALM),
                (2.0, shouting(CALM)),
            ],
            -66.0,
        );
        let cfg = EnergyConfig::default();
        let whole = run_chunked(&x, x.len(), &cfg);
        assert_eq!(whole.len(), 2, "{:?}", brief(&whole));
        for size in [1, 37, 4096] {
            assert_eq!(run_chunked(&x, size, &cfg), whole, "chunks of {size}");
        }
    }

    #[test]
    fn chunk_positions_place_the_signals() {
        let x = call(shouting(CALM), 4.0, 2.0);
        let mut d = RaisedVoiceDetector::new(Leg::Agent, &EnergyConfig::default());
        // The leg's audio starts 5 s into the call.
        let mut sigs = d.update(&AudioChunk {
            leg: Leg::Agent,
            start_sample: secs(5.0) as u64,
            samples: x.clone(),
        });
        sigs.extend(d.finish());
        let plain = run(&x);
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].leg, Leg::Agent);
        assert_eq!(sigs[0].start_ms, plain[0].start_ms + 5000);
        assert_eq!(sigs[0].at_ms, plain[0].at_ms + 5000);
    }

    #[test]
    fn silence_between_utterances_does_not_pollute_the_baseline() {
        let dense = talk(&[(20.0, CALM)], -66.0);
        // The same speech with a long silence after every utterance.
        let mut sparse = Vec::new();
        for utt in dense.chunks(secs(3.0)) {
            sparse.extend_from_slice(utt);
            sparse.extend(talk(
                &[(
                    4.0,
                    Style {
                        dbfs: -200.0,
                        ..CALM
                    },
                )],
                -66.0,
            ));
        }
        let mut a = RaisedVoiceDetector::new(Leg::Customer, &EnergyConfig::default());
        let mut b = RaisedVoiceDetector::new(Leg::Customer, &EnergyConfig::default());
        feed(&mut a, &dense);
        feed(&mut b, &sparse);
        let (a, b) = (a.baseline().expect("warm"), b.baseline().expect("warm"));
        assert!((a.level_dbfs - b.level_dbfs).abs() < 1.0, "{a:?} vs {b:?}");
        assert!((a.tilt_db - b.tilt_db).abs() < 1.0, "{a:?} vs {b:?}");
        // And a raised stretch after the sparse talk still measures about 10 dB.
        let mut x = sparse;
        x.extend(talk(&[(3.0, shouting(CALM))], -66.0));
        let sigs = run(&x);
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        let e = evidence(&sigs[0]);
        assert!((e.db_over_baseline - 10.0).abs() < 2.5, "{e:?}");
    }

    #[test]
    fn the_baseline_is_frozen_while_raised() {
        let x = talk(&[(10.0, CALM), (40.0, shouting(CALM))], -66.0);
        let mut d = RaisedVoiceDetector::new(Leg::Customer, &EnergyConfig::default());
        let mut sigs = feed(&mut d, &x[..secs(10.0)]);
        let before = d.baseline().expect("warm");
        sigs.extend(feed(&mut d, &x[secs(10.0)..]));
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        assert!(d.is_raised(), "40 s of shouting became the new normal");
        let after = d.baseline().expect("warm");
        assert!((after.level_dbfs - before.level_dbfs).abs() < 0.5);
        assert!(d.latest_rise().expect("judged").db_over_baseline > 6.0);
        assert!(d.finish().is_empty());
    }

    #[test]
    fn two_raised_stretches_give_two_signals() {
        let x = talk(
            &[
                (10.0, CALM),
                (3.0, shouting(CALM)),
                (8.0, CALM),
                (3.0, shouting(CALM)),
                (3.0, CALM),
            ],
            -66.0,
        );
        let sigs = run(&x);
        assert_eq!(sigs.len(), 2, "{:?}", brief(&sigs));
        assert!((9_800..=10_500).contains(&sigs[0].start_ms));
        assert!((20_800..=21_500).contains(&sigs[1].start_ms));
    }

    #[test]
    fn a_shout_after_one_sentence_is_judged_on_a_provisional_baseline() {
        // One calm utterance (about 2 s of speech: short of the 3 s warm-up), then a clear
        // shout: heard, with the stricter provisional thresholds.
        let strong = louder(shouting(CALM), 6.0);
        let sigs = run(&talk(&[(3.0, CALM), (6.0, strong)], -66.0));
        assert_eq!(sigs.len(), 1, "{:?}", brief(&sigs));
        assert!(sigs[0].start_ms >= 2_900, "{:?}", brief(&sigs));
        assert!(
            evidence(&sigs[0]).db_over_baseline > 12.0,
            "{:?}",
            brief(&sigs)
        );
        // A moderate raise that a warm baseline would flag (7 dB with its voice cues) is not
        // flagged on the provisional baseline: nothing in the first raised utterance (3.0 -
        // 5.4 s), which is heard before the warm-up ends.
        let moderate = Style {
            dbfs: CALM.dbfs + 7.0,
            f0: CALM.f0 * 2f32.powf(2.5 / 12.0),
            slope: CALM.slope + 2.0,
        };
        let warm = run(&talk(&[(9.0, CALM), (6.0, moderate)], -66.0));
        assert_eq!(
            warm.len(),
            1,
            "a warm baseline flags it: {:?}",
            brief(&warm)
        );
        let sigs = run(&talk(&[(3.0, CALM), (6.0, moderate)], -66.0));
        assert!(
            sigs.iter().all(|s| s.start_ms >= 5_400),
            "{:?}",
            brief(&sigs)
        );
    }

    #[test]
    fn shouting_from_the_first_word_is_not_judged() {
        // Nothing earlier to compare with: the shout is this speaker's baseline.
        let sigs = run(&talk(&[(20.0, shouting(CALM))], -66.0));
        assert!(sigs.is_empty(), "{:?}", brief(&sigs));
    }
}
