//! FreeSWITCH `mod_audio_fork` (drachtio) and jambonz `listen`: the session state machine for
//! one audio-fork websocket.
//!
//! Both send one text frame of metadata first, then raw L16 (16-bit signed little-endian PCM)
//! in binary frames, sample-interleaved when stereo. jambonz fills the metadata with the call's
//! attributes plus `sampleRate` and `mixType`; plain `mod_audio_fork` sends whatever text the
//! dialplan passed (often JSON, possibly nothing useful), since its mix type and rate are
//! command arguments that never reach the server. So the metadata is read leniently: keys are
//! matched ignoring case, `_` and `-` (so `callSid`, `call_sid` and `CallSid` are one key);
//! text that is not a JSON object is kept as a string; absent values fall back to the
//! session's default format (mono, 8 kHz unless [`AudioforkSession::with_default_format`]
//! says otherwise). Values that are present but wrong are refused, because guessing a sample
//! rate or channel layout would feed the pipeline garbage that looks like audio.
//!
//! Binary data is treated as a byte stream aligned to whole frames (2 bytes x channels), not
//! as self-contained frames: a sample or a stereo pair split across websocket messages is
//! carried over to the next one. Later text frames are scanned for DTMF (jambonz `passDtmf`
//! sends `{"event":"dtmf","dtmf":"5","duration":...}`; other shapes are accepted too); all
//! other text is ignored.
//!
//! This module does no I/O: no websocket handshake (beyond picking the subprotocol to echo),
//! no sockets, no clock. It never sends audio or commands back.

use serde_json::{Map, Value};

use crate::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use crate::domain::leg::{AudioChunk, Leg, samples_to_ms};
use crate::ingest::{Session, SourceError};

const PROTOCOL: &str = "audiofork";

/// The subprotocols echoed back at the websocket upgrade, in no particular preference: the
/// current drachtio and jambonz names, and the name older `mod_audio_fork` builds used.
pub const SUBPROTOCOLS: [&str; 3] = [
    "audio.drachtio.org",
    "audio.jambonz.org",
    "audiostream.drachtio.org",
];

/// Sample rates the forks can be asked for (jambonz: 8000 to 64000; drachtio: 8k and 16k).
pub const SAMPLE_RATES: [u32; 6] = [8_000, 16_000, 24_000, 32_000, 48_000, 64_000];

/// The rate assumed when nothing says otherwise (the default of both forks).
pub const DEFAULT_SAMPLE_RATE: u32 = 8_000;

/// The subprotocol to echo in the upgrade response: the first offered one that callguard
/// speaks (the client lists its preference first).
pub fn choose_subprotocol(offered: &[&str]) -> Option<&'static str> {
    offered.iter().find_map(|name| {
        SUBPROTOCOLS
            .iter()
            .copied()
            .find(|ours| *ours == name.trim())
    })
}

/// How the fork lays out the call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MixType {
    /// One channel: the caller only.
    Mono,
    /// One channel: caller and callee mixed.
    Mixed,
    /// Two interleaved channels: caller left, callee right.
    Stereo,
}

impl MixType {
    pub fn channels(self) -> usize {
        match self {
            MixType::Mono | MixType::Mixed => 1,
            MixType::Stereo => 2,
        }
    }

    /// The legs, in channel order.
    pub fn legs(self) -> &'static [Leg] {
        match self {
            MixType::Mono => &[Leg::Customer],
            MixType::Mixed => &[Leg::Mixed],
            MixType::Stereo => &[Leg::Customer, Leg::Agent],
        }
    }

    fn parse(text: &str) -> Option<MixType> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mono" => Some(MixType::Mono),
            "mixed" => Some(MixType::Mixed),
            "stereo" => Some(MixType::Stereo),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingMetadata,
    Streaming { mix: MixType, rate: u32 },
    Closed,
}

/// One audio-fork websocket: metadata, then audio, then close.
#[derive(Debug)]
pub struct AudioforkSession {
    default_call_id: String,
    default_mix: MixType,
    default_rate: u32,
    /// Whether binary data may start a call with the defaults when no metadata came first.
    start_without_metadata: bool,
    phase: Phase,
    /// Bytes of an incomplete frame, always fewer than one frame.
    carry: Vec<u8>,
    /// Samples per channel delivered so far: the next `start_sample`.
    position: u64,
    call_open: bool,
    failed: bool,
}

impl AudioforkSession {
    /// A session whose call is named `default_call_id` unless the metadata names it. Binary
    /// data before the metadata is a protocol error.
    pub fn new(default_call_id: String) -> Self {
        AudioforkSession {
            default_call_id,
            default_mix: MixType::Mono,
            default_rate: DEFAULT_SAMPLE_RATE,
            start_without_metadata: false,
            phase: Phase::AwaitingMetadata,
            carry: Vec::new(),
            position: 0,
            call_open: false,
            failed: false,
        }
    }

    /// The format this endpoint's forks are configured with (the `uuid_audio_fork` mix-type
    /// and sampling-rate arguments, which plain `mod_audio_fork` never sends). It fills in
    /// whatever the metadata leaves out, and lets binary data that arrives without any
    /// metadata start the call.
    pub fn with_default_format(
        mut self,
        mix: MixType,
        sample_rate: u32,
    ) -> Result<Self, SourceError> {
        check_rate(u64::from(sample_rate))?;
        self.default_mix = mix;
        self.default_rate = sample_rate;
        self.start_without_metadata = true;
        Ok(self)
    }

    /// Handles one websocket text frame: the metadata first, DTMF or ignorable text after.
    pub fn on_text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        if self.failed {
            return Err(SourceError::protocol(
                PROTOCOL,
                "the session already failed; the connection must close",
            ));
        }
        let result = match self.phase {
            Phase::AwaitingMetadata => self.start(Some(frame)),
            Phase::Streaming { rate, .. } => Ok(self.later_text(frame, rate)),
            Phase::Closed => Ok(Vec::new()),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Handles one websocket binary frame of L16 audio (any length: partial samples and
    /// partial stereo pairs carry over to the next frame).
    pub fn on_binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        if self.failed {
            return Err(SourceError::protocol(
                PROTOCOL,
                "the session already failed; the connection must close",
            ));
        }
        let mut events = Vec::new();
        if self.phase == Phase::AwaitingMetadata {
            if !self.start_without_metadata {
                self.failed = true;
                return Err(SourceError::protocol(
                    PROTOCOL,
                    "binary audio before the metadata text frame",
                ));
            }
            tracing::debug!(
                call_id = self.default_call_id,
                "audiofork: audio without metadata, assuming the configured format"
            );
            events = self.start(None)?;
        }
        let Phase::Streaming { mix, .. } = self.phase else {
            return Ok(events);
        };
        self.push_audio(data, mix, &mut events);
        Ok(events)
    }

    /// The websocket closed: `Ended(Hangup)` if a call was started, since closing the socket
    /// is how a fork ends. A trailing partial frame is dropped.
    pub fn on_close(&mut self) -> Vec<SourceEvent> {
        if !self.carry.is_empty() {
            tracing::debug!(
                bytes = self.carry.len(),
                "audiofork: dropping a partial frame at close"
            );
            self.carry.clear();
        }
        self.phase = Phase::Closed;
        if self.call_open {
            self.call_open = false;
            vec![SourceEvent::Ended(EndReason::Hangup)]
        } else {
            Vec::new()
        }
    }

    fn start(&mut self, metadata_text: Option<&str>) -> Result<Vec<SourceEvent>, SourceError> {
        let metadata = match metadata_text {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(value @ Value::Object(_)) => value,
                _ => {
                    tracing::debug!("audiofork: metadata is not a JSON object, keeping it as text");
                    Value::String(text.to_string())
                }
            },
            None => Value::Null,
        };
        let map = metadata.as_object();

        let field = |names: &[&str]| map.and_then(|m| lookup(m, names));
        let call_id = match field(&["callsid", "uuid", "callid"]) {
            Some((key, value)) => text_value(value).ok_or_else(|| {
                SourceError::malformed(PROTOCOL, format!("metadata `{key}` is not a string"))
            })?,
            None => None,
        }
        .unwrap_or_else(|| self.default_call_id.clone());
        let rate = match field(&["samplerate"]) {
            Some((key, value)) => parse_rate(key, value)?,
            None => self.default_rate,
        };
        let mix = match field(&["mixtype", "mix"]) {
            Some((key, Value::String(text))) => {
                MixType::parse(text).ok_or_else(|| SourceError::Unsupported {
                    protocol: PROTOCOL,
                    what: format!("metadata `{key}` {text:?}; expected mono, mixed or stereo"),
                })?
            }
            Some((key, _)) => {
                return Err(SourceError::malformed(
                    PROTOCOL,
                    format!("metadata `{key}` is not a string"),
                ));
            }
            None => self.default_mix,
        };
        let lang = match field(&["lang", "language"]) {
            Some((key, value)) => text_value(value).ok_or_else(|| {
                SourceError::malformed(PROTOCOL, format!("metadata `{key}` is not a string"))
            })?,
            None => None,
        };
        let agent = match field(&["agent"]) {
            Some((key, value)) => text_value(value).ok_or_else(|| {
                SourceError::malformed(PROTOCOL, format!("metadata `{key}` is not a string"))
            })?,
            None => None,
        };

        let info = CallInfo {
            call_id,
            source: SourceKind::Audiofork,
            legs: mix.legs().to_vec(),
            sample_rate: rate,
            lang,
            agent,
            metadata,
        };
        tracing::debug!(
            call_id = info.call_id,
            rate,
            ?mix,
            "audiofork: call started"
        );
        self.phase = Phase::Streaming { mix, rate };
        self.call_open = true;
        Ok(vec![SourceEvent::Started(info)])
    }

    fn later_text(&self, frame: &str, rate: u32) -> Vec<SourceEvent> {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(frame) else {
            tracing::trace!("audiofork: ignoring a non-JSON text frame");
            return Vec::new();
        };
        let is_dtmf = lookup(&message, &["event", "type"])
            .and_then(|(_, v)| v.as_str())
            .is_some_and(|kind| kind.eq_ignore_ascii_case("dtmf"));
        if !is_dtmf {
            tracing::trace!("audiofork: ignoring a text frame");
            return Vec::new();
        }
        let digits = match lookup(&message, &["dtmf", "digit", "digits"]) {
            Some((_, Value::Object(inner))) => {
                lookup(inner, &["digit", "digits", "dtmf"]).map(|(_, v)| v)
            }
            Some((_, value)) => Some(value),
            None => None,
        }
        .and_then(text_value)
        .flatten();
        let Some(digits) = digits else {
            tracing::warn!("audiofork: dtmf text frame without a digit");
            return Vec::new();
        };
        let at_ms = samples_to_ms(self.position, rate);
        let mut events = Vec::new();
        for c in digits.chars() {
            let digit = c.to_ascii_uppercase();
            if digit.is_ascii_digit() || matches!(digit, '*' | '#' | 'A'..='D') {
                events.push(SourceEvent::Dtmf { digit, at_ms });
            } else {
                tracing::warn!(?c, "audiofork: ignoring a character that is not a DTMF key");
            }
        }
        events
    }

    fn push_audio(&mut self, data: &[u8], mix: MixType, events: &mut Vec<SourceEvent>) {
        let channels = mix.channels();
        let frame = 2 * channels;
        let mut input = data;
        if self.carry.len() + input.len() < frame {
            self.carry.extend_from_slice(input);
            return;
        }
        let per_channel = (self.carry.len() + input.len()) / frame;
        let mut out: Vec<Vec<f32>> = (0..channels)
            .map(|_| Vec::with_capacity(per_channel))
            .collect();

        if !self.carry.is_empty() {
            // Complete the carried frame first; the check above guarantees enough input.
            let need = frame.saturating_sub(self.carry.len()).min(input.len());
            let (head, rest) = input.split_at(need);
            self.carry.extend_from_slice(head);
            deinterleave(&self.carry, channels, &mut out);
            self.carry.clear();
            input = rest;
        }
        let whole = input.len() - input.len() % frame;
        let (body, tail) = input.split_at(whole);
        deinterleave(body, channels, &mut out);
        self.carry.extend_from_slice(tail);

        let count = out.first().map_or(0, Vec::len) as u64;
        if count == 0 {
            return;
        }
        for (leg, samples) in mix.legs().iter().zip(out) {
            events.push(SourceEvent::Audio(AudioChunk {
                leg: *leg,
                start_sample: self.position,
                samples,
            }));
        }
        self.position += count;
    }
}

fn deinterleave(bytes: &[u8], channels: usize, out: &mut [Vec<f32>]) {
    for frame in bytes.chunks_exact(2 * channels) {
        for (channel, sample) in out.iter_mut().zip(frame.chunks_exact(2)) {
            channel.push(f32::from(i16::from_le_bytes([sample[0], sample[1]])) / 32_768.0);
        }
    }
}

/// Keys compare in lower case without `_` and `-`, so `sampleRate`, `sample_rate` and
/// `SampleRate` are one key. The first of `names` present wins. A nested `metadata` object
/// (how some apps pass their own fields) is searched after the top level.
fn lookup<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<(&'a str, &'a Value)> {
    let normal = |key: &str| -> String {
        key.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let direct = names.iter().find_map(|name| {
        map.iter()
            .find(|(key, value)| is_present(value) && normal(key) == *name)
            .map(|(key, value)| (key.as_str(), value))
    });
    direct.or_else(
        || match map.iter().find(|(key, _)| normal(key) == "metadata") {
            Some((_, Value::Object(nested))) => names.iter().find_map(|name| {
                nested
                    .iter()
                    .find(|(key, value)| is_present(value) && normal(key) == *name)
                    .map(|(key, value)| (key.as_str(), value))
            }),
            _ => None,
        },
    )
}

/// Null and blank strings count as absent, so the next candidate key (or the default) applies.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

/// A text-like value: `Some(None)` for an empty string (treated as absent), `None` for a
/// value that cannot be text (objects, arrays, booleans).
fn text_value(value: &Value) -> Option<Option<String>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            Some((!s.is_empty()).then(|| s.to_string()))
        }
        Value::Number(n) => Some(Some(n.to_string())),
        _ => None,
    }
}

/// `16000`, `"16000"`, `"16k"` and `16000.0` all mean 16 kHz.
fn parse_rate(key: &str, value: &Value) -> Result<u32, SourceError> {
    let hz = match value {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(hz), _) => Some(hz),
            (None, Some(f)) if f.fract() == 0.0 && (0.0..=1e9).contains(&f) => Some(f as u64),
            _ => None,
        },
        Value::String(text) => {
            let text = text.trim().to_ascii_lowercase();
            let text = text.strip_suffix("hz").unwrap_or(&text).trim_end();
            let (digits, scale) = match text.strip_suffix('k') {
                Some(digits) => (digits, 1000),
                None => (text, 1),
            };
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(scale))
            } else {
                None
            }
        }
        _ => {
            return Err(SourceError::malformed(
                PROTOCOL,
                format!("metadata `{key}` is not a number"),
            ));
        }
    };
    let hz = hz.ok_or_else(|| SourceError::Unsupported {
        protocol: PROTOCOL,
        what: format!("metadata `{key}` {value} is not a sample rate"),
    })?;
    check_rate(hz)
}

fn check_rate(hz: u64) -> Result<u32, SourceError> {
    SAMPLE_RATES
        .iter()
        .copied()
        .find(|&rate| u64::from(rate) == hz)
        .ok_or_else(|| SourceError::Unsupported {
            protocol: PROTOCOL,
            what: format!(
                "sample rate {hz} Hz; supported: 8000, 16000, 24000, 32000, 48000, 64000"
            ),
        })
}

impl Session for AudioforkSession {
    fn on_text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        AudioforkSession::on_text(self, frame)
    }
    fn on_binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        AudioforkSession::on_binary(self, data)
    }
    fn on_close(&mut self) -> Vec<SourceEvent> {
        AudioforkSession::on_close(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn started_info(events: &[SourceEvent]) -> CallInfo {
        match events {
            [SourceEvent::Started(info)] => info.clone(),
            other => panic!("expected Started, got {other:?}"),
        }
    }

    /// All samples per leg, checking that each leg's chunks are contiguous from 0.
    fn collect(events: &[SourceEvent]) -> Vec<(Leg, Vec<f32>)> {
        let mut legs: Vec<(Leg, Vec<f32>)> = Vec::new();
        for event in events {
            if let SourceEvent::Audio(AudioChunk {
                leg,
                start_sample,
                samples,
            }) = event
            {
                let entry = match legs.iter_mut().find(|(l, _)| l == leg) {
                    Some(entry) => entry,
                    None => {
                        legs.push((*leg, Vec::new()));
                        legs.last_mut().unwrap()
                    }
                };
                assert_eq!(*start_sample, entry.1.len() as u64, "{leg} not contiguous");
                entry.1.extend_from_slice(samples);
            }
        }
        legs
    }

    #[test]
    fn subprotocols() {
        assert_eq!(
            choose_subprotocol(&["audio.drachtio.org"]),
            Some("audio.drachtio.org")
        );
        assert_eq!(
            choose_subprotocol(&["chat", " audio.jambonz.org", "audio.drachtio.org"]),
            Some("audio.jambonz.org")
        );
        assert_eq!(
            choose_subprotocol(&["audiostream.drachtio.org"]),
            Some("audiostream.drachtio.org")
        );
        assert_eq!(choose_subprotocol(&["chat", "AUDIO.DRACHTIO.ORG"]), None);
        assert_eq!(choose_subprotocol(&[]), None);
    }

    #[test]
    fn jambonz_metadata() {
        let metadata = json!({
            "callSid": "b6c5d4e3-0000-4000-8000-000000000001",
            "callId": "1234@sip.example",
            "direction": "inbound",
            "from": "+15083084809",
            "to": "+15083728299",
            "accountSid": "acc-1",
            "sampleRate": 16000,
            "mixType": "stereo",
            "lang": "en-US",
            "agent": "alice"
        });
        let mut s = AudioforkSession::new("generated-1".into());
        let info = started_info(&s.on_text(&metadata.to_string()).unwrap());
        assert_eq!(info.call_id, "b6c5d4e3-0000-4000-8000-000000000001");
        assert_eq!(info.source, SourceKind::Audiofork);
        assert_eq!(info.legs, vec![Leg::Customer, Leg::Agent]);
        assert_eq!(info.sample_rate, 16000);
        assert_eq!(info.lang.as_deref(), Some("en-US"));
        assert_eq!(info.agent.as_deref(), Some("alice"));
        assert_eq!(info.metadata, metadata);
    }

    #[test]
    fn drachtio_metadata() {
        // The README's example: caller data chosen by the application, no rate or mix.
        let mut s = AudioforkSession::new("generated-2".into());
        let info = started_info(
            &s.on_text(r#"{"to":"6173333456","from":"2061236666","callid":"abc@10.0.0.1"}"#)
                .unwrap(),
        );
        assert_eq!(info.call_id, "abc@10.0.0.1");
        assert_eq!(info.legs, vec![Leg::Customer]);
        assert_eq!(info.sample_rate, 8000);
        assert_eq!(info.lang, None);

        let mut s = AudioforkSession::new("generated-3".into());
        let info = started_info(
            &s.on_text(r#"{"uuid":"f00d","sample_rate":"16k","mix_type":"MIXED","language":"zh","metadata":{"agent":1042}}"#)
                .unwrap(),
        );
        assert_eq!(info.call_id, "f00d");
        assert_eq!(info.sample_rate, 16000);
        assert_eq!(info.legs, vec![Leg::Mixed]);
        assert_eq!(info.lang.as_deref(), Some("zh"));
        assert_eq!(info.agent.as_deref(), Some("1042"));

        let mut s = AudioforkSession::new("generated-4".into());
        let info = started_info(
            &s.on_text(r#"{"call_sid":"x1","mix":"mono","sampleRate":"8000"}"#)
                .unwrap(),
        );
        assert_eq!((info.call_id.as_str(), info.sample_rate), ("x1", 8000));
    }

    #[test]
    fn non_json_metadata_is_kept_as_text() {
        for text in [
            "caller=+15551234 queue=billing",
            "",
            "42",
            "\"quoted\"",
            "[1,2]",
        ] {
            let mut s = AudioforkSession::new("gen".into());
            let info = started_info(&s.on_text(text).unwrap());
            assert_eq!(info.call_id, "gen");
            assert_eq!(info.metadata, Value::String(text.into()));
            assert_eq!(
                (info.sample_rate, info.legs.as_slice()),
                (8000, &[Leg::Customer][..])
            );
        }
    }

    #[test]
    fn empty_call_id_falls_back() {
        let mut s = AudioforkSession::new("gen".into());
        let info = started_info(&s.on_text(r#"{"callSid":"","uuid":"u-1"}"#).unwrap());
        assert_eq!(info.call_id, "u-1", "a blank callSid counts as absent");
        let mut s = AudioforkSession::new("gen".into());
        let info = started_info(&s.on_text(r#"{"callSid":" ","sampleRate":""}"#).unwrap());
        assert_eq!((info.call_id.as_str(), info.sample_rate), ("gen", 8000));
    }

    #[test]
    fn bad_metadata_values() {
        let cases = [
            (r#"{"sampleRate":44100}"#, "unsupported"),
            (r#"{"sampleRate":"11025"}"#, "unsupported"),
            (r#"{"sampleRate":"fast"}"#, "unsupported"),
            (r#"{"sampleRate":-8000}"#, "unsupported"),
            (r#"{"sampleRate":8000.5}"#, "unsupported"),
            (r#"{"sampleRate":0}"#, "unsupported"),
            (r#"{"sampleRate":true}"#, "malformed"),
            (r#"{"sampleRate":[8000]}"#, "malformed"),
            (r#"{"mixType":"quad"}"#, "unsupported"),
            (r#"{"mixType":2}"#, "malformed"),
            (r#"{"callSid":{"id":1}}"#, "malformed"),
            (r#"{"lang":["en"]}"#, "malformed"),
            (r#"{"agent":true}"#, "malformed"),
        ];
        for (text, kind) in cases {
            let mut s = AudioforkSession::new("gen".into());
            let err = s.on_text(text).expect_err(text);
            let got = match err {
                SourceError::Malformed { .. } => "malformed",
                SourceError::Protocol { .. } => "protocol",
                SourceError::Unsupported { .. } => "unsupported",
            };
            assert_eq!(got, kind, "{text}: {err}");
            // The session is done for; the connection closes without a call.
            assert!(s.on_binary(&[0, 0]).is_err());
            assert_eq!(s.on_close(), vec![]);
        }
    }

    #[test]
    fn mono_audio_values_and_positions() {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"mixType":"mono"}"#).unwrap();
        let events = s.on_binary(&pcm(&[0, 16384, -32768, 32767])).unwrap();
        assert_eq!(
            events,
            vec![SourceEvent::Audio(AudioChunk {
                leg: Leg::Customer,
                start_sample: 0,
                samples: vec![0.0, 0.5, -1.0, 32767.0 / 32768.0],
            })]
        );
        let events = s.on_binary(&pcm(&[1; 160])).unwrap();
        assert!(matches!(
            events.as_slice(),
            [SourceEvent::Audio(AudioChunk { start_sample: 4, samples, .. })] if samples.len() == 160
        ));
    }

    #[test]
    fn mixed_is_one_mixed_leg() {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"mixType":"mixed"}"#).unwrap();
        let events = s.on_binary(&pcm(&[100, 200])).unwrap();
        assert!(matches!(
            events.as_slice(),
            [SourceEvent::Audio(AudioChunk { leg: Leg::Mixed, start_sample: 0, samples })] if samples.len() == 2
        ));
    }

    #[test]
    fn stereo_is_deinterleaved() {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"mixType":"stereo"}"#).unwrap();
        // Caller left (positive), callee right (negative).
        let events = s
            .on_binary(&pcm(&[1000, -1000, 2000, -2000, 3000, -3000]))
            .unwrap();
        let legs = collect(&events);
        assert_eq!(legs.len(), 2);
        assert_eq!(legs[0].0, Leg::Customer);
        assert_eq!(legs[1].0, Leg::Agent);
        let scale = |v: &[i16]| {
            v.iter()
                .map(|&x| f32::from(x) / 32768.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(legs[0].1, scale(&[1000, 2000, 3000]));
        assert_eq!(legs[1].1, scale(&[-1000, -2000, -3000]));
    }

    fn stream_in_pieces(mix: &str, bytes: &[u8], piece: usize) -> Vec<(Leg, Vec<f32>)> {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(&json!({ "mixType": mix }).to_string()).unwrap();
        let mut events = Vec::new();
        for chunk in bytes.chunks(piece) {
            events.extend(s.on_binary(chunk).unwrap());
        }
        events.extend(s.on_close());
        collect(&events)
    }

    #[test]
    fn byte_stream_split_anywhere_gives_identical_samples() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| ((i * 7919) % 65536 - 32768) as i16)
            .collect();
        let bytes = pcm(&samples);
        for mix in ["mono", "stereo"] {
            let whole = stream_in_pieces(mix, &bytes, bytes.len());
            assert!(!whole.is_empty());
            for piece in [1, 2, 3, 5, 7, 320, 321, 999] {
                assert_eq!(
                    stream_in_pieces(mix, &bytes, piece),
                    whole,
                    "{mix}, pieces of {piece}"
                );
            }
        }
        // Irregular splits, including empty messages.
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"mixType":"stereo"}"#).unwrap();
        let mut events = Vec::new();
        let mut rest = bytes.as_slice();
        for len in [1usize, 0, 3, 7, 2, 1, 0, 11].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at((*len).min(rest.len()));
            events.extend(s.on_binary(head).unwrap());
            rest = tail;
        }
        assert_eq!(
            collect(&events),
            stream_in_pieces("stereo", &bytes, bytes.len())
        );
    }

    #[test]
    fn partial_frame_at_close_is_dropped() {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"mixType":"stereo"}"#).unwrap();
        let events = s.on_binary(&pcm(&[1, 2, 3])).unwrap();
        let legs = collect(&events);
        assert_eq!((legs[0].1.len(), legs[1].1.len()), (1, 1));
        assert_eq!(s.on_close(), vec![SourceEvent::Ended(EndReason::Hangup)]);
        assert_eq!(s.on_close(), vec![]);
        assert_eq!(s.on_binary(&[0; 4]).unwrap(), vec![]);
        assert_eq!(s.on_text("{}").unwrap(), vec![]);
    }

    #[test]
    fn dtmf_frames_at_16k() {
        let mut s = AudioforkSession::new("gen".into());
        s.on_text(r#"{"callSid":"c","sampleRate":16000}"#).unwrap();
        assert_eq!(
            s.on_text(r#"{"event":"dtmf","dtmf":"5","duration":"250"}"#)
                .unwrap(),
            vec![SourceEvent::Dtmf {
                digit: '5',
                at_ms: 0
            }]
        );
        s.on_binary(&pcm(&[0; 16_000])).unwrap();
        assert_eq!(
            s.on_text(r##"{"type":"DTMF","digit":"#"}"##).unwrap(),
            vec![SourceEvent::Dtmf {
                digit: '#',
                at_ms: 1000
            }]
        );
        s.on_binary(&pcm(&[0; 8_000])).unwrap();
        assert_eq!(
            s.on_text(r#"{"event":"dtmf","dtmf":{"digit":"b"}}"#)
                .unwrap(),
            vec![SourceEvent::Dtmf {
                digit: 'B',
                at_ms: 1500
            }]
        );
        assert_eq!(
            s.on_text(r#"{"event":"dtmf","digits":"12x"}"#).unwrap(),
            vec![
                SourceEvent::Dtmf {
                    digit: '1',
                    at_ms: 1500
                },
                SourceEvent::Dtmf {
                    digit: '2',
                    at_ms: 1500
                }
            ]
        );
        // Everything else is ignored, not fatal.
        for text in [
            "not json",
            r#"{"event":"transcription"}"#,
            r#"{"event":"dtmf"}"#,
            r#"{"event":"dtmf","dtmf":true}"#,
            "[]",
        ] {
            assert_eq!(s.on_text(text).unwrap(), vec![], "{text}");
        }
        assert!(s.on_binary(&pcm(&[0; 2])).is_ok());
    }

    #[test]
    fn binary_first_is_refused_by_default() {
        let mut s = AudioforkSession::new("gen".into());
        assert!(matches!(
            s.on_binary(&[0; 320]),
            Err(SourceError::Protocol { .. })
        ));
        assert!(s.on_text("{}").is_err(), "poisoned");
        assert_eq!(s.on_close(), vec![]);
    }

    #[test]
    fn binary_first_with_a_configured_format() {
        let mut s = AudioforkSession::new("gen-5".into())
            .with_default_format(MixType::Stereo, 16_000)
            .unwrap();
        let events = s.on_binary(&pcm(&[1, 2, 3, 4])).unwrap();
        let info = started_info(&events[..1]);
        assert_eq!(info.call_id, "gen-5");
        assert_eq!(info.sample_rate, 16_000);
        assert_eq!(info.legs, vec![Leg::Customer, Leg::Agent]);
        assert_eq!(info.metadata, Value::Null);
        assert_eq!(collect(&events[1..]).len(), 2);
        // Text after that is not metadata any more.
        assert_eq!(s.on_text(r#"{"sampleRate":8000}"#).unwrap(), vec![]);

        // The configured format also fills in what metadata leaves out.
        let mut s = AudioforkSession::new("gen".into())
            .with_default_format(MixType::Mixed, 24_000)
            .unwrap();
        let info = started_info(&s.on_text(r#"{"sampleRate":8000}"#).unwrap());
        assert_eq!((info.sample_rate, info.legs), (8000, vec![Leg::Mixed]));

        assert!(
            AudioforkSession::new("gen".into())
                .with_default_format(MixType::Mono, 44_100)
                .is_err()
        );
    }

    #[test]
    fn every_supported_rate() {
        for rate in SAMPLE_RATES {
            for value in [
                json!(rate),
                json!(rate.to_string()),
                json!(format!("{}k", rate / 1000)),
            ] {
                let mut s = AudioforkSession::new("gen".into());
                let info = started_info(
                    &s.on_text(&json!({ "sampleRate": value }).to_string())
                        .unwrap(),
                );
                assert_eq!(info.sample_rate, rate, "{value}");
            }
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let texts = [
            "{}",
            r#"{"mixType":"stereo"}"#,
            r#"{"sampleRate":"64k","mix":"mixed"}"#,
            r#"{"event":"dtmf","dtmf":"9"}"#,
            "garbage",
            r#"{"sampleRate":1e300}"#,
            r#"{"sampleRate":"99999999999999999999k"}"#,
        ];
        for _ in 0..2000 {
            let mut s = AudioforkSession::new("gen".into());
            if next() % 2 == 0 {
                s = s.with_default_format(MixType::Stereo, 8000).unwrap();
            }
            for _ in 0..6 {
                if next() % 3 == 0 {
                    let _ = s.on_text(texts[(next() % texts.len() as u64) as usize]);
                } else {
                    let len = (next() % 9) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    let _ = s.on_binary(&bytes);
                }
            }
            let _ = s.on_close();
        }
    }
}
