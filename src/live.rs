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
//! its consumer (the hub) must fan out without blocking.
//!
//! Whisper: finished utterances and, about once a second while someone is still speaking,
//! partial transcripts of the utterance so far (`final: false`, never fed to the detectors)
//! go to the shared pool without waiting (`AsrPool::enqueue`). The pool puts finals before
//! partials, escalating calls first, oldest first, sheds partials when it is behind and
//! refuses finals past its bound: an utterance refused there is logged and counted, and the
//! call goes on, voice signals included.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::asr::worker::{AsrError, AsrJob, AsrOutput, AsrPool, JobKind, JobMeta, LegLanguage};
use crate::audio::resample::{ResampleError, StreamResampler};
use crate::audio::{AudioChunk, Leg, PIPELINE_RATE, samples_to_ms};
use crate::config::{Config, LanguageSetting};
use crate::detect::energy::RaisedVoiceDetector;
use crate::detect::lexicon::Lexicon;
use crate::event::{Event, Transcript};
use crate::monitor::CallMonitor;
use crate::risk::Level;
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
    /// Every hosted call's task, so that shutdown can wait for the calls to drain.
    pub calls: tokio_util::task::TaskTracker,
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
    /// Counts this leg's closed utterances: a partial made for an utterance that has since
    /// closed is stale and dropped.
    utterance_seq: u64,
    /// Leg position of the last partial asked for, and whether one is in flight.
    last_partial: u64,
    partial_in_flight: bool,
}

/// What a finished Whisper job was for.
#[derive(Debug, Clone, Copy)]
struct JobTag {
    leg: Leg,
    kind: JobKind,
    /// The utterance's audio length (language detection weighs by it).
    duration_ms: u64,
    /// For partials: the utterance (`utterance_seq`) and the span it covered.
    seq: u64,
    start_ms: u64,
    end_ms: u64,
}

type AsrResult = (JobTag, Result<AsrOutput, AsrError>);

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

/// The call's side of the Whisper queue: its jobs in flight and its priority.
struct Jobs {
    set: JoinSet<AsrResult>,
    pool: Arc<AsrPool>,
    call_id: Arc<str>,
    /// Raised while the call's risk is at escalate: its jobs go first.
    urgent: Arc<AtomicBool>,
    partial_every: u64,
}

impl Jobs {
    fn submit(&mut self, job: AsrJob, tag: JobTag) -> Result<(), AsrError> {
        let meta = JobMeta {
            call_id: Arc::clone(&self.call_id),
            kind: tag.kind,
            urgent: Arc::clone(&self.urgent),
        };
        let rx = self.pool.enqueue(job, meta)?;
        self.set.spawn(async move {
            let result = rx.await.unwrap_or(Err(AsrError::Closed));
            (tag, result)
        });
        Ok(())
    }

    /// Queues a finished utterance; returns 1 when the queue refused it (overload: the words
    /// are lost, the voice signals were not).
    fn final_utterance(&mut self, state: &mut LegState, u: Utterance) -> usize {
        state.utterance_seq += 1;
        state.last_partial = 0;
        let tag = JobTag {
            leg: u.leg,
            kind: JobKind::Final,
            duration_ms: u.duration_ms(),
            seq: state.utterance_seq,
            start_ms: u.start_ms(),
            end_ms: u.end_ms(),
        };
        let job = AsrJob {
            leg: u.leg,
            start_ms: u.start_ms(),
            lang: state.language.request(),
            samples: u.samples,
        };
        match self.submit(job, tag) {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!(leg = %tag.leg, start_ms = tag.start_ms, error = %e, "utterance not transcribed");
                1
            }
        }
    }

    /// Asks for a partial transcript of the leg's open utterance when one is due: about every
    /// `partial_every` samples of speech, one at a time per leg, never for less than a second.
    fn maybe_partial(&mut self, state: &mut LegState, leg: Leg) {
        // Not before the leg's language is known: detection encodes a full 30 s window, far
        // too dear to repeat for every early look.
        if self.partial_every == 0 || state.partial_in_flight || !state.language.is_fixed() {
            return;
        }
        let Some((start, samples)) = state.segmenter.open_utterance() else {
            return;
        };
        let len = samples.len() as u64;
        if len < PIPELINE_RATE as u64 || len < state.last_partial + self.partial_every {
            return;
        }
        let tag = JobTag {
            leg,
            kind: JobKind::Partial,
            duration_ms: samples_to_ms(len, PIPELINE_RATE),
            seq: state.utterance_seq,
            start_ms: samples_to_ms(start, PIPELINE_RATE),
            end_ms: samples_to_ms(start + len, PIPELINE_RATE),
        };
        let job = AsrJob {
            leg,
            start_ms: tag.start_ms,
            lang: state.language.request(),
            samples: samples.to_vec(),
        };
        state.last_partial = len;
        // Refused partials (transcription is behind) are simply skipped: counted by the pool.
        if self.submit(job, tag).is_ok() {
            state.partial_in_flight = true;
        }
    }
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
                utterance_seq: 0,
                last_partial: 0,
                partial_in_flight: false,
            },
        );
    }
    let mut monitor = CallMonitor::new(&call_id, &ctx.cfg, Arc::clone(&ctx.lexicon));
    let mut jobs = Jobs {
        set: JoinSet::new(),
        pool: Arc::clone(&ctx.pool),
        call_id: call_id.as_str().into(),
        urgent: Arc::new(AtomicBool::new(false)),
        partial_every: ctx.cfg.asr.partial_interval_ms as u64 * PIPELINE_RATE as u64 / 1000,
    };
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
                    for u in found.utterances {
                        utterances += 1;
                        failed += jobs.final_utterance(state, u);
                    }
                    jobs.maybe_partial(state, leg);
                    let at = now(&legs);
                    for signal in found.signals {
                        out.send_all(monitor.on_signal(signal, at)).await?;
                    }
                    jobs.urgent.store(monitor.level() == Level::Escalate, Ordering::Relaxed);
                }
                Some(SourceEvent::Dtmf { digit, at_ms }) => {
                    tracing::debug!(%digit, at_ms, "dtmf");
                }
                Some(SourceEvent::Started(_)) => {}
                Some(SourceEvent::Ended(reason)) => break reason,
                None => break EndReason::Disconnected,
            },
            Some(done) = jobs.set.join_next(), if !jobs.set.is_empty() => {
                let at = now(&legs);
                failed += on_transcribed(done, &mut legs, &mut monitor, &mut out, &call_id, at).await?;
                jobs.urgent.store(monitor.level() == Level::Escalate, Ordering::Relaxed);
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
            failed += jobs.final_utterance(state, u);
        }
    }
    let end_ms = now(&legs);
    while let Some(done) = jobs.set.join_next().await {
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

/// Handles one finished Whisper job; returns 1 when a final utterance failed. A partial
/// becomes a `transcript` with `final: false` unless its utterance has closed meanwhile;
/// partials never reach the detectors.
async fn on_transcribed(
    done: Result<AsrResult, tokio::task::JoinError>,
    legs: &mut BTreeMap<Leg, LegState>,
    monitor: &mut CallMonitor,
    out: &mut Out,
    call_id: &str,
    at: u64,
) -> Result<usize, LiveError> {
    let (tag, result) = match done {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "transcription task failed");
            return Ok(1);
        }
    };
    let state = legs.get_mut(&tag.leg);
    if tag.kind == JobKind::Partial {
        let Some(state) = state else { return Ok(0) };
        state.partial_in_flight = false;
        let Ok(output) = result else {
            // Shed or superseded: the final words are on their way.
            return Ok(0);
        };
        if tag.seq != state.utterance_seq || !state.segmenter.in_speech() {
            return Ok(0);
        }
        let text = output
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            return Ok(0);
        }
        out.send(Event::Transcript(Transcript {
            call_id: call_id.to_owned(),
            leg: tag.leg,
            start_ms: tag.start_ms,
            end_ms: tag.end_ms,
            at_ms: at.max(tag.end_ms),
            text,
            lang: output.lang,
            is_final: false,
        }))
        .await?;
        return Ok(0);
    }
    let output = match result {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(leg = %tag.leg, error = %e, "utterance not transcribed");
            return Ok(1);
        }
    };
    let fixed = state.is_some_and(|state| {
        state.language.observe(tag.duration_ms, &output);
        state.language.is_fixed()
    });
    // Once per call: both parties of a call speak its language, and each detection encodes a
    // full 30 s window.
    if fixed {
        for other in legs.values_mut() {
            if !other.language.is_fixed() {
                other.language = LegLanguage::Fixed(output.lang.clone());
            }
        }
    }
    for seg in output.segments {
        let t = Transcript {
            call_id: call_id.to_owned(),
            leg: tag.leg,
            start_ms: seg.start_ms,
            end_ms: seg.end_ms,
            at_ms: at.max(seg.end_ms),
            text: seg.text,
            lang: output.lang.clone(),
            is_final: true,
        };
        let found = monitor.on_transcript(&t, t.at_ms);
        out.send(Event::Transcript(t)).await?;
        out.send_all(found).await?;
    }
    Ok(0)
}
