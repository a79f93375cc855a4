//! Speech recognition: the transcription workers that run whisper.cpp on dedicated threads, the
//! cleaning of what Whisper writes, and the `[asr]` settings. Model files (install, convert,
//! validate) are tooling and live apart, in `model`.
//!
//! | module    | what it does |
//! |-----------|--------------|
//! | `worker`  | the transcription worker pool (a shared, ordered, bounded queue) and per-leg language choice |
//! | `text`    | cleaning Whisper's output: simplified Chinese, phantom phrases, decoding loops |
//! | `model`   | Whisper model files: catalogue, ggml format, conversion, installation |

pub mod model;
pub mod text;
pub mod worker;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Live calls past capacity: a calm call's agent utterance that has waited this long (ms)
    /// for a worker is skipped (counted on /metrics), its customer's after twice as long, a
    /// watched call's agent and customer after three and four times, an escalating call's
    /// never, so that transcription lag stays bounded and the words prompts come from are
    /// kept. 0 turns this policy off, and with it the greedy decoding of calm calls' words
    /// when behind (1000..60000 otherwise).
    pub shed_finals_after_ms: u32,
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
            shed_finals_after_ms: 3000,
            partial_interval_ms: 1000,
            beam_size: 5,
            no_speech_threshold: 0.6,
            zh_prompt: "以下是普通话的句子。".into(),
            phantom_phrases: default_phantom_phrases(),
        }
    }
}

impl AsrConfig {
    /// Checks the ranges, and that every language named is one Whisper knows.
    pub fn validate(&self) -> Result<(), String> {
        let a = self;
        if a.detect_languages.is_empty() {
            return Err("asr.detect_languages must name at least one language".into());
        }
        for lang in &a.detect_languages {
            if whisper_rs::get_lang_id(lang).is_none() {
                return Err(format!(
                    "asr.detect_languages: {lang:?} is not a Whisper language code"
                ));
            }
        }
        if !(0.0..=1.0).contains(&a.no_speech_threshold) {
            return Err(format!(
                "asr.no_speech_threshold = {} is outside 0..1",
                a.no_speech_threshold
            ));
        }
        if !(1..=16).contains(&a.beam_size) {
            return Err(format!("asr.beam_size = {} is outside 1..16", a.beam_size));
        }
        if a.workers > 64 || a.threads_per_worker > 64 {
            return Err("asr.workers and asr.threads_per_worker are at most 64".into());
        }
        if a.partial_interval_ms != 0 && !(250..=10_000).contains(&a.partial_interval_ms) {
            return Err(format!(
                "asr.partial_interval_ms = {} must be 0 (off) or 250..10000",
                a.partial_interval_ms
            ));
        }
        if !(1..=10_000).contains(&a.max_queued_utterances) {
            return Err(format!(
                "asr.max_queued_utterances = {} is outside 1..10000",
                a.max_queued_utterances
            ));
        }
        if a.shed_finals_after_ms != 0 && !(1000..=60_000).contains(&a.shed_finals_after_ms) {
            return Err(format!(
                "asr.shed_finals_after_ms = {} must be 0 (never) or 1000..60000",
                a.shed_finals_after_ms
            ));
        }
        if a.zh_prompt.contains('\0') || a.phantom_phrases.iter().any(|p| p.contains('\0')) {
            return Err("asr text settings must not contain NUL characters".into());
        }
        Ok(())
    }

    /// The number of Whisper workers and the threads each gets, resolving the zeros.
    pub fn threads(&self) -> (usize, usize) {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = if self.workers == 0 {
            cores
        } else {
            self.workers
        };
        let threads = if self.threads_per_worker == 0 {
            (cores / workers).max(1)
        } else {
            self.threads_per_worker
        };
        (workers, threads)
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
