//! The offline pipeline: one recorded call in, its events out, in call-time order.
//!
//! decode WAV -> split into legs -> resample each to 16 kHz -> segment -> transcribe on the
//! worker pool -> transcript events. Legs run side by side on their own threads; within a leg,
//! utterances go to Whisper one at a time until the leg's language is settled, then all at
//! once so that idle workers are used. Output formatting lives here too, since `analyze` is the
//! only command that prints transcripts. The live daemon will reuse the stages, not this file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::asr::worker::{AsrError, AsrJob, AsrOutput, AsrPool, LegLanguage};
use crate::audio::resample::{ResampleError, resample_to};
use crate::audio::wav::{DecodedAudio, WavError, read_wav};
use crate::audio::{AudioChunk, Leg, PIPELINE_RATE};
use crate::config::{Config, LanguageSetting};
use crate::detect::Signal;
use crate::detect::energy::{EnergyConfig, RaisedVoiceDetector};
use crate::detect::lexicon::Lexicon;
use crate::event::{Event, Transcript, sort_events};
use crate::monitor::CallMonitor;
use crate::risk::CustomerType;
use crate::segment::{Utterance, segment_all};

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

/// Splits decoded audio into legs: mono is one mixed leg, stereo follows the configured map.
pub fn split_legs(audio: DecodedAudio, stereo_legs: [Leg; 2]) -> Vec<(Leg, Vec<f32>)> {
    let mut channels = audio.channels;
    if channels.len() == 1 {
        return vec![(Leg::Mixed, channels.remove(0))];
    }
    stereo_legs.into_iter().zip(channels).collect()
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
    pub cfg: &'a Config,
    /// Overrides `asr.language`.
    pub lang: Option<LanguageSetting>,
    pub lexicon: Arc<Lexicon>,
    pub words: Words<'a>,
}

/// Analyses a WAV file with Whisper.
pub fn analyze_file(
    path: &Path,
    call_id: &str,
    cfg: &Config,
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
                        let mut result = match pool {
                            Some(pool) => {
                                let utterances = segment_all(leg, &cfg.segment, &pcm);
                                tracing::debug!(count = utterances.len(), "segmented");
                                transcribe_leg(pool, leg, utterances, language)?
                            }
                            None => LegResult::empty(leg),
                        };
                        result.raised = raised;
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
    for r in results {
        let r = r?;
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
    let monitor = CallMonitor::new(call_id, cfg, lexicon);
    let events = detect_call(monitor, transcripts, raised, summary.duration_ms);
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

/// Replays a call's transcripts and raised-voice signals in call-time order through the
/// monitor, with a tick every second so decay is seen, and returns every event in order.
pub fn detect_call(
    mut monitor: CallMonitor,
    mut transcripts: Vec<Transcript>,
    mut raised: Vec<Signal>,
    duration_ms: u64,
) -> Vec<Event> {
    transcripts.sort_by_key(|t| (t.at_ms, t.leg, t.start_ms));
    raised.sort_by_key(|s| s.at_ms);
    let end = duration_ms
        .max(transcripts.last().map_or(0, |t| t.at_ms))
        .max(raised.last().map_or(0, |s| s.at_ms));
    let mut events = Vec::new();
    let mut ts = transcripts.into_iter().peekable();
    let mut rs = raised.into_iter().peekable();
    let mut next_tick = 1000;
    loop {
        let t_at = ts.peek().map(|t| t.at_ms);
        let r_at = rs.peek().map(|s| s.at_ms);
        let next_input = match (t_at, r_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Ticks due by the next input (or up to the end of the call) come first.
        if next_tick <= end && next_input.is_none_or(|at| next_tick <= at) {
            events.extend(monitor.tick(next_tick));
            next_tick += 1000;
            continue;
        }
        let Some(at) = next_input else { break };
        // A signal from the audio goes before words at the same moment: the voice is heard
        // before Whisper has finished.
        if r_at == Some(at) {
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
}

impl LegResult {
    fn empty(leg: Leg) -> Self {
        Self {
            leg,
            utterances: 0,
            outputs: Vec::new(),
            language: String::new(),
            raised: Vec::new(),
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
    })
}

/// `mm:ss.d` for readable transcripts (hours are added for calls over an hour).
pub fn clock(ms: u64) -> String {
    let tenths = (ms / 100) % 10;
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}.{}", s / 3600, (s / 60) % 60, s % 60, tenths)
    } else {
        format!("{:02}:{:02}.{}", s / 60, s % 60, tenths)
    }
}

/// Indent of the notes printed under a transcript line.
const NOTE: &str = "                    ";

/// The readable form of an event, for QA people reading in a terminal: transcript lines,
/// notes for signals, level changes and QA flags, and a block for each transfer prompt.
/// `None` for events the text view leaves out (score changes within a level).
pub fn format_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Transcript(t) => format!(
            "[{} - {}] {:<8} {}",
            clock(t.start_ms),
            clock(t.end_ms),
            t.leg.as_str(),
            t.text
        ),
        Event::Signal(e) => {
            let s = &e.signal;
            let detail = match (&s.raised, s.count) {
                (Some(r), _) => format!(
                    "{:+.1} dB over baseline for {:.1} s ({})",
                    r.db_over_baseline,
                    r.duration_ms as f64 / 1000.0,
                    r.cues.join(", ")
                ),
                (None, Some(n)) => format!("{n} times: {}", s.terms.join(", ")),
                (None, None) => format!("\"{}\"", s.terms.join("\", \"")),
            };
            format!("{NOTE}-- {} ({}): {detail}", s.kind, s.leg)
        }
        Event::Risk(r) => {
            r.previous_level?;
            format!("{NOTE}-- risk {} (score {:.0})", r.level.as_str(), r.score)
        }
        Event::QaFlag(f) => format!(
            "{NOTE}QA FLAG {} ({}): \"{}\". Hint: {}",
            f.kind,
            f.leg,
            f.terms.join("\", \""),
            f.hint
        ),
        Event::Alert(a) => {
            let reasons: Vec<String> = a
                .reasons
                .iter()
                .map(|r| format!("{} ({:.0})", r.kind, r.points))
                .collect();
            let mut lines = vec![
                format!(
                    "{NOTE}!! TRANSFER PROMPT {} at {}: score {:.0}, {}",
                    a.alert_id,
                    clock(a.at_ms),
                    a.score,
                    reasons.join(", ")
                ),
                format!(
                    "{NOTE}   customer type: {}",
                    match a.customer_type {
                        CustomerType::EmotionLed => "emotion-led (情绪主导)",
                        CustomerType::ProblemLed => "problem-led (问题主导)",
                        CustomerType::Instigating => "instigating (恶意煽动)",
                    }
                ),
            ];
            for q in &a.evidence.quotes {
                lines.push(format!(
                    "{NOTE}   evidence: [{}] {}: \"{}\"",
                    clock(q.start_ms),
                    q.leg,
                    q.text
                ));
            }
            for v in &a.evidence.raised_voice {
                lines.push(format!(
                    "{NOTE}   evidence: [{} - {}] {} voice {:+.1} dB ({})",
                    clock(v.start_ms),
                    clock(v.end_ms),
                    v.leg,
                    v.db_over_baseline,
                    v.cues.join(", ")
                ));
            }
            lines.push(format!("{NOTE}   say: {}", a.suggestion.opening));
            for step in &a.suggestion.steps {
                lines.push(format!("{NOTE}   - {step}"));
            }
            lines.push(format!("{NOTE}   time limits: {}", a.suggestion.deadline));
            lines.join("\n")
        }
        Event::Summary(s) => {
            let reasons: Vec<String> = s
                .reasons
                .iter()
                .map(|r| format!("{} x{}", r.kind, r.count))
                .collect();
            format!(
                "== {}: {} long, max risk {:.0} ({}), {} transfer prompt(s), {} QA flag(s){}",
                s.call_id,
                clock(s.duration_ms),
                s.max_score,
                s.max_level.as_str(),
                s.alerts.len(),
                s.qa_flags,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(", signals: {}", reasons.join(", "))
                }
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav::SampleFormat;

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(0), "00:00.0");
        assert_eq!(clock(61_250), "01:01.2");
        assert_eq!(clock(3_725_900), "1:02:05.9");
    }

    fn audio(channels: usize) -> DecodedAudio {
        DecodedAudio {
            sample_rate: 8000,
            channels: (0..channels).map(|c| vec![c as f32; 4]).collect(),
            format: SampleFormat::MuLaw,
            truncated: false,
        }
    }

    #[test]
    fn stereo_channels_map_to_configured_legs() {
        let legs = split_legs(audio(2), [Leg::Customer, Leg::Agent]);
        assert_eq!(legs[0], (Leg::Customer, vec![0.0; 4]));
        assert_eq!(legs[1], (Leg::Agent, vec![1.0; 4]));
        let swapped = split_legs(audio(2), [Leg::Agent, Leg::Customer]);
        assert_eq!(swapped[0].0, Leg::Agent);
        assert_eq!(swapped[0].1, vec![0.0; 4]);
        let mono = split_legs(audio(1), [Leg::Customer, Leg::Agent]);
        assert_eq!(mono, vec![(Leg::Mixed, vec![0.0; 4])]);
    }

    #[test]
    fn text_lines_show_time_leg_and_words() {
        let e = Event::Transcript(Transcript {
            call_id: "c".into(),
            leg: Leg::Customer,
            start_ms: 1500,
            end_ms: 4200,
            at_ms: 4200,
            text: "I want a refund".into(),
            lang: "en".into(),
            is_final: true,
        });
        assert_eq!(
            format_text(&e).unwrap(),
            "[00:01.5 - 00:04.2] customer I want a refund"
        );
    }
}
