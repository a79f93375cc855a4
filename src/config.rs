//! Pipeline settings: the TOML file under `config/`, parsed with unknown fields refused, then
//! validated before anything uses it. Runtime choices (which file to analyse, output format,
//! listen address) are command-line flags, not config; see `cli`.
//!
//! Every field has a default, so an empty file is a valid config; `config/callguard.toml`
//! spells the defaults out with their documentation and a test keeps the two in step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio::Leg;
use crate::detect::energy::EnergyConfig;
use crate::detect::repetition::RepetitionConfig;
use crate::redact::RedactConfig;
use crate::risk::RiskConfig;

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

/// The whole pipeline configuration.
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
}

/// The call store (`<data_dir>/callguard.db`): how long call contents are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Days after a call ends before its transcript, signals, QA flags, notes and the prompts'
    /// full text are deleted (0..36500; 0 = keep for ever). The call row, its risk curve and
    /// who accepted or dismissed its prompts stay, for statistics.
    pub transcript_retention_days: u32,
    /// Days after a call ends before its recording is deleted (0..36500; 0 = keep for ever).
    pub audio_retention_days: u32,
    /// Seconds between retention sweeps (60..86400).
    pub sweep_interval_s: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            transcript_retention_days: 365,
            audio_retention_days: 90,
            sweep_interval_s: 3600,
        }
    }
}

impl StoreConfig {
    /// Checks the ranges; called by [`Config::validate`].
    pub fn validate(&self) -> Result<(), String> {
        for (name, days) in [
            ("transcript_retention_days", self.transcript_retention_days),
            ("audio_retention_days", self.audio_retention_days),
        ] {
            if days > 36_500 {
                return Err(format!(
                    "store.{name} = {days} is over 36500 (use 0 to keep for ever)"
                ));
            }
        }
        if !(60..=86_400).contains(&self.sweep_interval_s) {
            return Err(format!(
                "store.sweep_interval_s = {} is outside 60..86400",
                self.sweep_interval_s
            ));
        }
        Ok(())
    }
}

/// The supervisor/agent websocket hub (`/ws`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Seconds a transfer prompt may stay unanswered before it is re-sent, escalated, to
    /// every supervisor (the playbook wants a senior person on the call within minutes).
    pub alert_resend_s: u64,
    /// Messages a screen may have waiting before partial transcripts are dropped for it and,
    /// once only final messages are left, it is disconnected (close code 1008).
    pub client_queue: usize,
    /// Final transcript lines per call shown to a screen that connects mid-call.
    pub snapshot_lines: usize,
    /// Calls monitored at once (1..100000). A call past it is refused (its stream closed with
    /// a reason, counted on /metrics), so that memory stays bounded however many arrive;
    /// size it to the Whisper workers' capacity.
    pub max_calls: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            alert_resend_s: 60,
            client_queue: 1024,
            snapshot_lines: 20,
            max_calls: 100,
        }
    }
}

impl HubConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !(1..=86_400).contains(&self.alert_resend_s) {
            return bad("hub.alert_resend_s must be between 1 and 86400");
        }
        if !(16..=1_000_000).contains(&self.client_queue) {
            return bad("hub.client_queue must be between 16 and 1000000");
        }
        if self.snapshot_lines > 1000 {
            return bad("hub.snapshot_lines is at most 1000");
        }
        if !(1..=100_000).contains(&self.max_calls) {
            return bad("hub.max_calls must be between 1 and 100000");
        }
        Ok(())
    }

    /// The hub's runtime settings.
    pub fn settings(&self) -> crate::hub::state::HubSettings {
        crate::hub::state::HubSettings {
            client_queue: self.client_queue,
            alert_resend: std::time::Duration::from_secs(self.alert_resend_s),
            snapshot_lines: self.snapshot_lines,
            max_calls: self.max_calls,
        }
    }
}

/// The detectors: where the lexicon is, raised-voice and repetition settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// The lexicon file (warning words per category, both languages). When it is the
    /// default path and missing (running outside the repository), the copy built into the
    /// binary is used; any other missing path is an error.
    pub lexicon: PathBuf,
    pub raised_voice: EnergyConfig,
    pub repetition: RepetitionConfig,
}

/// The lexicon path shipped in the repository.
pub const DEFAULT_LEXICON: &str = "config/lexicon.toml";

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            lexicon: PathBuf::from(DEFAULT_LEXICON),
            raised_voice: EnergyConfig::default(),
            repetition: RepetitionConfig::default(),
        }
    }
}

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

/// The local sound card (`serve`): one input device monitored as one long call, for an agent's
/// headset or a line-in tap on a phone line. `callguard devices` lists the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// The input device: its name as `callguard devices` prints it (first column), or
    /// `default` for the system's default input. Empty: no sound-card call.
    pub name: String,
    /// Channels to capture: 1 (mono), 2 (stereo), or 0 for the device's default count (of more
    /// than two, the first two are used).
    pub channels: u16,
    /// Sample rate (Hz) to capture at, 8000..192000; 0 = the device's default rate.
    pub sample_rate: u32,
    /// The leg a mono capture carries: `customer`, `agent` or `mixed` (both parties).
    pub mono_leg: Leg,
    /// The legs on the left (0) and right (1) channel of a stereo capture.
    pub stereo_legs: [Leg; 2],
    /// The call id the sound-card call gets.
    pub call_id: String,
    /// The agent (name or extension) on the sound-card call, for agent tokens; empty = none.
    pub agent: String,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            channels: 0,
            sample_rate: 0,
            mono_leg: Leg::Mixed,
            stereo_legs: [Leg::Customer, Leg::Agent],
            call_id: "device".into(),
            agent: String::new(),
        }
    }
}

impl DeviceConfig {
    /// Checks ranges and names; called by [`Config::validate`].
    pub fn validate(&self) -> Result<(), String> {
        if self.channels > 2 {
            return Err(format!(
                "device.channels = {} must be 0 (device default), 1 or 2",
                self.channels
            ));
        }
        if self.sample_rate != 0 && !(8000..=192_000).contains(&self.sample_rate) {
            return Err(format!(
                "device.sample_rate = {} must be 0 (device default) or 8000..192000",
                self.sample_rate
            ));
        }
        if self.stereo_legs[0] == self.stereo_legs[1] {
            return Err("device.stereo_legs must name two different legs".into());
        }
        if self.stereo_legs.contains(&Leg::Mixed) {
            return Err("device.stereo_legs: each stereo channel is customer or agent".into());
        }
        if self.call_id.trim().is_empty() || self.call_id.chars().count() > 128 {
            return Err("device.call_id must be 1..128 characters".into());
        }
        for (field, value) in [
            ("name", &self.name),
            ("call_id", &self.call_id),
            ("agent", &self.agent),
        ] {
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "device.{field} must not contain control characters"
                ));
            }
        }
        Ok(())
    }
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

/// Language choice for transcription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LanguageSetting {
    En,
    Zh,
    /// Detect once per leg, among `asr.detect_languages`, then keep it.
    Auto,
}

impl LanguageSetting {
    pub fn code(self) -> Option<&'static str> {
        match self {
            LanguageSetting::En => Some("en"),
            LanguageSetting::Zh => Some("zh"),
            LanguageSetting::Auto => None,
        }
    }
}

impl std::str::FromStr for LanguageSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "en" => Ok(Self::En),
            "zh" => Ok(Self::Zh),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown language {other:?}: use en, zh or auto")),
        }
    }
}

/// Whisper transcription settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    /// The ggml model file; relative paths are relative to the working directory.
    pub model: PathBuf,
    /// `en`, `zh` or `auto`: detected once and kept, per leg offline, per call live.
    pub language: LanguageSetting,
    /// With `auto`, the languages detection may choose from (Whisper codes).
    pub detect_languages: Vec<String>,
    /// With `auto`, the shortest utterance (ms) whose detected language is kept.
    pub detect_min_ms: u32,
    /// Transcription worker threads, each with its own Whisper state; 0 = number of cores.
    pub workers: usize,
    /// CPU threads each worker gives whisper.cpp; 0 = cores divided among the workers.
    pub threads_per_worker: usize,
    /// Whole utterances that may wait for a free worker (1..10000); past it a new utterance is
    /// refused and counted, rather than letting transcription fall ever further behind.
    pub max_queued_utterances: usize,
    /// Live calls: while someone is still speaking, a partial transcript of the utterance so
    /// far is made about this often (ms, 250..10000); 0 turns partials off. Partials cost
    /// Whisper time and are the first thing skipped when transcription falls behind.
    pub partial_interval_ms: u32,
    /// Beam-search width; 1 is greedy decoding (faster, more slips on hard audio).
    pub beam_size: u32,
    /// Segments whose no-speech probability exceeds this are dropped as noise.
    pub no_speech_threshold: f32,
    /// Prompt given with Chinese so that Whisper writes simplified characters.
    pub zh_prompt: String,
    /// Phrases Whisper invents on noise; a segment that is only one of these is dropped.
    /// Matched case-insensitively, ignoring punctuation and spaces.
    pub phantom_phrases: Vec<String>,
}

impl Default for AsrConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::from("models/ggml-base.bin"),
            language: LanguageSetting::Auto,
            detect_languages: vec!["en".into(), "zh".into()],
            detect_min_ms: 1500,
            workers: 0,
            threads_per_worker: 0,
            max_queued_utterances: 64,
            partial_interval_ms: 1000,
            beam_size: 5,
            no_speech_threshold: 0.6,
            zh_prompt: "以下是普通话的句子。".into(),
            phantom_phrases: default_phantom_phrases(),
        }
    }
}

fn default_phantom_phrases() -> Vec<String> {
    [
        "Thanks for watching",
        "Thank you for watching",
        "Thanks for watching and see you next time",
        "Please subscribe",
        "Subscribe to my channel",
        "you",
        "字幕由Amara.org社群提供",
        "字幕由 Amara.org 社区提供",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "谢谢观看",
        "优优独播剧场——YoYo Television Series Exclusive",
        "中文字幕——Yo Yo Television Series Exclusive",
        "MING PAO CANADA",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The webhook (`hub::webhook`): each transfer prompt and each accept/dismiss decision is
/// POSTed as JSON to a phone system or CRM, one at a time and in order, with retries. Off while
/// `url` is empty.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed: an `http://` or `https://` URL; empty = no webhook.
    pub url: String,
    /// ms one attempt may take, connecting and reading the answer included (10..120000).
    /// Also the grace period for what is still queued at shutdown.
    pub timeout_ms: u64,
    /// Further attempts after a 5xx, 408 or 429 answer, a timeout or a connection error
    /// (0..10). Any other answer is final: 2xx delivered, the rest failed.
    pub retries: u32,
    /// ms before the first retry, doubling for each further one, each wait at most a minute
    /// (0..60000).
    pub backoff_ms: u64,
    /// HMAC-SHA256 key; when set, each POST carries `X-Callguard-Signature: sha256=<hex>` of
    /// the exact body bytes. Empty = unsigned.
    pub secret: String,
    /// Deliveries that may wait to be sent (1..65536); when full, a new one is dropped and
    /// counted rather than ever slowing a call.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 5000,
            retries: 3,
            backoff_ms: 500,
            secret: String::new(),
            queue: 256,
        }
    }
}

/// The secret is never printed.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("backoff_ms", &self.backoff_ms)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookConfig {
    /// Whether a webhook is configured at all.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks the ranges and, when set, that `url` is an absolute http(s) URL with a host.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled() {
            let url = reqwest::Url::parse(&self.url)
                .map_err(|e| format!("webhook.url {:?} is not a URL: {e}", self.url))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "webhook.url {:?} must be an http:// or https:// URL with a host",
                    self.url
                ));
            }
        }
        if !(10..=120_000).contains(&self.timeout_ms) {
            return Err(format!(
                "webhook.timeout_ms = {} is outside 10..120000",
                self.timeout_ms
            ));
        }
        if self.retries > 10 {
            return Err(format!("webhook.retries = {} is over 10", self.retries));
        }
        if self.backoff_ms > 60_000 {
            return Err(format!(
                "webhook.backoff_ms = {} is over 60000",
                self.backoff_ms
            ));
        }
        if !(1..=65_536).contains(&self.queue) {
            return Err(format!(
                "webhook.queue = {} is outside 1..65536",
                self.queue
            ));
        }
        Ok(())
    }
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

    /// Checks what serde cannot: ranges and relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.hub.validate()?;
        if self.audio.stereo_legs[0] == self.audio.stereo_legs[1] {
            return bad("audio.stereo_legs must name two different legs".into());
        }
        if self.audio.stereo_legs.contains(&Leg::Mixed) {
            return bad("audio.stereo_legs: each stereo channel is customer or agent".into());
        }
        let s = &self.segment;
        if !(0.0..=40.0).contains(&s.threshold_db) {
            return bad(format!(
                "segment.threshold_db = {} is outside 0..40",
                s.threshold_db
            ));
        }
        if !(-100.0..=0.0).contains(&s.min_level_dbfs) {
            return bad(format!(
                "segment.min_level_dbfs = {} is outside -100..0",
                s.min_level_dbfs
            ));
        }
        if s.max_utterance_ms < 1000 || s.max_utterance_ms > 30_000 {
            return bad(format!(
                "segment.max_utterance_ms = {} is outside 1000..30000 (Whisper sees 30 s at most)",
                s.max_utterance_ms
            ));
        }
        if s.hangover_ms < 50 || s.hangover_ms > 5000 {
            return bad(format!(
                "segment.hangover_ms = {} is outside 50..5000",
                s.hangover_ms
            ));
        }
        if s.preroll_ms > 1000 {
            return bad(format!(
                "segment.preroll_ms = {} is over 1000",
                s.preroll_ms
            ));
        }
        if s.min_speech_ms < 10 || s.min_speech_ms >= s.max_utterance_ms {
            return bad(format!(
                "segment.min_speech_ms = {} must be at least 10 and below max_utterance_ms",
                s.min_speech_ms
            ));
        }
        let a = &self.asr;
        if a.detect_languages.is_empty() {
            return bad("asr.detect_languages must name at least one language".into());
        }
        for lang in &a.detect_languages {
            if whisper_rs::get_lang_id(lang).is_none() {
                return bad(format!(
                    "asr.detect_languages: {lang:?} is not a Whisper language code"
                ));
            }
        }
        if !(0.0..=1.0).contains(&a.no_speech_threshold) {
            return bad(format!(
                "asr.no_speech_threshold = {} is outside 0..1",
                a.no_speech_threshold
            ));
        }
        if !(1..=16).contains(&a.beam_size) {
            return bad(format!("asr.beam_size = {} is outside 1..16", a.beam_size));
        }
        if a.workers > 64 || a.threads_per_worker > 64 {
            return bad("asr.workers and asr.threads_per_worker are at most 64".into());
        }
        if a.partial_interval_ms != 0 && !(250..=10_000).contains(&a.partial_interval_ms) {
            return bad(format!(
                "asr.partial_interval_ms = {} must be 0 (off) or 250..10000",
                a.partial_interval_ms
            ));
        }
        if !(1..=10_000).contains(&a.max_queued_utterances) {
            return bad(format!(
                "asr.max_queued_utterances = {} is outside 1..10000",
                a.max_queued_utterances
            ));
        }
        if a.zh_prompt.contains('\0') || a.phantom_phrases.iter().any(|p| p.contains('\0')) {
            return bad("asr text settings must not contain NUL characters".into());
        }
        self.detect
            .raised_voice
            .validate()
            .map_err(ConfigError::Invalid)?;
        self.detect
            .repetition
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("detect.{e}")))?;
        self.risk.validate().map_err(ConfigError::Invalid)?;
        self.webhook.validate().map_err(ConfigError::Invalid)?;
        self.device.validate().map_err(ConfigError::Invalid)?;
        self.store.validate().map_err(ConfigError::Invalid)?;
        self.redact.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The number of Whisper workers and the threads each gets, resolving the zeros.
    pub fn asr_threads(&self) -> (usize, usize) {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = if self.asr.workers == 0 {
            cores
        } else {
            self.asr.workers
        };
        let threads = if self.asr.threads_per_worker == 0 {
            (cores / workers).max(1)
        } else {
            self.asr.threads_per_worker
        };
        (workers, threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
