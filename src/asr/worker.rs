//! Whisper transcription workers: whisper.cpp runs on dedicated OS threads, never on the async
//! runtime, over one shared, once-loaded model; each job gets a fresh `WhisperState`.
//!
//! Callers submit an utterance (16 kHz samples with its call-relative start) and get the answer
//! on a oneshot channel, which works from plain threads (`blocking_recv`) and from async tasks
//! alike. The job queue is bounded: `submit` waits for room, `try_submit` says `QueueFull`, so
//! the caller decides what to shed. This module does not segment audio, and keeps no per-call
//! state: a leg's language choice lives with the caller (`LegLanguage`).

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::ggml::{self, ModelError, ModelInfo};
use super::text::{PhantomFilter, strip_prompt_echo, tidy};
use crate::audio::{Leg, PIPELINE_RATE};
use crate::config::AsrConfig;

/// whisper.cpp ignores input shorter than 100 mel frames (1 s): pad up to a little more.
const MIN_SAMPLES: usize = PIPELINE_RATE as usize * 105 / 100;
/// whisper.cpp's full encoder window: 1500 frames, 30 s.
const FULL_AUDIO_CTX: usize = 1500;

/// Errors from loading the model or running it.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("whisper could not load {path}: {message}")]
    Load { path: String, message: String },
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("transcription queue is full")]
    QueueFull,
    #[error("transcription workers have stopped")]
    Closed,
    #[error("no audio to transcribe")]
    Empty,
}

/// Which language to transcribe a job in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LangRequest {
    /// A Whisper language code, e.g. `en` or `zh`.
    Fixed(String),
    /// Detect the language, choosing among these codes only.
    Detect(Vec<String>),
}

/// One utterance to transcribe.
#[derive(Debug, Clone)]
pub struct AsrJob {
    pub leg: Leg,
    /// Call-relative time of the first sample.
    pub start_ms: u64,
    /// Mono samples at 16 kHz.
    pub samples: Vec<f32>,
    pub lang: LangRequest,
}

/// A piece of text with call-relative times.
#[derive(Debug, Clone, PartialEq)]
pub struct AsrSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// What a job produced.
#[derive(Debug, Clone)]
pub struct AsrOutput {
    /// The language the text is in (fixed, or detected for this job).
    pub lang: String,
    /// Set when this job detected its language, with the winning probability.
    pub detected: Option<f32>,
    pub segments: Vec<AsrSegment>,
    /// Segments dropped as phantom text or non-speech.
    pub dropped: usize,
    /// Wall time spent in whisper.cpp for this job.
    pub compute_ms: u64,
}

/// Settings the workers need, resolved from the config.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub workers: usize,
    pub threads: usize,
    pub queue: usize,
    pub beam_size: u32,
    pub no_speech_threshold: f32,
    pub zh_prompt: String,
    pub phantoms: PhantomFilter,
}

impl WorkerSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let (workers, threads) = cfg.asr_threads();
        Self {
            workers,
            threads,
            queue: 64,
            beam_size: cfg.asr.beam_size,
            no_speech_threshold: cfg.asr.no_speech_threshold,
            zh_prompt: cfg.asr.zh_prompt.clone(),
            phantoms: PhantomFilter::new(&cfg.asr.phantom_phrases),
        }
    }
}

/// A loaded model, validated before whisper.cpp sees it (whisper.cpp aborts the process on
/// some malformed files, so a bad file must be caught here).
pub struct Model {
    pub info: ModelInfo,
    ctx: WhisperContext,
}

impl Model {
    pub fn load(path: &Path) -> Result<Arc<Model>, AsrError> {
        let info = ggml::validate(path)?;
        whisper_rs::install_logging_hooks();
        let path_str = path.to_str().ok_or_else(|| AsrError::Load {
            path: path.display().to_string(),
            message: "path is not valid UTF-8".into(),
        })?;
        let ctx = WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
            .map_err(|e| AsrError::Load {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Arc::new(Model { info, ctx }))
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }
}

type Reply = oneshot::Sender<Result<AsrOutput, AsrError>>;

struct Task {
    job: AsrJob,
    reply: Reply,
}

/// A fixed set of transcription threads sharing one model.
pub struct AsrPool {
    tx: Option<SyncSender<Task>>,
    handles: Vec<JoinHandle<()>>,
    model: Arc<Model>,
}

impl AsrPool {
    /// Starts the workers; each creates its Whisper state before this returns.
    pub fn start(model: Arc<Model>, settings: WorkerSettings) -> Result<Self, AsrError> {
        let (tx, rx) = sync_channel::<Task>(settings.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let settings = Arc::new(settings);
        let mut handles = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), AsrError>>();
        for i in 0..settings.workers.max(1) {
            let model = Arc::clone(&model);
            let rx = Arc::clone(&rx);
            let settings = Arc::clone(&settings);
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || worker_main(model, rx, settings, ready))
                .map_err(|e| AsrError::Whisper(format!("cannot start worker thread: {e}")))?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut pool = Self {
            tx: Some(tx),
            handles,
            model,
        };
        for _ in 0..pool.handles.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    pool.shutdown();
                    return Err(AsrError::Closed);
                }
            }
        }
        Ok(pool)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Queues a job, waiting for room when the queue is full. Call from a plain thread.
    pub fn submit(
        &self,
        job: AsrJob,
    ) -> Result<oneshot::Receiver<Result<AsrOutput, AsrError>>, AsrError> {
        let tx = self.tx.as_ref().ok_or(AsrError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Task { job, reply }).map_err(|_| AsrError::Closed)?;
        Ok(rx)
    }

    /// Queues a job or says the queue is full, without waiting.
    pub fn try_submit(
        &self,
        job: AsrJob,
    ) -> Result<oneshot::Receiver<Result<AsrOutput, AsrError>>, AsrError> {
        let tx = self.tx.as_ref().ok_or(AsrError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.try_send(Task { job, reply }).map_err(|e| match e {
            TrySendError::Full(_) => AsrError::QueueFull,
            TrySendError::Disconnected(_) => AsrError::Closed,
        })?;
        Ok(rx)
    }

    /// Transcribes one job and waits for it (plain threads only, not async tasks).
    pub fn transcribe_blocking(&self, job: AsrJob) -> Result<AsrOutput, AsrError> {
        self.submit(job)?
            .blocking_recv()
            .map_err(|_| AsrError::Closed)?
    }

    fn shutdown(&mut self) {
        // Dropping the sender lets each worker finish its current job and exit.
        self.tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for AsrPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    model: Arc<Model>,
    settings: Arc<WorkerSettings>,
    /// Decoding parameters per language, built once: whisper-rs leaks the C strings it makes
    /// for the language and prompt, so building them per job would leak per utterance.
    params: Vec<(String, FullParams<'static, 'static>)>,
}

fn worker_main(
    model: Arc<Model>,
    rx: Arc<Mutex<Receiver<Task>>>,
    settings: Arc<WorkerSettings>,
    ready: std::sync::mpsc::Sender<Result<(), AsrError>>,
) {
    let mut worker = Worker {
        model,
        settings,
        params: Vec::new(),
    };
    // Fail at start rather than on the first call if a state cannot be made at all.
    if let Err(e) = worker.fresh_state() {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    loop {
        // The lock is held only while waiting for the next task, never while transcribing.
        let task = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(Task { job, reply }) = task else {
            return;
        };
        let result = worker.run(job);
        // The caller may have gone away (a call ended); its answer is simply not needed.
        let _ = reply.send(result);
    }
}

impl Worker {
    /// A new Whisper state for one job. whisper.cpp keeps a random generator in each state
    /// for its temperature fallback, so a reused state makes the text of an utterance depend
    /// on the utterances decoded before it; a fresh one (about 20 ms) makes the same audio
    /// always give the same text.
    fn fresh_state(&self) -> Result<WhisperState, AsrError> {
        self.model
            .ctx
            .create_state()
            .map_err(|e| AsrError::Whisper(format!("cannot create a whisper state: {e}")))
    }

    fn params_for(&mut self, lang: &str) -> FullParams<'static, 'static> {
        if let Some((_, p)) = self.params.iter().find(|(l, _)| l == lang) {
            return p.clone();
        }
        let strategy = if self.settings.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.settings.beam_size as i32,
                // whisper.cpp ignores patience; -1 is its "unset".
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 2 }
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(self.settings.threads as i32);
        p.set_language(Some(leak_str(lang)));
        p.set_translate(false);
        // Each utterance stands alone: carrying text over lets one hallucination seed the next.
        p.set_no_context(true);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(self.settings.no_speech_threshold);
        if lang == "zh" && !self.settings.zh_prompt.is_empty() {
            p.set_initial_prompt(&self.settings.zh_prompt);
        }
        self.params.push((lang.to_owned(), p.clone()));
        p
    }

    fn detect(&mut self, samples: &[f32], allowed: &[String]) -> Result<(String, f32), AsrError> {
        if !self.model.is_multilingual() {
            return Ok(("en".into(), 1.0));
        }
        // A fresh state encodes the full 30 s window; language detection needs no speed-up
        // from a short context and runs once per leg.
        let mut state = self.fresh_state()?;
        let threads = self.settings.threads;
        state
            .pcm_to_mel(samples, threads)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        let (_, probs) = state
            .lang_detect(0, threads)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        let best = allowed
            .iter()
            .filter_map(|code| {
                let id = whisper_rs::get_lang_id(code)?;
                Some((code.clone(), *probs.get(id as usize)?))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        best.ok_or_else(|| AsrError::Whisper("no allowed language to detect".into()))
    }

    fn run(&mut self, job: AsrJob) -> Result<AsrOutput, AsrError> {
        if job.samples.is_empty() {
            return Err(AsrError::Empty);
        }
        let started = Instant::now();
        let real_len = job.samples.len();
        let mut samples = job.samples;
        if samples.len() < MIN_SAMPLES {
            samples.resize(MIN_SAMPLES, 0.0);
        }
        let (lang, detected) = match &job.lang {
            LangRequest::Fixed(l) => (l.clone(), None),
            LangRequest::Detect(allowed) => {
                let (l, p) = self.detect(&samples, allowed)?;
                (l, Some(p))
            }
        };
        let mut params = self.params_for(&lang);
        params.set_audio_ctx(audio_ctx_for(samples.len()) as i32);
        let mut state = self.fresh_state()?;
        state
            .full(params, &samples)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;

        let real_ms = (real_len as u64 * 1000) / PIPELINE_RATE as u64;
        let mut segments = Vec::new();
        let mut dropped = 0;
        for seg in state.as_iter() {
            let text = match seg.to_str_lossy() {
                Ok(t) if lang == "zh" => {
                    strip_prompt_echo(&tidy(&t, &lang), &self.settings.zh_prompt)
                }
                Ok(t) => tidy(&t, &lang),
                Err(_) => {
                    dropped += 1;
                    continue;
                }
            };
            if seg.no_speech_probability() > self.settings.no_speech_threshold
                || self.settings.phantoms.is_phantom(&text)
            {
                dropped += 1;
                continue;
            }
            // whisper.cpp times are in 10 ms units from the start of the (padded) input.
            let t0 = (seg.start_timestamp().max(0) as u64 * 10).min(real_ms);
            let t1 = (seg.end_timestamp().max(0) as u64 * 10).clamp(t0, real_ms);
            segments.push(AsrSegment {
                start_ms: job.start_ms + t0,
                end_ms: job.start_ms + t1,
                text,
            });
        }
        Ok(AsrOutput {
            lang,
            detected,
            segments,
            dropped,
            compute_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// The encoder context for an input of `n` samples: about twice its length in encoder frames
/// (50 a second). Exactly its length makes whisper.cpp loop or ramble; the full 1500 frames
/// costs 5-6x more on short utterances for the same text.
pub fn audio_ctx_for(n: usize) -> usize {
    let frames = (n * 50).div_ceil(PIPELINE_RATE as usize);
    (frames * 2).clamp(128, FULL_AUDIO_CTX)
}

/// whisper-rs keeps the language as a `&'a str` it converts on use; the few language codes a
/// worker ever sees are leaked once each (params are cached per language).
fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The language state of one leg: fixed, or detected once on the first long-enough utterance
/// and then kept.
#[derive(Debug, Clone, PartialEq)]
pub enum LegLanguage {
    Fixed(String),
    Pending { allowed: Vec<String>, min_ms: u64 },
}

impl LegLanguage {
    pub fn new(setting: crate::config::LanguageSetting, cfg: &AsrConfig) -> Self {
        match setting.code() {
            Some(code) => LegLanguage::Fixed(code.to_owned()),
            None => LegLanguage::Pending {
                allowed: cfg.detect_languages.clone(),
                min_ms: cfg.detect_min_ms as u64,
            },
        }
    }

    /// What to ask for an utterance of `duration_ms`.
    pub fn request(&self) -> LangRequest {
        match self {
            LegLanguage::Fixed(l) => LangRequest::Fixed(l.clone()),
            LegLanguage::Pending { allowed, .. } => LangRequest::Detect(allowed.clone()),
        }
    }

    /// Records a job's result: a detection on a long-enough utterance fixes the leg.
    pub fn observe(&mut self, duration_ms: u64, out: &AsrOutput) {
        if let LegLanguage::Pending { min_ms, .. } = self
            && out.detected.is_some()
            && duration_ms >= *min_ms
        {
            *self = LegLanguage::Fixed(out.lang.clone());
        }
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, LegLanguage::Fixed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LanguageSetting};

    #[test]
    fn audio_ctx_is_twice_the_length_within_bounds() {
        assert_eq!(audio_ctx_for(16_000 * 3), 300);
        assert_eq!(audio_ctx_for(16_000), 128);
        assert_eq!(audio_ctx_for(16_000 * 29), 1500);
    }

    fn output(lang: &str, detected: Option<f32>) -> AsrOutput {
        AsrOutput {
            lang: lang.into(),
            detected,
            segments: vec![],
            dropped: 0,
            compute_ms: 0,
        }
    }

    #[test]
    fn leg_language_is_kept_after_one_long_detection() {
        let cfg = Config::default();
        let mut l = LegLanguage::new(LanguageSetting::Auto, &cfg.asr);
        assert!(matches!(l.request(), LangRequest::Detect(ref a) if a == &["en", "zh"]));
        // A short utterance's detection is used for it alone.
        l.observe(800, &output("zh", Some(0.6)));
        assert!(!l.is_fixed());
        l.observe(2500, &output("en", Some(0.9)));
        assert_eq!(l, LegLanguage::Fixed("en".into()));
        assert_eq!(l.request(), LangRequest::Fixed("en".into()));
    }

    #[test]
    fn fixed_language_never_detects() {
        let cfg = Config::default();
        let l = LegLanguage::new(LanguageSetting::Zh, &cfg.asr);
        assert_eq!(l.request(), LangRequest::Fixed("zh".into()));
    }
}
