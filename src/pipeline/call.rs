//! One live call as an async task: source events in (from any `ingest` source), pipeline
//! events out, as the audio arrives. Per leg: streaming resampling to 16 kHz, the raised-voice
//! detector (never waits for Whisper), and the segmenter, whose utterances go to the shared
//! Whisper workers and whose speech starting and stopping goes to the turn-taking detector;
//! transcripts and signals feed the call's `CallAssessor`.
//!
//! Call time is the audio position: an event's `at_ms` is how much call audio had arrived when
//! it was known, so a transfer prompt says how long after the words it came. Each chunk's
//! `start_sample` places it: audio lost on the way is a gap the leg's time jumps over, exactly
//! as the call's recording fills it with silence, so the live times and the recording's agree.
//!
//! Channels: `input` is the source's bounded channel (a full one holds the connection reader
//! back, which is TCP backpressure to the phone system); `output` is bounded and awaited, so
//! its consumer (the daemon's egress step) holds the call back when the store is slow.
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

use crate::domain::call::{CallInfo, EndReason, SourceEvent};
use crate::domain::event::{Event, Transcript};
use crate::domain::leg::{AudioChunk, Leg, PIPELINE_RATE, samples_to_ms};
use crate::domain::signal::Signal;
use crate::pipeline::asr::LanguageSetting;
use crate::pipeline::asr::worker::{
    AsrError, AsrJob, AsrOutput, CallRisk, JobKind, JobMeta, LegLanguage, Transcriber,
};
use crate::pipeline::assess::CallAssessor;
use crate::pipeline::audio::resample::{ResampleError, StreamResampler, output_len_u64};
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::detect::energy::RaisedVoiceDetector;
use crate::pipeline::detect::lexicon::Lexicon;
use crate::pipeline::detect::turns::TurnInput;
use crate::pipeline::segment::{Segmenter, Utterance};

/// What every live call shares.
pub struct CallContext {
    pub cfg: PipelineConfig,
    pub pool: Arc<dyn Transcriber>,
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
    /// The source's sample rate.
    rate: u32,
    /// The source's next sample on this leg (`start_sample` of the chunk that would follow
    /// without a gap).
    source_next: u64,
    /// 16 kHz samples produced so far on this leg, gaps included: the leg's call time.
    position: u64,
    scratch: Vec<f32>,
    /// Counts this leg's closed utterances: a partial made for an utterance that has since
    /// closed is stale and dropped.
    utterance_seq: u64,
    /// Leg position of the last partial asked for, and whether one is in flight.
    last_partial: u64,
    partial_in_flight: bool,
    /// First sample of the open utterance, as last told to the turn-taking detector.
    open_start: Option<u64>,
    /// Whether the leg's last closed utterance was cut at the maximum length (the next one
    /// goes straight on from it).
    last_cut: bool,
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
    ctx: Arc<CallContext>,
    output: mpsc::Sender<Event>,
) -> Result<CallOutcome, LiveError> {
    // One span per call, attached to the future so it is right across awaits.
    let span = tracing::info_span!("call", call_id = %info.call_id, source = ?info.source);
    call_task(info, input, ctx, output).instrument(span).await
}

/// The call's side of the Whisper queue: its jobs in flight and its priority.
struct Jobs {
    set: JoinSet<AsrResult>,
    pool: Arc<dyn Transcriber>,
    call_id: Arc<str>,
    /// The call's risk level, which orders its jobs in the queue and keeps its words when
    /// transcription is past capacity.
    risk: CallRisk,
    partial_every: u64,
}

impl Jobs {
    fn submit(&mut self, job: AsrJob, tag: JobTag) -> Result<(), AsrError> {
        let meta = JobMeta::new(Arc::clone(&self.call_id), tag.kind, self.risk.clone());
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
    ctx: Arc<CallContext>,
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
        let state = LegState::new(leg, info.sample_rate, setting, &ctx.cfg).map_err(|source| {
            LiveError::Resample {
                call_id: call_id.clone(),
                source,
            }
        })?;
        legs.insert(leg, state);
    }
    let mut monitor = CallAssessor::new(
        &call_id,
        ctx.cfg.assessor(),
        Arc::clone(&ctx.lexicon),
        &info.legs,
    );
    let preroll_ms = ctx.cfg.segment.preroll_ms;
    let mut next_tick = 1000;
    let mut jobs = Jobs {
        set: JoinSet::new(),
        pool: Arc::clone(&ctx.pool),
        call_id: call_id.as_str().into(),
        risk: CallRisk::default(),
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
                Some(SourceEvent::Audio(chunk)) => {
                    let leg = chunk.leg;
                    let Some(state) = legs.get_mut(&leg) else {
                        tracing::debug!(%leg, "audio for a leg the call did not announce");
                        continue;
                    };
                    let found = state.push(leg, &chunk);
                    let activity = state.activity(leg, &found.utterances, preroll_ms);
                    for u in found.utterances {
                        utterances += 1;
                        failed += jobs.final_utterance(state, u);
                    }
                    jobs.maybe_partial(state, leg);
                    let at = now(&legs);
                    for signal in found.signals {
                        out.send_all(monitor.on_signal(signal, at)).await?;
                    }
                    for input in activity {
                        out.send_all(monitor.on_activity(input, at)).await?;
                    }
                    // Once a second of call audio: risk decays, silence becomes dead air.
                    if at >= next_tick {
                        out.send_all(monitor.tick(at)).await?;
                        next_tick = at + 1000;
                    }
                    jobs.risk.set(monitor.level());
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
                jobs.risk.set(monitor.level());
            }
        }
    };

    // Flush: the resamplers' tails, the last open utterances, the energy detectors.
    for (&leg, state) in legs.iter_mut() {
        let mut found = state.flush(leg);
        found.utterances.extend(state.segmenter.finish());
        found.signals.extend(state.energy.finish());
        let at = samples_to_ms(state.position, PIPELINE_RATE);
        let activity = state.activity(leg, &found.utterances, preroll_ms);
        for signal in found.signals {
            out.send_all(monitor.on_signal(signal, at)).await?;
        }
        for input in activity {
            out.send_all(monitor.on_activity(input, at)).await?;
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
    signals: Vec<Signal>,
    utterances: Vec<Utterance>,
}

impl Found {
    fn extend(&mut self, more: Found) {
        self.signals.extend(more.signals);
        self.utterances.extend(more.utterances);
    }
}

impl LegState {
    fn new(
        leg: Leg,
        rate: u32,
        setting: LanguageSetting,
        cfg: &PipelineConfig,
    ) -> Result<Self, ResampleError> {
        Ok(LegState {
            resampler: StreamResampler::new(rate, PIPELINE_RATE)?,
            segmenter: Segmenter::new(leg, &cfg.segment),
            energy: RaisedVoiceDetector::new(leg, &cfg.detect.raised_voice),
            language: LegLanguage::new(setting, &cfg.asr),
            rate,
            source_next: 0,
            position: 0,
            scratch: Vec::new(),
            utterance_seq: 0,
            last_partial: 0,
            partial_in_flight: false,
            open_start: None,
            last_cut: false,
        })
    }

    /// What the turn-taking detector learns from a push: the utterances it closed, then an
    /// utterance newly open.
    fn activity(&mut self, leg: Leg, closed: &[Utterance], preroll_ms: u32) -> Vec<TurnInput> {
        let mut out = Vec::new();
        for u in closed {
            let (start_ms, end_ms) = u.speech_ms(preroll_ms, self.last_cut);
            self.last_cut = u.cut;
            out.push(TurnInput::Closed {
                leg,
                start_ms,
                end_ms,
            });
        }
        let open = self.segmenter.open_utterance().map(|(start, _)| start);
        if open != self.open_start {
            if let Some(start) = open {
                let preroll = if self.last_cut {
                    0
                } else {
                    u64::from(preroll_ms)
                };
                out.push(TurnInput::Opened {
                    leg,
                    start_ms: samples_to_ms(start, PIPELINE_RATE) + preroll,
                });
            }
            self.open_start = open;
        }
        out
    }

    /// Takes one chunk of the source's audio for this leg: resampled, heard by the voice
    /// detector and cut by the segmenter. `start_sample` places it in the call, as it places it
    /// in the recording: audio the leg already had is skipped, and a gap (audio lost on the
    /// way: a sound card that dropped frames, a phone system's outage) moves the leg's time on
    /// rather than shifting everything after it earlier.
    fn push(&mut self, leg: Leg, chunk: &AudioChunk) -> Found {
        let mut samples = chunk.samples.as_slice();
        let mut found = Found::default();
        if chunk.start_sample < self.source_next {
            let seen = usize::try_from(self.source_next - chunk.start_sample)
                .map_or(samples.len(), |n| n.min(samples.len()));
            samples = &samples[seen..];
        } else if chunk.start_sample > self.source_next {
            found = self.skip_to(leg, chunk.start_sample);
        }
        if samples.is_empty() {
            return found;
        }
        self.source_next += samples.len() as u64;
        self.scratch.clear();
        self.resampler.process(samples, &mut self.scratch);
        found.extend(self.feed(leg));
        found
    }

    /// A gap until the source's sample `start_sample`: what was heard before it is finished
    /// (the resampler's tail, an open utterance), then the leg's time jumps to where the next
    /// audio belongs. The gap itself is not processed: it is not silence on the line, it is
    /// nothing, and feeding zeros would drag the noise floor down.
    fn skip_to(&mut self, leg: Leg, start_sample: u64) -> Found {
        let mut found = self.flush(leg);
        let target = output_len_u64(start_sample, self.rate, PIPELINE_RATE);
        let jump = target.saturating_sub(self.position);
        found.utterances.extend(self.segmenter.skip(jump));
        self.position += jump;
        self.source_next = start_sample;
        found
    }

    /// The resampler's tail through the detector and the segmenter (end of the leg, or of the
    /// audio before a gap); the resampler is then ready for a new stretch.
    fn flush(&mut self, leg: Leg) -> Found {
        self.scratch.clear();
        self.resampler.flush(&mut self.scratch);
        self.feed(leg)
    }

    /// Runs the 16 kHz samples in the scratch buffer through the detector and segmenter.
    fn feed(&mut self, leg: Leg) -> Found {
        let mut found = Found::default();
        if self.scratch.is_empty() {
            return found;
        }
        let samples = std::mem::take(&mut self.scratch);
        let chunk = AudioChunk {
            leg,
            start_sample: self.position,
            samples,
        };
        found.signals = self.energy.update(&chunk);
        found.utterances = self.segmenter.push(&chunk.samples);
        self.position += chunk.samples.len() as u64;
        self.scratch = chunk.samples;
        found
    }
}

/// Handles one finished Whisper job; returns 1 when a final utterance failed. A partial
/// becomes a `transcript` with `final: false` unless its utterance has closed meanwhile;
/// partials never reach the detectors.
async fn on_transcribed(
    done: Result<AsrResult, tokio::task::JoinError>,
    legs: &mut BTreeMap<Leg, LegState>,
    monitor: &mut CallAssessor,
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
        // Shed past capacity: by policy, counted by the pool, not worth a warning each.
        Err(AsrError::Shed) => {
            tracing::debug!(leg = %tag.leg, start_ms = tag.start_ms, "utterance shed");
            return Ok(1);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;

    /// `secs` of a voiced tone (speech to the segmenter) or of faint line noise, at 8 kHz.
    fn sound(secs: f32, voiced: bool, seed: &mut u32) -> Vec<f32> {
        (0..(secs * RATE as f32) as usize)
            .map(|i| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (*seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5;
                let t = i as f32 / RATE as f32;
                let tone = if voiced {
                    0.3 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                        + 0.15 * (2.0 * std::f32::consts::PI * 540.0 * t).sin()
                } else {
                    0.0
                };
                tone + 0.002 * noise
            })
            .collect()
    }

    /// Two stretches of "speech", each with line noise around it.
    fn halves() -> (Vec<f32>, Vec<f32>) {
        let mut seed = 7;
        let half = |seed: &mut u32| {
            let mut v = sound(0.6, false, seed);
            v.extend(sound(1.0, true, seed));
            v.extend(sound(1.2, false, seed));
            v
        };
        let a = half(&mut seed);
        let b = half(&mut seed);
        (a, b)
    }

    /// Feeds `(start_sample, samples)` chunks to one leg; the utterances' (start, end) in ms.
    fn utterances(chunks: &[(u64, Vec<f32>)]) -> Vec<(u64, u64)> {
        let cfg = PipelineConfig::default();
        let mut leg = LegState::new(Leg::Customer, RATE, LanguageSetting::En, &cfg).unwrap();
        let mut found = Vec::new();
        for (start, samples) in chunks {
            let chunk = AudioChunk {
                leg: Leg::Customer,
                start_sample: *start,
                samples: samples.clone(),
            };
            found.extend(leg.push(Leg::Customer, &chunk).utterances);
        }
        found.extend(leg.flush(Leg::Customer).utterances);
        found.extend(leg.segmenter.finish());
        found.iter().map(|u| (u.start_ms(), u.end_ms())).collect()
    }

    /// 20 ms chunks of `samples` from source sample `at` on.
    fn frames(samples: &[f32], at: u64) -> Vec<(u64, Vec<f32>)> {
        samples
            .chunks(160)
            .enumerate()
            .map(|(i, c)| (at + i as u64 * 160, c.to_vec()))
            .collect()
    }

    #[test]
    fn a_gap_in_the_audio_moves_the_leg_on_as_the_recording_does() {
        let (a, b) = halves();
        let after_a = a.len() as u64;
        let contiguous = {
            let mut c = frames(&a, 0);
            c.extend(frames(&b, after_a));
            utterances(&c)
        };
        assert_eq!(contiguous.len(), 2, "{contiguous:?}");
        // 3 s of audio lost between the halves: the source's `start_sample` jumps over them,
        // and the recording fills them with silence.
        let gap = 3 * RATE as u64;
        let with_gap = {
            let mut c = frames(&a, 0);
            c.extend(frames(&b, after_a + gap));
            utterances(&c)
        };
        assert_eq!(with_gap.len(), 2, "{with_gap:?}");
        assert_eq!(with_gap[0], contiguous[0]);
        for (live, rec) in [
            (with_gap[1].0, contiguous[1].0 + 3000),
            (with_gap[1].1, contiguous[1].1 + 3000),
        ] {
            assert!(
                live.abs_diff(rec) <= 20,
                "{with_gap:?} vs {contiguous:?} + 3 s"
            );
        }
        // The second utterance begins where the recording has it: 0.6 s into the second half.
        let expected = (after_a + gap) * 1000 / RATE as u64 + 600;
        assert!(
            with_gap[1].0.abs_diff(expected) <= 300,
            "{} ms, expected about {expected} ms",
            with_gap[1].0
        );
    }

    #[test]
    fn a_gap_inside_an_utterance_ends_it_where_the_audio_stopped() {
        let mut seed = 3;
        let mut v = sound(0.6, false, &mut seed);
        v.extend(sound(1.0, true, &mut seed));
        let cut = v.len() as u64;
        let mut rest = sound(1.0, true, &mut seed);
        rest.extend(sound(1.2, false, &mut seed));
        let mut c = frames(&v, 0);
        c.extend(frames(&rest, cut + 2 * RATE as u64));
        let u = utterances(&c);
        assert_eq!(u.len(), 2, "{u:?}");
        assert!(u[0].1 <= cut * 1000 / RATE as u64 + 20, "{u:?}");
        assert!(
            u[1].0 >= (cut + 2 * RATE as u64) * 1000 / RATE as u64 - 300,
            "{u:?}"
        );
    }

    #[test]
    fn audio_the_leg_already_had_is_not_heard_twice() {
        let (a, b) = halves();
        let mut clean = frames(&a, 0);
        clean.extend(frames(&b, a.len() as u64));
        let mut repeated = Vec::new();
        for (i, chunk) in clean.iter().enumerate() {
            repeated.push(chunk.clone());
            // Every tenth chunk comes twice, and a stale one from further back once.
            if i % 10 == 0 {
                repeated.push(chunk.clone());
            }
            if i == 50 {
                repeated.push(clean[20].clone());
            }
        }
        assert_eq!(utterances(&repeated), utterances(&clean));
    }
}
