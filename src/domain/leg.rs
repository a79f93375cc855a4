//! Call legs and the one audio chunk type every stage passes around, with the pipeline's
//! sample rate. Nothing here decodes or resamples: that is `pipeline::audio`.

use serde::{Deserialize, Serialize};

/// The sample rate every stage after resampling works at (Whisper's input rate).
pub const PIPELINE_RATE: u32 = 16_000;

/// Which side of the call a stream of audio carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leg {
    /// The caller: the person whose anger callguard watches for.
    Customer,
    /// The customer-service agent on the monitored line.
    Agent,
    /// Both parties on one channel (mono recordings, mixed forks).
    Mixed,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Customer => "customer",
            Leg::Agent => "agent",
            Leg::Mixed => "mixed",
        }
    }
}

impl std::fmt::Display for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run of mono samples from one leg: at the call's own rate as a source delivers it
/// (`SourceEvent::Audio`), at [`PIPELINE_RATE`] once resampled.
///
/// `start_sample` counts samples (at that rate) since the start of the call on this leg, so
/// that every stage can turn positions into call-relative milliseconds without a clock, and a
/// gap in the audio is a jump in `start_sample`, not a shift of everything after it.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub leg: Leg,
    pub start_sample: u64,
    pub samples: Vec<f32>,
}

/// Converts a sample count at `rate` into milliseconds (rounded down).
pub fn samples_to_ms(samples: u64, rate: u32) -> u64 {
    samples * 1000 / rate as u64
}
