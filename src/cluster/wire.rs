//! The messages cluster nodes exchange over NATS, versioned: an utterance to transcribe (edge
//! to asr) and its answer (asr to edge). Pure encoding and decoding, no I/O.
//!
//! An utterance is one NATS message: a 4-byte little-endian length, that many bytes of JSON
//! header ([`JobHeader`], with `v`), then the audio as 16 kHz mono 16-bit little-endian PCM
//! (half the bytes of f32, and no loss Whisper can hear; 30 s is 960 kB, under NATS's default
//! 1 MB message limit). An answer is JSON ([`Reply`]). A node refuses a message of another
//! version with a clear error rather than guessing.

use serde::{Deserialize, Serialize};

use crate::domain::leg::Leg;
use crate::pipeline::asr::worker::{AsrJob, AsrOutput, AsrSegment, JobKind, LangRequest};
use crate::pipeline::audio::g711::f32_to_i16;

/// The message format version this build speaks.
pub const VERSION: u32 = 1;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("message too short for its header")]
    Truncated,
    #[error("unreadable header: {0}")]
    Header(String),
    #[error("message version {0}, this node speaks {VERSION}")]
    Version(u32),
    #[error("audio of {bytes} bytes is not 16-bit samples")]
    OddAudio { bytes: usize },
}

/// An utterance's metadata, ahead of its audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobHeader {
    pub v: u32,
    /// Unique per job: `<edge node>-<run>-<n>`; the answer carries it back.
    pub id: String,
    /// The subject the edge listens for answers on.
    pub reply_to: String,
    pub call_id: String,
    pub kind: WireKind,
    pub leg: Leg,
    pub start_ms: u64,
    /// A fixed language, or none to detect among `detect`.
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detect: Vec<String>,
    /// The call's risk when queued: 0 calm, 1 watch, 2 escalate.
    pub rank: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireKind {
    Final,
    Partial,
}

impl From<JobKind> for WireKind {
    fn from(k: JobKind) -> Self {
        match k {
            JobKind::Final => WireKind::Final,
            JobKind::Partial => WireKind::Partial,
        }
    }
}

impl From<WireKind> for JobKind {
    fn from(k: WireKind) -> Self {
        match k {
            WireKind::Final => JobKind::Final,
            WireKind::Partial => JobKind::Partial,
        }
    }
}

/// Encodes a job: header, then its audio.
pub fn encode_job(header: &JobHeader, job: &AsrJob) -> Vec<u8> {
    // A struct of strings and numbers always serialises.
    let head = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + head.len() + job.samples.len() * 2);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    for &s in &job.samples {
        out.extend_from_slice(&f32_to_i16(s).to_le_bytes());
    }
    out
}

/// Decodes a job message into its header and the job to run.
pub fn decode_job(bytes: &[u8]) -> Result<(JobHeader, AsrJob), WireError> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(WireError::Truncated)?;
    let head = bytes.get(4..4 + len).ok_or(WireError::Truncated)?;
    let audio = &bytes[4 + len..];
    // The version first, so a newer header with other fields says what it is.
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let v: Versioned =
        serde_json::from_slice(head).map_err(|e| WireError::Header(e.to_string()))?;
    if v.v != VERSION {
        return Err(WireError::Version(v.v));
    }
    let header: JobHeader =
        serde_json::from_slice(head).map_err(|e| WireError::Header(e.to_string()))?;
    if !audio.len().is_multiple_of(2) {
        return Err(WireError::OddAudio { bytes: audio.len() });
    }
    let samples = audio
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0)
        .collect();
    let lang = match &header.lang {
        Some(l) => LangRequest::Fixed(l.clone()),
        None => LangRequest::Detect(header.detect.clone()),
    };
    let job = AsrJob {
        leg: header.leg,
        start_ms: header.start_ms,
        samples,
        lang,
    };
    Ok((header, job))
}

/// The language fields of a header for a request.
pub fn lang_fields(lang: &LangRequest) -> (Option<String>, Vec<String>) {
    match lang {
        LangRequest::Fixed(l) => (Some(l.clone()), Vec::new()),
        LangRequest::Detect(allowed) => (None, allowed.clone()),
    }
}

/// An answer: the transcript, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub id: String,
    /// The node that answered (for logs and metrics).
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<WireOutput>,
    /// Set when the job failed; `shed` when a busy node skipped a partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireOutput {
    pub lang: String,
    pub detected: Option<f32>,
    pub segments: Vec<WireSegment>,
    pub dropped: usize,
    pub compute_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// The error text a shed partial is answered with.
pub const SHED: &str = "shed";

impl From<&AsrOutput> for WireOutput {
    fn from(o: &AsrOutput) -> Self {
        Self {
            lang: o.lang.clone(),
            detected: o.detected,
            segments: o
                .segments
                .iter()
                .map(|s| WireSegment {
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    text: s.text.clone(),
                })
                .collect(),
            dropped: o.dropped,
            compute_ms: o.compute_ms,
        }
    }
}

impl From<WireOutput> for AsrOutput {
    fn from(o: WireOutput) -> Self {
        Self {
            lang: o.lang,
            detected: o.detected,
            segments: o
                .segments
                .into_iter()
                .map(|s| AsrSegment {
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    text: s.text,
                })
                .collect(),
            dropped: o.dropped,
            compute_ms: o.compute_ms,
        }
    }
}

/// Decodes an answer, refusing other versions.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    let r: Reply = serde_json::from_slice(bytes).map_err(|e| WireError::Header(e.to_string()))?;
    if r.v != VERSION {
        return Err(WireError::Version(r.v));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: WireKind) -> JobHeader {
        JobHeader {
            v: VERSION,
            id: "edge-1-ab-7".into(),
            reply_to: "callguard.asr.reply.edge-1".into(),
            call_id: "CA1".into(),
            kind,
            leg: Leg::Customer,
            start_ms: 1200,
            lang: None,
            detect: vec!["en".into(), "zh".into()],
            rank: 2,
        }
    }

    #[test]
    fn a_job_survives_the_wire_with_16_bit_audio() {
        let samples: Vec<f32> = (0..1600).map(|i| ((i as f32) / 40.0).sin() * 0.5).collect();
        let job = AsrJob {
            leg: Leg::Customer,
            start_ms: 1200,
            samples: samples.clone(),
            lang: LangRequest::Detect(vec!["en".into(), "zh".into()]),
        };
        let h = header(WireKind::Final);
        let bytes = encode_job(&h, &job);
        // Header, then two bytes a sample.
        assert!(bytes.len() > 3200 && bytes.len() < 3200 + 400);
        let (h2, job2) = decode_job(&bytes).unwrap();
        assert_eq!(h2, h);
        assert_eq!(job2.lang, job.lang);
        assert_eq!((job2.leg, job2.start_ms), (Leg::Customer, 1200));
        assert_eq!(job2.samples.len(), samples.len());
        let worst = samples
            .iter()
            .zip(&job2.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1.0 / 32_768.0, "{worst}");
    }

    #[test]
    fn broken_or_foreign_messages_are_refused_with_a_reason() {
        let job = AsrJob {
            leg: Leg::Agent,
            start_ms: 0,
            samples: vec![0.1; 10],
            lang: LangRequest::Fixed("en".into()),
        };
        let bytes = encode_job(&header(WireKind::Partial), &job);
        assert!(matches!(decode_job(&bytes[..3]), Err(WireError::Truncated)));
        assert!(matches!(
            decode_job(&bytes[..20]),
            Err(WireError::Truncated)
        ));
        assert!(matches!(
            decode_job(&bytes[..bytes.len() - 1]),
            Err(WireError::OddAudio { .. })
        ));
        let mut h = header(WireKind::Final);
        h.v = 2;
        let e = decode_job(&encode_job(&h, &job)).unwrap_err();
        assert_eq!(e.to_string(), "message version 2, this node speaks 1");
        let mut garbage = 5u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(b"{nope");
        assert!(matches!(decode_job(&garbage), Err(WireError::Header(_))));
    }

    #[test]
    fn replies_carry_the_transcript_or_the_error() {
        let out = AsrOutput {
            lang: "zh".into(),
            detected: Some(0.9),
            segments: vec![AsrSegment {
                start_ms: 100,
                end_ms: 900,
                text: "我要投诉".into(),
            }],
            dropped: 1,
            compute_ms: 321,
        };
        let r = Reply {
            v: VERSION,
            id: "x".into(),
            node: "asr-1".into(),
            output: Some(WireOutput::from(&out)),
            error: None,
        };
        let back = decode_reply(&serde_json::to_vec(&r).unwrap()).unwrap();
        let o = AsrOutput::from(back.output.unwrap());
        assert_eq!(
            (o.lang.as_str(), o.segments, o.dropped),
            ("zh", out.segments, 1)
        );
        let shed: Reply = decode_reply(br#"{"v":1,"id":"y","node":"a","error":"shed"}"#).unwrap();
        assert_eq!(shed.error.as_deref(), Some(SHED));
        assert_eq!(
            decode_reply(br#"{"v":9,"id":"y","node":"a"}"#),
            Err(WireError::Version(9))
        );
    }
}
