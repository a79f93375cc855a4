//! The frame-level signal processing the segmenter and the raised-voice detector share: 10 ms
//! frames, a high-pass in front of the frame level, and a noise floor tracked per leg that
//! says whether a frame is speech. Pure arithmetic on 16 kHz samples; no notion of utterances,
//! loudness over a speaker's baseline, or words.

use crate::domain::leg::PIPELINE_RATE;

/// Samples in one analysis frame (10 ms at 16 kHz).
pub const FRAME: usize = (PIPELINE_RATE / 100) as usize;

/// Noise-floor rise rates in dB per frame: slow while speech is present so that a long
/// utterance does not raise its own floor, faster in pauses so a noisier line is learned.
const FLOOR_RISE_SPEECH_DB: f32 = 0.005;
const FLOOR_RISE_QUIET_DB: f32 = 0.05;
/// Fraction of the gap closed per frame when a frame is quieter than the floor.
const FLOOR_FALL: f32 = 0.2;

/// The first-order high-pass (about 100 Hz at 16 kHz) in front of the frame level, used
/// by the segmenter and the raised-voice detector, so both gate speech the same way.
#[derive(Debug, Clone, Default)]
pub struct HighPass {
    prev_in: f32,
    prev_out: f32,
}

impl HighPass {
    /// High-passes `frame` (carrying the filter state over from the previous frame) and
    /// returns its level in dBFS.
    pub fn frame_level_db(&mut self, frame: &[f32]) -> f32 {
        // First-order high-pass at about 100 Hz: removes DC offsets and mains hum, which
        // would otherwise read as a permanently "loud" line.
        const A: f32 = 0.961;
        let mut energy = 0.0f32;
        for &x in frame {
            let y = A * (self.prev_out + x - self.prev_in);
            self.prev_in = x;
            self.prev_out = y;
            energy += y * y;
        }
        10.0 * (energy / frame.len() as f32 + 1e-12).log10()
    }
}

/// The per-leg noise-floor tracker that decides whether a 10 ms frame is speech, used by the
/// segmenter and the raised-voice detector.
#[derive(Debug, Clone)]
pub struct NoiseGate {
    threshold_db: f32,
    min_level_db: f32,
    floor_db: Option<f32>,
}

impl NoiseGate {
    /// `threshold_db` over the floor makes a frame speech; below `min_level_db` never does.
    pub fn new(threshold_db: f32, min_level_db: f32) -> Self {
        Self {
            threshold_db,
            min_level_db,
            floor_db: None,
        }
    }

    /// The current noise-floor estimate in dBFS, once a frame has been seen.
    pub fn floor_db(&self) -> Option<f32> {
        self.floor_db
    }

    /// Classifies one frame's level (from [`HighPass::frame_level_db`]) and updates the floor.
    pub fn update(&mut self, level: f32) -> bool {
        let floor = *self.floor_db.get_or_insert(level);
        let speech = level > (floor + self.threshold_db).max(self.min_level_db);
        let new_floor = if level < floor {
            floor + (level - floor) * FLOOR_FALL
        } else {
            let rise = if speech {
                FLOOR_RISE_SPEECH_DB
            } else {
                FLOOR_RISE_QUIET_DB
            };
            floor + (level - floor).min(rise)
        };
        self.floor_db = Some(new_floor);
        speech
    }
}
