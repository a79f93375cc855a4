//! The config file: the TOML file under `config/`, parsed with unknown fields refused, then
//! validated before anything uses it. Each section belongs to the stage it configures, which
//! defines and checks it (`[segment]` is `pipeline::segment::SegmentConfig`, `[hub]` is
//! `sinks::hub::HubConfig`, ...); this module only gathers the sections, reads the file and asks
//! each stage to validate its own. Runtime choices (which file to analyse, output format,
//! listen address) are command-line flags, not config; see `cli`.
//!
//! Every field has a default, so an empty file is a valid config; `config/callguard.toml`
//! spells the defaults out with their documentation and a test keeps the two in step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::ingest::device::DeviceConfig;
use crate::pipeline::asr::AsrConfig;
use crate::pipeline::audio::AudioConfig;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::detect::DetectConfig;
use crate::pipeline::redact::RedactConfig;
use crate::pipeline::risk::RiskConfig;
use crate::pipeline::segment::SegmentConfig;
use crate::sinks::hub::HubConfig;
use crate::sinks::store::StoreConfig;
use crate::sinks::webhook::WebhookConfig;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole config file: one section per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub audio: AudioConfig,
    pub segment: SegmentConfig,
    pub asr: AsrConfig,
    pub detect: DetectConfig,
    pub risk: RiskConfig,
    pub hub: HubConfig,
    pub webhook: WebhookConfig,
    pub device: DeviceConfig,
    pub store: StoreConfig,
    pub redact: RedactConfig,
    pub cluster: ClusterConfig,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `origin` only names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: each stage checks its own section (ranges, relations between
    /// its fields), in the order of the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.hub.validate().map_err(ConfigError::Invalid)?;
        self.audio.validate().map_err(ConfigError::Invalid)?;
        self.segment.validate().map_err(ConfigError::Invalid)?;
        self.asr.validate().map_err(ConfigError::Invalid)?;
        self.detect.validate().map_err(ConfigError::Invalid)?;
        self.risk.validate().map_err(ConfigError::Invalid)?;
        self.webhook.validate().map_err(ConfigError::Invalid)?;
        self.device.validate().map_err(ConfigError::Invalid)?;
        self.store.validate().map_err(ConfigError::Invalid)?;
        self.redact.validate().map_err(ConfigError::Invalid)?;
        self.cluster.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The settings a call's pipeline runs with (the stages' own sections, copied).
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            audio: self.audio.clone(),
            segment: self.segment.clone(),
            asr: self.asr.clone(),
            detect: self.detect.clone(),
            risk: self.risk.clone(),
            redact: self.redact.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::leg::Leg;

    #[test]
    fn shipped_config_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callguard.toml");
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn empty_file_is_valid() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_field_is_refused_with_its_name() {
        let err = Config::parse("[segment]\nthreshhold_db = 3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("threshhold_db"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        for text in [
            "[audio]\nstereo_legs = [\"agent\", \"agent\"]",
            "[audio]\nstereo_legs = [\"mixed\", \"agent\"]",
            "[segment]\nmax_utterance_ms = 60000",
            "[segment]\nthreshold_db = -3",
            "[asr]\ndetect_languages = [\"klingon\"]",
            "[asr]\ndetect_languages = []",
            "[asr]\nlanguage = \"fr\"",
            "[asr]\nmax_queued_utterances = 0",
        ] {
            assert!(
                Config::parse(text, Path::new("x.toml")).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn device_section_parses_and_is_checked() {
        let c = Config::parse(
            "[device]\nname = \"hw:CARD=PCH,DEV=0\"\nchannels = 2\nstereo_legs = [\"agent\", \"customer\"]\nagent = \"1042\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.device.name, "hw:CARD=PCH,DEV=0");
        assert_eq!(c.device.stereo_legs, [Leg::Agent, Leg::Customer]);
        assert_eq!(c.device.mono_leg, Leg::Mixed);
        assert_eq!(c.device.call_id, "device");
        for text in [
            "[device]\nchannels = 3",
            "[device]\nsample_rate = 100",
            "[device]\nstereo_legs = [\"mixed\", \"agent\"]",
            "[device]\nstereo_legs = [\"agent\", \"agent\"]",
            "[device]\ncall_id = \"\"",
            "[device]\nagent = \"a\\nb\"",
            "[device]\nmono_leg = \"left\"",
            "[device]\nnmae = \"default\"",
        ] {
            assert!(
                Config::parse(text, Path::new("x.toml")).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn store_section_parses_and_is_checked() {
        let c = Config::parse(
            "[store]\ntranscript_retention_days = 0\naudio_retention_days = 30\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.store.transcript_retention_days, 0);
        assert_eq!(c.store.audio_retention_days, 30);
        assert_eq!(c.store.sweep_interval_s, 3600);
        for text in [
            "[store]\ntranscript_retention_days = 40000",
            "[store]\naudio_retention_days = -1",
            "[store]\nsweep_interval_s = 5",
            "[store]\nsweep_interval_s = 100000",
            "[store]\nretention_days = 3",
        ] {
            assert!(
                Config::parse(text, Path::new("x.toml")).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn redact_section_parses_and_is_checked() {
        let c = Config::parse(
            "[redact]\nphones = false\nmin_digits = 8\nsilence_audio = true\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert!(c.redact.enabled && c.redact.cards && !c.redact.phones);
        assert_eq!(c.redact.min_digits, 8);
        assert!(c.redact.silence_audio);
        for text in [
            "[redact]\nmin_digits = 3",
            "[redact]\nmin_digits = 33",
            "[redact]\nenabled = \"yes\"",
            "[redact]\nemail = false",
        ] {
            assert!(
                Config::parse(text, Path::new("x.toml")).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn swapped_stereo_legs_parse() {
        let c = Config::parse(
            "[audio]\nstereo_legs = [\"agent\", \"customer\"]",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.audio.stereo_legs, [Leg::Agent, Leg::Customer]);
    }

    #[test]
    fn webhook_section_is_validated() {
        let parse = |text: &str| Config::parse(text, Path::new("x.toml"));
        let ok = parse(
            "[webhook]\nurl = \"https://crm.example.com/hook?token=x\"\ntimeout_ms = 1000\n\
             retries = 0\nbackoff_ms = 0\nsecret = \"k\"\nqueue = 1\n",
        )
        .unwrap();
        assert!(ok.webhook.enabled());
        assert!(parse("[webhook]\nurl = \"http://10.0.0.5:8080/x\"").is_ok());
        for text in [
            "[webhook]\nurl = \"ftp://crm.example.com/hook\"",
            "[webhook]\nurl = \"crm.example.com/hook\"",
            "[webhook]\nurl = \"http://\"",
            "[webhook]\nurl = \"mailto:ops@example.com\"",
            "[webhook]\ntimeout_ms = 0",
            "[webhook]\ntimeout_ms = 120001",
            "[webhook]\nretries = 11",
            "[webhook]\nbackoff_ms = 60001",
            "[webhook]\nqueue = 0",
            "[webhook]\nretry = 3",
            "[webhook]\nretries = -1",
        ] {
            assert!(parse(text).is_err(), "accepted: {text}");
        }
        let err = parse("[webhook]\nurl = \"ftp://x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhook.url"), "{err}");
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let mut c = WebhookConfig {
            url: "http://x".into(),
            ..Default::default()
        };
        c.secret = "hunter2".into();
        let shown = format!(
            "{:?}",
            Config {
                webhook: c,
                ..Default::default()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
