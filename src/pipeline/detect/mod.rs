//! Detectors: pure state machines that turn audio and transcripts into [`Signal`]s, the
//! evidence the risk engine (`risk`) weighs. No I/O, no clock, no channels: each detector's
//! `update(&mut self, input, now_ms)` is given the call-audio time and returns what it found,
//! so tests drive them with time-stepped inputs.
//!
//! | module       | input | signal kinds |
//! |--------------|-------|--------------|
//! | `energy`     | a leg's 16 kHz audio | `raised_voice` |
//! | `lexicon`    | transcript text | `complaint`, `threat_*`, `churn`, `escalation_request`, `agent_conduct` |
//! | `repetition` | customer transcript text | `repeated_complaint` |
//! | `turns`      | each leg's speech starting and stopping | `interruption`, `dead_air` |
//! | `rate`       | transcript text and timings | `speaking_rate` |

pub mod energy;
pub mod lexicon;
pub mod rate;
pub mod repetition;
pub mod turns;

use serde::{Deserialize, Serialize};

use energy::EnergyConfig;
use lexicon::{Lexicon, LexiconError};
use rate::RateConfig;
use repetition::RepetitionConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use turns::TurnConfig;

/// The detectors: where the lexicon is, raised-voice and repetition settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// The lexicon file (warning words per category, both languages). When it is the
    /// default path and missing (running outside the repository), the copy built into the
    /// binary is used; any other missing path is an error.
    pub lexicon: PathBuf,
    /// Chinese lexicon terms also match homophones Whisper writes for them on phone audio
    /// (头诉 for 投诉): see [`Lexicon::set_sound_alike`].
    pub sound_alike: bool,
    pub raised_voice: EnergyConfig,
    pub repetition: RepetitionConfig,
    /// Talk-over (`interruption`) and silence (`dead_air`).
    pub turns: TurnConfig,
    /// Speaking rate (`speaking_rate`).
    pub speaking_rate: RateConfig,
}

/// The lexicon path shipped in the repository.
pub const DEFAULT_LEXICON: &str = "config/lexicon.toml";

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            lexicon: PathBuf::from(DEFAULT_LEXICON),
            sound_alike: true,
            raised_voice: EnergyConfig::default(),
            repetition: RepetitionConfig::default(),
            turns: TurnConfig::default(),
            speaking_rate: RateConfig::default(),
        }
    }
}

impl DetectConfig {
    /// Checks the raised-voice and repetition settings.
    pub fn validate(&self) -> Result<(), String> {
        self.raised_voice.validate()?;
        self.turns.validate()?;
        self.speaking_rate.validate()?;
        self.repetition
            .validate()
            .map_err(|e| format!("detect.{e}"))
    }

    /// Loads the configured lexicon. The default path falls back to the copy built into the
    /// binary when it is missing (running outside the repository); any other path must exist.
    pub fn load_lexicon(&self) -> Result<Arc<Lexicon>, LexiconError> {
        let path = &self.lexicon;
        let mut lexicon = if path == Path::new(DEFAULT_LEXICON) && !path.exists() {
            tracing::info!("{DEFAULT_LEXICON} not found: using the built-in lexicon");
            Lexicon::builtin()
        } else {
            Lexicon::load(path)?
        };
        lexicon.set_sound_alike(self.sound_alike);
        Ok(Arc::new(lexicon))
    }
}
