//! What a call's pipeline runs with: the pipeline stages' own settings, gathered. Each stage
//! owns and validates its section (`[audio]` in `audio`, `[segment]` in `segment`, ...); the
//! daemon's and the CLI's `config::Config` reads the whole file and hands the pipeline this.

use crate::pipeline::asr::AsrConfig;
use crate::pipeline::assess::AssessorSetup;
use crate::pipeline::audio::AudioConfig;
use crate::pipeline::detect::DetectConfig;
use crate::pipeline::redact::RedactConfig;
use crate::pipeline::risk::RiskConfig;
use crate::pipeline::segment::SegmentConfig;

/// The pipeline's sections of the config file, as validated there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    pub audio: AudioConfig,
    pub segment: SegmentConfig,
    pub asr: AsrConfig,
    pub detect: DetectConfig,
    pub risk: RiskConfig,
    pub redact: RedactConfig,
}

impl PipelineConfig {
    /// What a call's detectors and risk engine are made from.
    pub fn assessor(&self) -> AssessorSetup<'_> {
        AssessorSetup {
            detect: &self.detect,
            risk: &self.risk,
            hold_ms: u64::from(self.segment.hangover_ms),
        }
    }
}
