//! Audio in: WAV and G.711 decoding, resampling to Whisper's 16 kHz, the frame-level DSP the
//! segmenter and the voice detector share, and how a recording's channels map onto call legs
//! (`[audio]`). Nothing here knows about speech or text; the leg and chunk types themselves are
//! `domain::leg`.
//!
//! | module     | what it does |
//! |------------|--------------|
//! | `wav`      | WAV decoding (PCM, float, G.711, extensible), cut-short files read as far as they go |
//! | `g711`     | mu-law and A-law tables |
//! | `resample` | sample-rate conversion, whole or streamed, with the same samples either way |
//! | `dsp`      | 10 ms frames, the high-pass and the per-leg noise floor |

pub mod dsp;
pub mod g711;
pub mod resample;
pub mod wav;

use crate::domain::leg::Leg;
use serde::{Deserialize, Serialize};
use wav::DecodedAudio;

/// How recordings map onto call legs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// The leg carried by channel 0 and channel 1 of a stereo recording. The QA convention
    /// (Amazon Connect, FreeSWITCH RECORD_STEREO) is the customer left, the agent right.
    pub stereo_legs: [Leg; 2],
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            stereo_legs: [Leg::Customer, Leg::Agent],
        }
    }
}

impl AudioConfig {
    /// Checks that the two stereo channels are two different parties.
    pub fn validate(&self) -> Result<(), String> {
        if self.stereo_legs[0] == self.stereo_legs[1] {
            return Err("audio.stereo_legs must name two different legs".into());
        }
        if self.stereo_legs.contains(&Leg::Mixed) {
            return Err("audio.stereo_legs: each stereo channel is customer or agent".into());
        }
        Ok(())
    }
}

/// Splits decoded audio into legs: mono is one mixed leg, stereo follows the configured map.
pub fn split_legs(audio: DecodedAudio, stereo_legs: [Leg; 2]) -> Vec<(Leg, Vec<f32>)> {
    let mut channels = audio.channels;
    if channels.len() == 1 {
        return vec![(Leg::Mixed, channels.remove(0))];
    }
    stereo_legs.into_iter().zip(channels).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::audio::wav::SampleFormat;

    fn audio(channels: usize) -> DecodedAudio {
        DecodedAudio {
            sample_rate: 8000,
            channels: (0..channels).map(|c| vec![c as f32; 4]).collect(),
            format: SampleFormat::MuLaw,
            truncated: false,
        }
    }

    #[test]
    fn stereo_channels_map_to_configured_legs() {
        let legs = split_legs(audio(2), [Leg::Customer, Leg::Agent]);
        assert_eq!(legs[0], (Leg::Customer, vec![0.0; 4]));
        assert_eq!(legs[1], (Leg::Agent, vec![1.0; 4]));
        let swapped = split_legs(audio(2), [Leg::Agent, Leg::Customer]);
        assert_eq!(swapped[0].0, Leg::Agent);
        assert_eq!(swapped[0].1, vec![0.0; 4]);
        let mono = split_legs(audio(1), [Leg::Customer, Leg::Agent]);
        assert_eq!(mono, vec![(Leg::Mixed, vec![0.0; 4])]);
    }
}
