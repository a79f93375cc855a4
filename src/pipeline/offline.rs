//! The offline pipeline: one recorded call in, its events out, in call-time order.
//!
//! decode WAV -> split into legs -> resample each to 16 kHz -> segment -> transcribe on the
//! worker pool -> transcript events; the raised-voice detector hears each leg, and the
//! segmenter's speech stretches are replayed to the turn-taking detector as a live call would
//! have known them. Legs run side by side on their own threads; within a leg,
//! utterances go to Whisper one at a time until the leg's language is settled, then all at
//! once so that idle workers are used. The live call (`call`) runs the same stages as audio
//! arrives; printing the events is the CLI's (`cli::format`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::event::{Event, Transcript, sort_events};
use crate::domain::leg::{AudioChunk, Leg, PIPELINE_RATE};
use crate::domain::signal::Signal;
use crate::pipeline::asr::LanguageSetting;
use crate::pipeline::asr::worker::{AsrError, AsrJob, AsrOutput, AsrPool, LegLanguage};
use crate::pipeline::assess::CallAssessor;
use crate::pipeline::audio::resample::{ResampleError, resample_to};
use crate::pipeline::audio::split_legs;
use crate::pipeline::audio::wav::{DecodedAudio, WavError, read_wav};
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::detect::energy::{EnergyConfig, RaisedVoiceDetector};
use crate::pipeline::detect::lexicon::Lexicon;
use crate::pipeline::detect::turns::{TurnInput, turn_inputs};
use crate::pipeline::segment::{Utterance, segment_all, speech_spans};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{0}")]
    Wav(#[from] WavError),
    #[error("resampling failed: {0}")]
    Resample(#[from] ResampleError),
    #[error("{leg} leg: {source}")]
    Asr { leg: Leg, source: AsrError },
    #[error("the {0} leg's worker thread panicked")]
    Panicked(Leg),
}

/// What one call's analysis produced, with the figures for `--stats`.
#[derive(Debug)]
pub struct Analysis {
    pub call_id: String,
    pub events: Vec<Event>,
    pub audio: AudioSummary,
    pub utterances: usize,
    pub dropped_segments: usize,
    pub wall: Duration,
    /// Language per leg as finally used.
    pub languages: Vec<(Leg, String)>,
}

#[derive(Debug, Clone)]
pub struct AudioSummary {
    pub duration_ms: u64,
    pub sample_rate: u32,
    pub channels: usize,
    pub format: String,
    pub truncated: bool,
}

impl Analysis {
    /// Wall time over audio time.
    pub fn real_time_factor(&self) -> f64 {
        if self.audio.duration_ms == 0 {
            return 0.0;
        }
        self.wall.as_secs_f64() / (self.audio.duration_ms as f64 / 1000.0)
    }
}

/// Where a call's words come from.
pub enum Words<'a> {
    /// Transcribe the audio with Whisper.
    Whisper(&'a AsrPool),
    /// Use these transcripts instead (`eval --text`: testing the detectors on known text
    /// while the voice detector still hears the audio).
    Given(Vec<Transcript>),
}

/// Everything `analyze` needs besides the audio.
pub struct AnalyzeContext<'a> {
    pub call_id: &'a str,
    pub cfg: &'a PipelineConfig,
    /// Overrides `asr.language`.
    pub lang: Option<LanguageSetting>,
    pub lexicon: Arc<Lexicon>,
    pub words: Words<'a>,
}

/// Analyses a WAV file with Whisper.
pub fn analyze_file(
    path: &Path,
    call_id: &str,
    cfg: &PipelineConfig,
    lang: Option<LanguageSetting>,
    pool: &AsrPool,
    lexicon: Arc<Lexicon>,
) -> Result<Analysis, AnalyzeError> {
    let started = Instant::now();
    let audio = read_wav(path)?;
    let ctx = AnalyzeContext {
        call_id,
        cfg,
        lang,
        lexicon,
        words: Words::Whisper(pool),
    };
    analyze_audio(audio, ctx, started)
}

/// Analyses decoded audio; `started` is when the work began, for the real-time factor.
pub fn analyze_audio(
    audio: DecodedAudio,
    ctx: AnalyzeContext<'_>,
    started: Instant,
) -> Result<Analysis, AnalyzeError> {
    let AnalyzeContext {
        call_id,
        cfg,
        lang,
        lexicon,
        words,
    } = ctx;
    let summary = AudioSummary {
        duration_ms: audio
            .channels
            .first()
            .map(|c| c.len() as u64 * 1000 / audio.sample_rate as u64)
            .unwrap_or(0),
        sample_rate: audio.sample_rate,
        channels: audio.channels.len(),
        format: audio.format.to_string(),
        truncated: audio.truncated,
    };
    if summary.truncated {
        tracing::warn!(call_id, "recording is truncated; analysing what is there");
    }
    let rate = audio.sample_rate;
    let legs = split_legs(audio, cfg.audio.stereo_legs);
    let setting = lang.unwrap_or(cfg.asr.language);
    let pool = match &words {
        Words::Whisper(pool) => Some(*pool),
        Words::Given(_) => None,
    };

    let results: Vec<Result<LegResult, AnalyzeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = legs
            .into_iter()
            .map(|(leg, samples)| {
                let language = LegLanguage::new(setting, &cfg.asr);
                let handle = std::thread::Builder::new()
                    .name(format!("leg-{leg}"))
                    .spawn_scoped(s, move || {
                        let _span = tracing::info_span!("leg", call_id, %leg).entered();
                        let pcm = resample_to(&samples, rate, PIPELINE_RATE)?;
                        drop(samples);
                        let raised = raised_voice(leg, &cfg.detect.raised_voice, &pcm);
                        // Segmented with or without Whisper: turn-taking needs the speech.
                        let utterances = segment_all(leg, &cfg.segment, &pcm);
                        tracing::debug!(count = utterances.len(), "segmented");
                        let spans = speech_spans(&utterances, &cfg.segment);
                        let mut result = match pool {
                            Some(pool) => transcribe_leg(pool, leg, utterances, language)?,
                            None => LegResult::empty(leg),
                        };
                        result.raised = raised;
                        result.spans = spans;
                        Ok(result)
                    });
                (leg, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(leg, h)| match h {
                Ok(h) => h.join().unwrap_or(Err(AnalyzeError::Panicked(leg))),
                Err(_) => Err(AnalyzeError::Panicked(leg)),
            })
            .collect()
    });

    let mut transcripts = Vec::new();
    let mut raised = Vec::new();
    let mut utterances = 0;
    let mut dropped = 0;
    let mut languages = Vec::new();
    let mut spans = Vec::new();
    let mut legs = Vec::new();
    for r in results {
        let r = r?;
        legs.push(r.leg);
        spans.extend(r.spans.iter().copied());
        utterances += r.utterances;
        dropped += r.outputs.iter().map(|o| o.dropped).sum::<usize>();
        if pool.is_some() {
            languages.push((r.leg, r.language.clone()));
        }
        raised.extend(r.raised);
        for out in r.outputs {
            for seg in out.segments {
                transcripts.push(Transcript {
                    call_id: call_id.to_owned(),
                    leg: r.leg,
                    start_ms: seg.start_ms,
                    end_ms: seg.end_ms,
                    at_ms: seg.end_ms,
                    text: seg.text,
                    lang: out.lang.clone(),
                    is_final: true,
                });
            }
        }
    }
    if let Words::Given(given) = words {
        transcripts = given;
    }
    let monitor = CallAssessor::new(call_id, cfg.assessor(), lexicon, &legs);
    let activity = turn_inputs(
        &spans,
        u64::from(cfg.segment.min_speech_ms),
        u64::from(cfg.segment.hangover_ms),
    );
    let events = detect_call(
        monitor,
        CallInputs {
            transcripts,
            raised,
            activity,
        },
        summary.duration_ms,
    );
    Ok(Analysis {
        call_id: call_id.to_owned(),
        events,
        audio: summary,
        utterances,
        dropped_segments: dropped,
        wall: started.elapsed(),
        languages,
    })
}

/// Runs the raised-voice detector over a whole leg.
fn raised_voice(leg: Leg, cfg: &EnergyConfig, pcm: &[f32]) -> Vec<Signal> {
    let mut detector = RaisedVoiceDetector::new(leg, cfg);
    let mut signals = Vec::new();
    // One-second pieces: the detector's result does not depend on the chunking, and this
    // keeps the copy small.
    let step = PIPELINE_RATE as usize;
    for (i, piece) in pcm.chunks(step).enumerate() {
        signals.extend(detector.update(&AudioChunk {
            leg,
            start_sample: (i * step) as u64,
            samples: piece.to_vec(),
        }));
    }
    signals.extend(detector.finish());
    signals
}

/// What a recorded call gives the detectors, each item at the call time it is known.
#[derive(Debug, Default)]
pub struct CallInputs {
    pub transcripts: Vec<Transcript>,
    /// Raised-voice signals, from the audio.
    pub raised: Vec<Signal>,
    /// Each leg's speech starting and stopping (see `turns::turn_inputs`).
    pub activity: Vec<(u64, TurnInput)>,
}

/// Replays a call's transcripts, raised-voice signals and speech activity in call-time order
/// through the monitor, with a tick every second so decay and silence are seen, and returns
/// every event in order.
pub fn detect_call(mut monitor: CallAssessor, inputs: CallInputs, duration_ms: u64) -> Vec<Event> {
    let CallInputs {
        mut transcripts,
        mut raised,
        mut activity,
    } = inputs;
    transcripts.sort_by_key(|t| (t.at_ms, t.leg, t.start_ms));
    raised.sort_by_key(|s| s.at_ms);
    activity.sort_by_key(|&(at, _)| at);
    let end = duration_ms
        .max(transcripts.last().map_or(0, |t| t.at_ms))
        .max(raised.last().map_or(0, |s| s.at_ms));
    let mut events = Vec::new();
    let mut ts = transcripts.into_iter().peekable();
    let mut rs = raised.into_iter().peekable();
    let mut acts = activity.into_iter().filter(|&(at, _)| at <= end).peekable();
    let mut next_tick = 1000;
    loop {
        let t_at = ts.peek().map(|t| t.at_ms);
        let r_at = rs.peek().map(|s| s.at_ms);
        let a_at = acts.peek().map(|&(at, _)| at);
        let next_input = [t_at, r_at, a_at].into_iter().flatten().min();
        // Ticks due by the next input (or up to the end of the call) come first.
        if next_tick <= end && next_input.is_none_or(|at| next_tick <= at) {
            events.extend(monitor.tick(next_tick));
            next_tick += 1000;
            continue;
        }
        let Some(at) = next_input else { break };
        // The audio's findings go before words at the same moment: the voice and the turns
        // are known before Whisper has finished.
        if a_at == Some(at) {
            if let Some((_, input)) = acts.next() {
                events.extend(monitor.on_activity(input, at));
            }
        } else if r_at == Some(at) {
            if let Some(s) = rs.next() {
                events.extend(monitor.on_signal(s, at));
            }
        } else if let Some(t) = ts.next() {
            events.extend(monitor.on_transcript(&t, at));
            events.push(Event::Transcript(t));
        }
    }
    events.push(monitor.finish(end));
    sort_events(&mut events);
    events
}

struct LegResult {
    leg: Leg,
    utterances: usize,
    outputs: Vec<AsrOutput>,
    language: String,
    raised: Vec<Signal>,
    /// The leg's speech stretches, (leg, start ms, end ms).
    spans: Vec<(Leg, u64, u64)>,
}

impl LegResult {
    fn empty(leg: Leg) -> Self {
        Self {
            leg,
            utterances: 0,
            outputs: Vec::new(),
            language: String::new(),
            raised: Vec::new(),
            spans: Vec::new(),
        }
    }
}

fn transcribe_leg(
    pool: &AsrPool,
    leg: Leg,
    utterances: Vec<Utterance>,
    mut language: LegLanguage,
) -> Result<LegResult, AnalyzeError> {
    let count = utterances.len();
    let asr_err = |source| AnalyzeError::Asr { leg, source };
    let mut outputs = Vec::with_capacity(count);
    let mut rest = utterances.into_iter();
    // Until the language is settled each answer decides the next request, so go one by one.
    for u in rest.by_ref() {
        let duration = u.duration_ms();
        let job = AsrJob {
            leg,
            start_ms: u.start_ms(),
            samples: u.samples,
            lang: language.request(),
        };
        let out = pool.transcribe_blocking(job).map_err(asr_err)?;
        language.observe(duration, &out);
        outputs.push(out);
        if language.is_fixed() {
            break;
        }
    }
    // Then queue the rest together so every worker is busy.
    let pending: Vec<_> = rest
        .map(|u| {
            pool.submit(AsrJob {
                leg,
                start_ms: u.start_ms(),
                samples: u.samples,
                lang: language.request(),
            })
        })
        .collect::<Result<_, _>>()
        .map_err(asr_err)?;
    for rx in pending {
        let out = rx
            .blocking_recv()
            .map_err(|_| asr_err(AsrError::Closed))?
            .map_err(asr_err)?;
        outputs.push(out);
    }
    let lang_name = match &language {
        LegLanguage::Fixed(l) => l.clone(),
        LegLanguage::Pending { .. } => outputs
            .last()
            .map(|o| o.lang.clone())
            .unwrap_or_else(|| "unknown".into()),
    };
    Ok(LegResult {
        leg,
        utterances: count,
        outputs,
        language: lang_name,
        raised: Vec::new(),
        spans: Vec::new(),
    })
}
