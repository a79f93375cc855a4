//! One live call as an async task: source events in (from any `source` session), pipeline
//! events out, as the audio arrives. Per leg: streaming resampling to 16 kHz, the raised-voice
//! detector (never waits for Whisper), and the segmenter, whose utterances go to the shared
//! Whisper workers; transcripts and signals feed the call's `CallMonitor`.
//!
//! Call time is the audio position: an event's `at_ms` is how much call audio had arrived when
//! it was known, so a transfer prompt says how long after the words it came.
//!
//! Channels: `input` is the source's bounded channel (a full one holds the connection reader
//! back, which is TCP backpressure to the phone system); `output` is bounded and awaited, so
//! its consumer (the hub) must fan out without blocking. Whisper jobs wait on the worker pool's
//! bounded queue on the blocking thread pool, never on the async runtime.
//!
//! Not here yet: partial transcripts of an utterance still being spoken, and priority between
//! calls in the Whisper queue (oldest first, escalating calls ahead); both come with `serve`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::asr::worker::{AsrError, AsrJob, AsrOutput, AsrPool, LegLanguage};
use crate::audio::resample::{ResampleError, StreamResampler};
use crate::audio::{AudioChunk, Leg, PIPELINE_RATE, samples_to_ms};
use crate::config::{Config, LanguageSetting};
use crate::detect::energy::RaisedVoiceDetector;
use crate::detect::lexicon::Lexicon;
use crate::event::{Event, Transcript};
use crate::monitor::CallMonitor;
use crate::segment::{Segmenter, Utterance};
use crate::source::{CallInfo, EndReason, SourceEvent};

/// What every live call shares.
pub struct LiveContext {
    pub cfg: Config,
    pub pool: Arc<AsrPool>,
    pub lexicon: Arc<Lexicon>,
    /// Overrides the config's language for every call (`serve --lang`); a source's metadata
    /// language overrides both.
    pub lang: Option<LanguageSetting>,
}

/// How a call's task ended.
#[derive(Debug)]
pub struct CallOutcome {
    pub call_id: String,
    pub duration_ms: u64,
    pub end: EndReason,
    pub utterances: usize,
    /// Utterances whose transcription failed (logged; the call went on without their words).
    pub failed_utterances: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("call {call_id}: {source}")]
    Resample {
        call_id: String,
        source: ResampleError,
    },
    #[error("call {call_id}: the event consumer has gone away")]
    OutputClosed { call_id: String },
}

struct LegState {
    resampler: StreamResampler,
    segmenter: Segmenter,
    energy: RaisedVoiceDetector,
    language: LegLanguage,
    /// 16 kHz samples produced so far on this leg.
    position: u64,
    scratch: Vec<f32>,
}

type AsrResult = (Leg, u64, Result<AsrOutput, AsrError>);

/// Runs one call until its source ends (an `Ended` event or a closed channel), then flushes:
/// the last utterances are transcribed, and the summary is the last event sent.
pub async fn run_call(
    info: CallInfo,
    input: mpsc::Receiver<SourceEvent>,
    ctx: Arc<LiveContext>,
    output: mpsc::Sender<Event>,
) -> Result<CallOutcome, LiveError> {
    // One span per call, attached to the future so it is right across awaits.
    let span = tracing::info_span!("call", call_id = %info.call_id, source = ?info.source);
    call_task(info, input, ctx, output).instrument(span).await
}

async fn call_task(
    info: CallInfo,
    mut input: mpsc::Receiver<SourceEvent>,
    ctx: Arc<LiveContext>,
    output: mpsc::Sender<Event>,
) -> Result<CallOutcome, LiveError> {
    let call_id = info.call_id.clone();
    let setting = info
        .lang
        .as_deref()
        .and_then(|l| l.parse::<LanguageSetting>().ok())
        .or(ctx.lang)
        .unwrap_or(ctx.cfg.asr.language);
    let mut legs: BTreeMap<Leg, LegState> = BTreeMap::new();
    for &leg in &info.legs {
        let resampler =
            StreamResampler::new(info.sample_rate, PIPELINE_RATE).map_err(|source| {
                LiveError::Resample {
                    call_id: call_id.clone(),
                    source,
                }
            })?;
        legs.insert(
            leg,
            LegState {
                resampler,
                segmenter: Segmenter::new(leg, &ctx.cfg.segment),
                energy: RaisedVoiceDetector::new(leg, &ctx.cfg.detect.raised_voice),
                language: LegLanguage::new(setting, &ctx.cfg.asr),
                position: 0,
                scratch: Vec::new(),
            },
        );
    }
    let mut monitor = CallMonitor::new(&call_id, &ctx.cfg, Arc::clone(&ctx.lexicon));
    let mut jobs: JoinSet<AsrResult> = JoinSet::new();
    let mut out = Out {
        tx: output,
        call_id: call_id.clone(),
    };
    let mut utterances = 0;
    let mut failed = 0;
    let now = |legs: &BTreeMap<Leg, LegState>| {
        legs.values()
            .map(|l| samples_to_ms(l.position, PIPELINE_RATE))
            .max()
            .unwrap_or(0)
    };
    tracing::info!(legs = ?info.legs, rate = info.sample_rate, "call started");

    let end = loop {
        tokio::select! {
            ev = input.recv() => match ev {
                Some(SourceEvent::Audio { leg, samples, .. }) => {
                    let Some(state) = legs.get_mut(&leg) else {
                        tracing::debug!(%leg, "audio for a leg the call did not announce");
                        continue;
                    };
                    state.scratch.clear();
                    state.resampler.process(&samples, &mut state.scratch);
                    let found = feed_leg(state, leg);
                    let at = now(&legs);
                    for signal in found.signals {
                        out.send_all(monitor.on_signal(signal, at)).await?;
                    }
                    for u in found.utterances {
                        utterances += 1;
                        submit(&mut jobs, &ctx.pool, &legs, u);
                    }
                }
                Some(SourceEvent::Dtmf { digit, at_ms }) => {
                    tracing::debug!(%digit, at_ms, "dtmf");
                }
                Some(SourceEvent::Started(_)) => {}
                Some(SourceEvent::Ended(reason)) => break reason,
                None => break EndReason::Disconnected,
            },
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                let at = now(&legs);
                failed += on_transcribed(done, &mut legs, &mut monitor, &mut out, &call_id, at).await?;
            }
        }
    };

    // Flush: the resamplers' tails, the last open utterances, the energy detectors.
    for (&leg, state) in legs.iter_mut() {
        state.scratch.clear();
        state.resampler.flush(&mut state.scratch);
        let mut found = feed_leg(state, leg);
        found.utterances.extend(state.segmenter.finish());
        found.signals.extend(state.energy.finish());
        let at = samples_to_ms(state.position, PIPELINE_RATE);
        for signal in found.signals {
            out.send_all(monitor.on_signal(signal, at)).await?;
        }
        for u in found.utterances {
            utterances += 1;
            let job = AsrJob {
                leg,
                start_ms: u.start_ms(),
                lang: state.language.request(),
                samples: u.samples,
            };
            spawn_job(&mut jobs, &ctx.pool, job);
        }
    }
    let end_ms = now(&legs);
    while let Some(done) = jobs.join_next().await {
        failed += on_transcribed(done, &mut legs, &mut monitor, &mut out, &call_id, end_ms).await?;
    }
    out.send(monitor.finish(end_ms)).await?;
    tracing::info!(duration_ms = end_ms, utterances, failed, ?end, "call ended");
    Ok(CallOutcome {
        call_id,
        duration_ms: end_ms,
        end,
        utterances,
        failed_utterances: failed,
    })
}

struct Out {
    tx: mpsc::Sender<Event>,
    call_id: String,
}

impl Out {
    async fn send(&mut self, e: Event) -> Result<(), LiveError> {
        self.tx.send(e).await.map_err(|_| LiveError::OutputClosed {
            call_id: self.call_id.clone(),
        })
    }
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), LiveError> {
        for e in events {
            self.send(e).await?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Found {
    signals: Vec<crate::detect::Signal>,
    utterances: Vec<Utterance>,
}

/// Runs the 16 kHz samples in the leg's scratch buffer through its detector and segmenter.
fn feed_leg(state: &mut LegState, leg: Leg) -> Found {
    let mut found = Found::default();
    if state.scratch.is_empty() {
        return found;
    }
    let samples = std::mem::take(&mut state.scratch);
    let chunk = AudioChunk {
        leg,
        start_sample: state.position,
        samples,
    };
    found.signals = state.energy.update(&chunk);
    found.utterances = state.segmenter.push(&chunk.samples);
    state.position += chunk.samples.len() as u64;
    state.scratch = chunk.samples;
    found
}

fn submit(
    jobs: &mut JoinSet<AsrResult>,
    pool: &Arc<AsrPool>,
    legs: &BTreeMap<Leg, LegState>,
    u: Utterance,
) {
    let lang = legs
        .get(&u.leg)
        .map(|s| s.language.request())
        .unwrap_or(crate::asr::worker::LangRequest::Fixed("en".into()));
    let job = AsrJob {
        leg: u.leg,
        start_ms: u.start_ms(),
        lang,
        samples: u.samples,
    };
    spawn_job(jobs, pool, job);
}

fn spawn_job(jobs: &mut JoinSet<AsrResult>, pool: &Arc<AsrPool>, job: AsrJob) {
    let pool = Arc::clone(pool);
    let leg = job.leg;
    let duration = samples_to_ms(job.samples.len() as u64, PIPELINE_RATE);
    // Waiting for a worker blocks, so it happens on the blocking pool.
    jobs.spawn_blocking(move || (leg, duration, pool.transcribe_blocking(job)));
}

/// Handles one finished Whisper job; returns 1 when it failed.
async fn on_transcribed(
    done: Result<AsrResult, tokio::task::JoinError>,
    legs: &mut BTreeMap<Leg, LegState>,
    monitor: &mut CallMonitor,
    out: &mut Out,
    call_id: &str,
    at: u64,
) -> Result<usize, LiveError> {
    let (leg, duration, result) = match done {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "transcription task failed");
            return Ok(1);
        }
    };
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(%leg, error = %e, "utterance not transcribed");
            return Ok(1);
        }
    };
    if let Some(state) = legs.get_mut(&leg) {
        state.language.observe(duration, &output);
    }
    for seg in output.segments {
        let t = Transcript {
            call_id: call_id.to_owned(),
            leg,
            start_ms: seg.start_ms,
            end_ms: seg.end_ms,
            at_ms: at.max(seg.end_ms),
            text: seg.text,
            lang: output.lang.clone(),
        };
        let found = monitor.on_transcript(&t, t.at_ms);
        out.send(Event::Transcript(t)).await?;
        out.send_all(found).await?;
    }
    Ok(0)
}
