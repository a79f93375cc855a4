//! Twilio Media Streams: the session state machine for one stream websocket, and the
//! `X-Twilio-Signature` check for the websocket upgrade.
//!
//! [`TwilioSession::on_text`] takes each JSON text frame Twilio sends (`connected`, `start`,
//! `media`, `dtmf`, `mark`, `stop`) and turns it into [`SourceEvent`]s: the call's start (legs
//! from `start.tracks`: inbound is the caller, outbound the agent), 8 kHz mu-law audio expanded
//! to samples, DTMF, and the end of the stream. Numbers are accepted as JSON numbers or as
//! strings, since Twilio sends most of them as strings.
//!
//! Alignment: each leg's `start_sample` follows the media `timestamp`s (milliseconds since the
//! stream started), so the two legs stay on one call clock even when packets are lost or one
//! track starts late. A packet later than its leg's next sample by more than
//! [`JITTER_TOLERANCE_MS`] is preceded by explicit silence, up to [`MAX_SILENCE_FILL_MS`];
//! longer gaps are not filled, the leg's `start_sample` jumps instead. A packet that is early
//! or only slightly late continues its leg contiguously, so timestamp rounding never inserts
//! clicks.
//!
//! This module does no I/O: it does not accept websockets, read the upgrade request or keep
//! time. It never sends anything back to Twilio (no bidirectional audio, marks or clears).

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;

use crate::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use crate::domain::leg::{AudioChunk, Leg};
use crate::ingest::{Session, SourceError};
use crate::pipeline::audio::g711::ulaw_slice_to_f32;

const PROTOCOL: &str = "twilio";

/// Media Streams audio is always 8 kHz mu-law, mono per track.
pub const SAMPLE_RATE: u32 = 8_000;

const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

/// A packet at most this much later than its leg's next sample is treated as contiguous:
/// timestamps are whole milliseconds and drift a little against the sample count, and filling
/// such slivers with silence would only add clicks. It is under one 20 ms packet, so a single
/// lost packet is still filled.
pub const JITTER_TOLERANCE_MS: u64 = 10;

/// The longest gap filled with explicit silence. Longer gaps (a track that starts minutes in,
/// a long outage) move `start_sample` instead of allocating minutes of zeros.
pub const MAX_SILENCE_FILL_MS: u64 = 5_000;

/// The custom parameter that carries callguard's ingest token: Twilio strips query strings
/// from stream URLs, so `<Parameter name="token">` is the only way to pass it.
const TOKEN_PARAM: &str = "token";

/// Accepts payloads with or without trailing `=`: padding is not worth closing a call over.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingStart,
    Streaming,
    /// `stop` arrived: whatever follows is ignored.
    Stopped,
}

#[derive(Debug, Clone)]
struct Track {
    leg: Leg,
    /// Where this leg's next sample sits on the call clock.
    next_sample: u64,
}

/// One Twilio Media Streams websocket, from `connected` to `stop`.
#[derive(Debug)]
pub struct TwilioSession {
    phase: Phase,
    connected_seen: bool,
    call_id: Option<String>,
    stream_sid: Option<String>,
    token: Option<String>,
    inbound: Option<Track>,
    outbound: Option<Track>,
    last_media_ms: u64,
    /// A `Started` went out and no `Ended` yet: `on_close` owes the pipeline an end.
    call_open: bool,
    /// An error was returned; the connection is to be closed and nothing more is accepted.
    failed: bool,
}

impl Default for TwilioSession {
    fn default() -> Self {
        Self::new()
    }
}

impl TwilioSession {
    pub fn new() -> Self {
        TwilioSession {
            phase: Phase::AwaitingStart,
            connected_seen: false,
            call_id: None,
            stream_sid: None,
            token: None,
            inbound: None,
            outbound: None,
            last_media_ms: 0,
            call_open: false,
            failed: false,
        }
    }

    /// The `token` custom parameter of the `start` message, once it has arrived.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The CallSid, once `start` has arrived.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// Handles one websocket text frame.
    ///
    /// After an error the session refuses everything else: the server is expected to close
    /// the connection (and call [`on_close`](Self::on_close) so the call gets its end).
    pub fn on_text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        if self.failed {
            return Err(SourceError::protocol(
                PROTOCOL,
                "the session already failed; the connection must close",
            ));
        }
        let result = self.handle(frame);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// The websocket closed. Yields `Ended(Disconnected)` if a call was started and has not
    /// ended, nothing otherwise; later calls yield nothing.
    pub fn on_close(&mut self) -> Vec<SourceEvent> {
        if self.call_open {
            self.call_open = false;
            self.phase = Phase::Stopped;
            vec![SourceEvent::Ended(EndReason::Disconnected)]
        } else {
            Vec::new()
        }
    }

    fn handle(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        if self.phase == Phase::Stopped {
            tracing::debug!(
                call_id = self.call_id.as_deref().unwrap_or(""),
                "twilio: ignoring a message after stop"
            );
            return Ok(Vec::new());
        }
        let message: Value = serde_json::from_str(frame)
            .map_err(|e| SourceError::malformed(PROTOCOL, format!("not JSON: {e}")))?;
        let message = message
            .as_object()
            .ok_or_else(|| SourceError::malformed(PROTOCOL, "message is not a JSON object"))?;
        let event = req_str(message, "event", "message")?;
        match event {
            "connected" => self.on_connected(message),
            "start" => self.on_start(message),
            "media" => self.on_media(message),
            "dtmf" => self.on_dtmf(message),
            "mark" => self.on_mark(message),
            "stop" => self.on_stop(message),
            other => {
                // Twilio adds events over time; an unknown one is no reason to drop a call.
                tracing::debug!(event = other, "twilio: ignoring an unknown event");
                Ok(Vec::new())
            }
        }
    }

    fn on_connected(
        &mut self,
        message: &Map<String, Value>,
    ) -> Result<Vec<SourceEvent>, SourceError> {
        if self.phase != Phase::AwaitingStart {
            return Err(SourceError::protocol(PROTOCOL, "`connected` after `start`"));
        }
        if self.connected_seen {
            return Err(SourceError::protocol(
                PROTOCOL,
                "a second `connected` message",
            ));
        }
        let protocol_name = opt_str(message, "protocol", "connected")?;
        let version = opt_str(message, "version", "connected")?;
        tracing::debug!(
            protocol = protocol_name.unwrap_or(""),
            version = version.unwrap_or(""),
            "twilio: stream connected"
        );
        self.connected_seen = true;
        Ok(Vec::new())
    }

    fn on_start(&mut self, message: &Map<String, Value>) -> Result<Vec<SourceEvent>, SourceError> {
        if self.phase != Phase::AwaitingStart {
            return Err(SourceError::protocol(PROTOCOL, "a second `start` message"));
        }
        let start = req_obj(message, "start", "start message")?;
        let call_id = req_str(start, "callSid", "start")?;
        if call_id.is_empty() {
            return Err(SourceError::malformed(PROTOCOL, "start.callSid is empty"));
        }
        let inner_sid = opt_str(start, "streamSid", "start")?;
        let outer_sid = opt_str(message, "streamSid", "start message")?;
        if let (Some(a), Some(b)) = (inner_sid, outer_sid)
            && a != b
        {
            return Err(SourceError::malformed(
                PROTOCOL,
                format!("start.streamSid {a:?} differs from the message's streamSid {b:?}"),
            ));
        }
        opt_str(start, "accountSid", "start")?;

        let legs = parse_tracks(start)?;
        check_media_format(start)?;

        let params = match start.get("customParameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(params)) => Some(params),
            Some(_) => {
                return Err(SourceError::malformed(
                    PROTOCOL,
                    "start.customParameters is not an object",
                ));
            }
        };
        let param = |name: &str| {
            params
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let token = param(TOKEN_PARAM);
        let lang = param("lang").or_else(|| param("language"));
        let agent = param("agent");

        // The store keeps the metadata; the ingest token is a credential and stays out of it.
        let mut metadata = start.clone();
        if let Some(Value::Object(p)) = metadata.get_mut("customParameters") {
            p.remove(TOKEN_PARAM);
        }

        let info = CallInfo {
            call_id: call_id.to_string(),
            source: SourceKind::Twilio,
            legs: legs.clone(),
            sample_rate: SAMPLE_RATE,
            lang,
            agent,
            metadata: Value::Object(metadata),
        };
        for leg in legs {
            let track = Some(Track {
                leg,
                next_sample: 0,
            });
            match leg {
                Leg::Agent => self.outbound = track,
                _ => self.inbound = track,
            }
        }
        self.call_id = Some(call_id.to_string());
        self.stream_sid = inner_sid.or(outer_sid).map(str::to_string);
        self.token = token;
        self.phase = Phase::Streaming;
        self.call_open = true;
        tracing::debug!(call_id, "twilio: stream started");
        Ok(vec![SourceEvent::Started(info)])
    }

    fn on_media(&mut self, message: &Map<String, Value>) -> Result<Vec<SourceEvent>, SourceError> {
        self.require_streaming("media")?;
        self.check_stream_sid(message)?;
        let media = req_obj(message, "media", "media message")?;
        let track_name = req_str(media, "track", "media")?;
        let timestamp_ms = req_u64(media, "timestamp", "media")?;
        if let Some(chunk) = media.get("chunk") {
            as_u64(chunk).ok_or_else(|| {
                SourceError::malformed(PROTOCOL, "media.chunk is not a whole number")
            })?;
        }
        let payload = req_str(media, "payload", "media")?;
        let bytes = LENIENT_BASE64.decode(payload).map_err(|e| {
            SourceError::malformed(PROTOCOL, format!("media.payload is not base64: {e}"))
        })?;
        let at_sample = timestamp_ms.checked_mul(SAMPLES_PER_MS).ok_or_else(|| {
            SourceError::malformed(
                PROTOCOL,
                format!("media.timestamp {timestamp_ms} is out of range"),
            )
        })?;

        let track = match track_name {
            "inbound" => self.inbound.as_mut(),
            "outbound" => self.outbound.as_mut(),
            other => {
                return Err(SourceError::malformed(
                    PROTOCOL,
                    format!("unknown media track {other:?}"),
                ));
            }
        }
        .ok_or_else(|| {
            SourceError::protocol(
                PROTOCOL,
                format!("media for track {track_name:?}, which `start` did not announce"),
            )
        })?;

        self.last_media_ms = timestamp_ms;
        if bytes.is_empty() {
            tracing::debug!(track = track_name, "twilio: empty media payload");
            return Ok(Vec::new());
        }

        let late_by = at_sample.saturating_sub(track.next_sample);
        let (start_sample, fill) = if late_by <= JITTER_TOLERANCE_MS * SAMPLES_PER_MS {
            (track.next_sample, 0)
        } else if late_by <= MAX_SILENCE_FILL_MS * SAMPLES_PER_MS {
            (track.next_sample, late_by)
        } else {
            tracing::debug!(
                leg = %track.leg,
                gap_ms = late_by / SAMPLES_PER_MS,
                "twilio: gap too long to fill, moving start_sample"
            );
            (at_sample, 0)
        };
        // `fill` is at most MAX_SILENCE_FILL_MS worth of samples, so it fits any usize.
        let fill = fill as usize;
        let mut samples = Vec::with_capacity(fill + bytes.len());
        samples.resize(fill, 0.0);
        ulaw_slice_to_f32(&bytes, &mut samples);
        track.next_sample = start_sample.saturating_add(samples.len() as u64);
        Ok(vec![SourceEvent::Audio(AudioChunk {
            leg: track.leg,
            start_sample,
            samples,
        })])
    }

    fn on_dtmf(&mut self, message: &Map<String, Value>) -> Result<Vec<SourceEvent>, SourceError> {
        self.require_streaming("dtmf")?;
        self.check_stream_sid(message)?;
        let dtmf = req_obj(message, "dtmf", "dtmf message")?;
        opt_str(dtmf, "track", "dtmf")?;
        let digit = req_str(dtmf, "digit", "dtmf")?;
        let digit = dtmf_digit(digit).ok_or_else(|| {
            SourceError::malformed(
                PROTOCOL,
                format!("dtmf.digit {digit:?} is not one DTMF key"),
            )
        })?;
        Ok(vec![SourceEvent::Dtmf {
            digit,
            at_ms: self.last_media_ms,
        }])
    }

    fn on_mark(&mut self, message: &Map<String, Value>) -> Result<Vec<SourceEvent>, SourceError> {
        self.require_streaming("mark")?;
        self.check_stream_sid(message)?;
        let mark = req_obj(message, "mark", "mark message")?;
        let name = opt_str(mark, "name", "mark")?;
        // Marks only echo what a bidirectional client sent; callguard sends none.
        tracing::trace!(name = name.unwrap_or(""), "twilio: mark");
        Ok(Vec::new())
    }

    fn on_stop(&mut self, message: &Map<String, Value>) -> Result<Vec<SourceEvent>, SourceError> {
        self.require_streaming("stop")?;
        self.check_stream_sid(message)?;
        match message.get("stop") {
            None | Some(Value::Null) => {}
            Some(Value::Object(stop)) => {
                if let Some(sid) = opt_str(stop, "callSid", "stop")?
                    && Some(sid) != self.call_id.as_deref()
                {
                    return Err(SourceError::protocol(
                        PROTOCOL,
                        format!("stop.callSid {sid:?} is not this stream's call"),
                    ));
                }
                opt_str(stop, "accountSid", "stop")?;
            }
            Some(_) => return Err(SourceError::malformed(PROTOCOL, "stop is not an object")),
        }
        self.phase = Phase::Stopped;
        self.call_open = false;
        tracing::debug!(
            call_id = self.call_id.as_deref().unwrap_or(""),
            "twilio: stream stopped"
        );
        Ok(vec![SourceEvent::Ended(EndReason::Hangup)])
    }

    fn require_streaming(&self, event: &str) -> Result<(), SourceError> {
        match self.phase {
            Phase::Streaming => Ok(()),
            _ => Err(SourceError::protocol(
                PROTOCOL,
                format!("`{event}` before `start`"),
            )),
        }
    }

    fn check_stream_sid(&self, message: &Map<String, Value>) -> Result<(), SourceError> {
        let sid = opt_str(message, "streamSid", "message")?;
        match (sid, self.stream_sid.as_deref()) {
            (Some(got), Some(expected)) if got != expected => Err(SourceError::protocol(
                PROTOCOL,
                format!("streamSid {got:?} is not this stream's {expected:?}"),
            )),
            _ => Ok(()),
        }
    }
}

fn parse_tracks(start: &Map<String, Value>) -> Result<Vec<Leg>, SourceError> {
    let tracks = start
        .get("tracks")
        .ok_or_else(|| SourceError::malformed(PROTOCOL, "start.tracks is missing"))?
        .as_array()
        .ok_or_else(|| SourceError::malformed(PROTOCOL, "start.tracks is not an array"))?;
    let mut legs = Vec::with_capacity(2);
    for track in tracks {
        let leg = match track.as_str() {
            Some("inbound") => Leg::Customer,
            Some("outbound") => Leg::Agent,
            Some(other) => {
                return Err(SourceError::malformed(
                    PROTOCOL,
                    format!("unknown track {other:?} in start.tracks"),
                ));
            }
            None => {
                return Err(SourceError::malformed(
                    PROTOCOL,
                    "start.tracks holds a non-string",
                ));
            }
        };
        if !legs.contains(&leg) {
            legs.push(leg);
        }
    }
    if legs.is_empty() {
        return Err(SourceError::malformed(PROTOCOL, "start.tracks is empty"));
    }
    Ok(legs)
}

fn check_media_format(start: &Map<String, Value>) -> Result<(), SourceError> {
    let format = req_obj(start, "mediaFormat", "start")?;
    let encoding = req_str(format, "encoding", "start.mediaFormat")?;
    let rate = req_u64(format, "sampleRate", "start.mediaFormat")?;
    let channels = req_u64(format, "channels", "start.mediaFormat")?;
    if !encoding.eq_ignore_ascii_case("audio/x-mulaw")
        || rate != u64::from(SAMPLE_RATE)
        || channels != 1
    {
        return Err(SourceError::Unsupported {
            protocol: PROTOCOL,
            what: format!(
                "media format {encoding} {rate} Hz {channels} channel(s); only audio/x-mulaw 8000 Hz mono is supported"
            ),
        });
    }
    Ok(())
}

/// One DTMF key (`0`-`9`, `*`, `#`, `A`-`D`), upper-cased.
fn dtmf_digit(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return None;
    }
    (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')).then_some(c)
}

/// Checks an `X-Twilio-Signature` header value.
///
/// Twilio's scheme: HMAC-SHA1, keyed with the account's auth token, over the full URL Twilio
/// requested followed by the POST parameters sorted by name, each as name then value with no
/// separators; the header is that digest in base64. The websocket upgrade is a GET, so for
/// Media Streams `params` is empty and the URL is the `wss://` URL, query string included.
///
/// Like Twilio's helper libraries, identical name/value pairs count once, and the URL is also
/// tried without its port and with the scheme's default port, because proxies add or remove
/// `:443`. The digest comparison is constant-time.
pub fn validate_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature_b64: &str,
) -> bool {
    let Ok(expected) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut signed_params = String::new();
    for (name, value) in pairs {
        signed_params.push_str(name);
        signed_params.push_str(value);
    }
    url_variants(url).iter().any(|candidate| {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
            return false;
        };
        mac.update(candidate.as_bytes());
        mac.update(signed_params.as_bytes());
        mac.verify_slice(&expected).is_ok()
    })
}

/// The URL as given, plus the same URL without its port (if it has one) or with the scheme's
/// default port (if it has none).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // A colon inside IPv6 brackets is not a port separator.
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'));
    match port_colon {
        Some(colon) => {
            let host = &host_port[..colon];
            variants.push(format!("{scheme}://{userinfo}{host}{tail}"));
        }
        None => {
            let default_port = match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => Some(443),
                "http" | "ws" => Some(80),
                _ => None,
            };
            if let Some(port) = default_port {
                variants.push(format!("{scheme}://{userinfo}{host_port}:{port}{tail}"));
            }
        }
    }
    variants
}

fn req_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    within: &str,
) -> Result<&'a Map<String, Value>, SourceError> {
    match obj.get(key) {
        Some(Value::Object(inner)) => Ok(inner),
        Some(_) => Err(SourceError::malformed(
            PROTOCOL,
            format!("{within}: `{key}` is not an object"),
        )),
        None => Err(SourceError::malformed(
            PROTOCOL,
            format!("{within}: `{key}` is missing"),
        )),
    }
}

fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    within: &str,
) -> Result<&'a str, SourceError> {
    opt_str(obj, key, within)?
        .ok_or_else(|| SourceError::malformed(PROTOCOL, format!("{within}: `{key}` is missing")))
}

/// A string field that may be absent (or null) but must be a string when present.
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    within: &str,
) -> Result<Option<&'a str>, SourceError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SourceError::malformed(
            PROTOCOL,
            format!("{within}: `{key}` is not a string"),
        )),
    }
}

/// A whole number, sent either as a JSON number or as a string of digits.
fn req_u64(obj: &Map<String, Value>, key: &str, within: &str) -> Result<u64, SourceError> {
    let value = obj
        .get(key)
        .ok_or_else(|| SourceError::malformed(PROTOCOL, format!("{within}: `{key}` is missing")))?;
    as_u64(value).ok_or_else(|| {
        SourceError::malformed(
            PROTOCOL,
            format!("{within}: `{key}` is not a whole number: {value}"),
        )
    })
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Session for TwilioSession {
    fn on_text(&mut self, frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        TwilioSession::on_text(self, frame)
    }
    fn on_binary(&mut self, _data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        // Twilio sends text frames only; a stray binary frame carries nothing we use.
        Ok(Vec::new())
    }
    fn on_close(&mut self) -> Vec<SourceEvent> {
        TwilioSession::on_close(self)
    }
    fn token(&self) -> Option<&str> {
        TwilioSession::token(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CALL: &str = "CA0123456789abcdef0123456789abcdef";
    const STREAM: &str = "MZ0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

    fn connected() -> String {
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
    }

    fn start_msg(tracks: &[&str]) -> Value {
        json!({
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": STREAM,
            "start": {
                "accountSid": ACCOUNT,
                "streamSid": STREAM,
                "callSid": CALL,
                "tracks": tracks,
                "customParameters": {"token": "s3cret", "lang": "zh", "agent": "1042", "queue": "billing"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        })
    }

    fn start(tracks: &[&str]) -> String {
        start_msg(tracks).to_string()
    }

    fn media(track: &str, timestamp: u64, payload: &[u8]) -> String {
        json!({
            "event": "media",
            "sequenceNumber": "3",
            "streamSid": STREAM,
            "media": {
                "track": track,
                "chunk": "1",
                "timestamp": timestamp.to_string(),
                "payload": STANDARD.encode(payload)
            }
        })
        .to_string()
    }

    fn dtmf(digit: &str) -> String {
        json!({
            "event": "dtmf",
            "streamSid": STREAM,
            "sequenceNumber": "9",
            "dtmf": {"track": "inbound_track", "digit": digit}
        })
        .to_string()
    }

    fn stop() -> String {
        json!({
            "event": "stop",
            "sequenceNumber": "10",
            "streamSid": STREAM,
            "stop": {"accountSid": ACCOUNT, "callSid": CALL}
        })
        .to_string()
    }

    fn started(tracks: &[&str]) -> TwilioSession {
        let mut s = TwilioSession::new();
        s.on_text(&connected()).unwrap();
        s.on_text(&start(tracks)).unwrap();
        s
    }

    /// The single Audio event a media message produced: (leg, start_sample, samples).
    fn audio(events: Vec<SourceEvent>) -> (Leg, u64, Vec<f32>) {
        match events.as_slice() {
            [
                SourceEvent::Audio(AudioChunk {
                    leg,
                    start_sample,
                    samples,
                }),
            ] => (*leg, *start_sample, samples.clone()),
            other => panic!("expected one Audio event, got {other:?}"),
        }
    }

    #[test]
    fn realistic_call() {
        let mut s = TwilioSession::new();
        assert_eq!(s.on_text(&connected()).unwrap(), vec![]);
        assert_eq!(s.token(), None);

        let events = s.on_text(&start(&["inbound", "outbound"])).unwrap();
        let [SourceEvent::Started(info)] = events.as_slice() else {
            panic!("expected Started, got {events:?}");
        };
        assert_eq!(info.call_id, CALL);
        assert_eq!(info.source, SourceKind::Twilio);
        assert_eq!(info.legs, vec![Leg::Customer, Leg::Agent]);
        assert_eq!(info.sample_rate, 8000);
        assert_eq!(info.lang.as_deref(), Some("zh"));
        assert_eq!(info.agent.as_deref(), Some("1042"));
        assert_eq!(info.metadata["streamSid"], STREAM);
        assert_eq!(info.metadata["accountSid"], ACCOUNT);
        assert_eq!(info.metadata["customParameters"]["queue"], "billing");
        assert!(
            info.metadata["customParameters"].get("token").is_none(),
            "the token must not reach the store"
        );
        assert_eq!(s.token(), Some("s3cret"));
        assert_eq!(s.call_id(), Some(CALL));

        let silence = [0xFFu8; 160];
        let loud = [0x80u8; 160];
        for (i, ts) in [0u64, 20, 40].into_iter().enumerate() {
            let (leg, at, samples) = audio(s.on_text(&media("inbound", ts, &silence)).unwrap());
            assert_eq!(
                (leg, at, samples.len()),
                (Leg::Customer, i as u64 * 160, 160)
            );
            assert!(samples.iter().all(|&x| x == 0.0));
            let (leg, at, samples) = audio(s.on_text(&media("outbound", ts, &loud)).unwrap());
            assert_eq!((leg, at, samples.len()), (Leg::Agent, i as u64 * 160, 160));
            assert!(
                samples
                    .iter()
                    .all(|&x| (x - 32124.0 / 32768.0).abs() < 1e-6)
            );
        }

        assert_eq!(
            s.on_text(&dtmf("5")).unwrap(),
            vec![SourceEvent::Dtmf {
                digit: '5',
                at_ms: 40
            }]
        );
        let mark = json!({"event": "mark", "streamSid": STREAM, "mark": {"name": "greeting"}});
        assert_eq!(s.on_text(&mark.to_string()).unwrap(), vec![]);
        assert_eq!(
            s.on_text(&stop()).unwrap(),
            vec![SourceEvent::Ended(EndReason::Hangup)]
        );
        // Anything after stop is ignored, and the close owes nothing.
        assert_eq!(s.on_text(&media("inbound", 60, &silence)).unwrap(), vec![]);
        assert_eq!(s.on_text("not even json").unwrap(), vec![]);
        assert_eq!(s.on_close(), vec![]);
    }

    #[test]
    fn numbers_as_numbers_and_as_strings() {
        let mut msg = start_msg(&["inbound"]);
        msg["start"]["mediaFormat"] =
            json!({"encoding": "audio/x-mulaw", "sampleRate": "8000", "channels": "1"});
        let mut s = TwilioSession::new();
        assert!(matches!(
            s.on_text(&msg.to_string()).unwrap().as_slice(),
            [SourceEvent::Started(_)]
        ));
        let numeric = json!({
            "event": "media",
            "sequenceNumber": 2,
            "media": {"track": "inbound", "chunk": 1, "timestamp": 0, "payload": STANDARD.encode([0xFF; 160])}
        });
        let (_, at, samples) = audio(s.on_text(&numeric.to_string()).unwrap());
        assert_eq!((at, samples.len()), (0, 160));
        let (_, at, _) = audio(s.on_text(&media("inbound", 20, &[0xFF; 160])).unwrap());
        assert_eq!(at, 160);
    }

    #[test]
    fn connected_is_optional_and_inbound_only_streams_work() {
        let mut s = TwilioSession::new();
        let events = s.on_text(&start(&["inbound"])).unwrap();
        let [SourceEvent::Started(info)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(info.legs, vec![Leg::Customer]);
        assert!(matches!(
            s.on_text(&media("outbound", 0, &[0xFF; 160])),
            Err(SourceError::Protocol { .. })
        ));
    }

    #[test]
    fn payload_sizes_other_than_160() {
        let mut s = started(&["inbound"]);
        let (_, at, samples) = audio(s.on_text(&media("inbound", 0, &[0xFF; 80])).unwrap());
        assert_eq!((at, samples.len()), (0, 80));
        let (_, at, samples) = audio(s.on_text(&media("inbound", 10, &[0xFF; 320])).unwrap());
        assert_eq!((at, samples.len()), (80, 320));
        let (_, at, samples) = audio(s.on_text(&media("inbound", 50, &[0xFF; 1])).unwrap());
        assert_eq!((at, samples.len()), (400, 1));
        // Unpadded base64 is accepted too.
        let unpadded = json!({
            "event": "media",
            "media": {"track": "inbound", "timestamp": "50", "payload": "//8"}
        });
        let (_, at, samples) = audio(s.on_text(&unpadded.to_string()).unwrap());
        assert_eq!((at, samples.len()), (401, 2));
        // An empty payload produces nothing and moves nothing.
        assert_eq!(s.on_text(&media("inbound", 60, &[])).unwrap(), vec![]);
        let (_, at, _) = audio(s.on_text(&media("inbound", 50, &[0xFF; 8])).unwrap());
        assert_eq!(at, 403);
    }

    #[test]
    fn lost_packets_are_filled_with_silence() {
        let mut s = started(&["inbound"]);
        audio(s.on_text(&media("inbound", 0, &[0x80; 160])).unwrap());
        // Packets 20, 40, 60 and 80 ms went missing.
        let (leg, at, samples) = audio(s.on_text(&media("inbound", 100, &[0x80; 160])).unwrap());
        assert_eq!((leg, at, samples.len()), (Leg::Customer, 160, 640 + 160));
        assert!(samples[..640].iter().all(|&x| x == 0.0));
        assert!(samples[640..].iter().all(|&x| x > 0.9));
        let (_, at, samples) = audio(s.on_text(&media("inbound", 120, &[0x80; 160])).unwrap());
        assert_eq!((at, samples.len()), (960, 160));
    }

    #[test]
    fn jitter_stays_contiguous() {
        let mut s = started(&["inbound"]);
        audio(s.on_text(&media("inbound", 0, &[0xFF; 160])).unwrap());
        // 5 ms late: within tolerance, no fill.
        let (_, at, samples) = audio(s.on_text(&media("inbound", 25, &[0xFF; 160])).unwrap());
        assert_eq!((at, samples.len()), (160, 160));
        // 10 ms early: contiguous, no overlap trimming.
        let (_, at, samples) = audio(s.on_text(&media("inbound", 30, &[0xFF; 160])).unwrap());
        assert_eq!((at, samples.len()), (320, 160));
        // Expected 60 ms; 70 ms is exactly at the tolerance: still contiguous.
        let (_, at, samples) = audio(s.on_text(&media("inbound", 70, &[0xFF; 160])).unwrap());
        assert_eq!((at, samples.len()), (480, 160));
        // Expected 80 ms; 91 ms is past it: 11 ms of silence.
        let (_, at, samples) = audio(s.on_text(&media("inbound", 91, &[0xFF; 160])).unwrap());
        assert_eq!((at, samples.len()), (640, 88 + 160));
    }

    #[test]
    fn late_starting_outbound_track_is_aligned() {
        let mut s = started(&["inbound", "outbound"]);
        for ts in (0..2000).step_by(20) {
            audio(s.on_text(&media("inbound", ts, &[0xFF; 160])).unwrap());
        }
        // The agent's audio starts 2 s into the stream: 2 s of silence, then the audio, so
        // the agent's first word lands at call time 2 s.
        let (leg, at, samples) = audio(s.on_text(&media("outbound", 2000, &[0x80; 160])).unwrap());
        assert_eq!((leg, at, samples.len()), (Leg::Agent, 0, 16_000 + 160));
        assert!(samples[..16_000].iter().all(|&x| x == 0.0));
        let (_, at, _) = audio(s.on_text(&media("outbound", 2020, &[0x80; 160])).unwrap());
        assert_eq!(at, 16_160);
        let (_, at, _) = audio(s.on_text(&media("inbound", 2000, &[0xFF; 160])).unwrap());
        assert_eq!(at, 16_000, "both legs on the same clock");
    }

    #[test]
    fn very_late_track_moves_start_sample_instead_of_filling() {
        let mut s = started(&["inbound", "outbound"]);
        let (_, at, samples) = audio(s.on_text(&media("outbound", 60_000, &[0x80; 160])).unwrap());
        assert_eq!((at, samples.len()), (480_000, 160));
        let (_, at, _) = audio(s.on_text(&media("outbound", 60_020, &[0x80; 160])).unwrap());
        assert_eq!(at, 480_160);
        // Exactly the fill limit is still filled.
        let (_, at, samples) = audio(s.on_text(&media("inbound", 5_000, &[0x80; 160])).unwrap());
        assert_eq!((at, samples.len()), (0, 40_000 + 160));
    }

    #[test]
    fn dtmf_before_any_media_is_at_zero() {
        let mut s = started(&["inbound"]);
        assert_eq!(
            s.on_text(&dtmf("#")).unwrap(),
            vec![SourceEvent::Dtmf {
                digit: '#',
                at_ms: 0
            }]
        );
        assert_eq!(
            s.on_text(&dtmf("a")).unwrap(),
            vec![SourceEvent::Dtmf {
                digit: 'A',
                at_ms: 0
            }]
        );
    }

    #[test]
    fn unknown_events_are_ignored() {
        let mut s = started(&["inbound"]);
        assert_eq!(
            s.on_text(r#"{"event":"somethingNew","x":1}"#).unwrap(),
            vec![]
        );
        audio(s.on_text(&media("inbound", 0, &[0xFF; 160])).unwrap());
    }

    #[test]
    fn close_without_stop_ends_the_call_once() {
        let mut s = TwilioSession::new();
        assert_eq!(s.on_close(), vec![], "no call, no end");
        let mut s = started(&["inbound"]);
        assert_eq!(
            s.on_close(),
            vec![SourceEvent::Ended(EndReason::Disconnected)]
        );
        assert_eq!(s.on_close(), vec![]);
    }

    #[test]
    fn errors_poison_the_session_but_the_call_still_ends() {
        let mut s = started(&["inbound"]);
        assert!(s.on_text("{").is_err());
        assert!(matches!(
            s.on_text(&media("inbound", 0, &[0xFF; 160])),
            Err(SourceError::Protocol { .. })
        ));
        assert_eq!(
            s.on_close(),
            vec![SourceEvent::Ended(EndReason::Disconnected)]
        );

        // A failed `start` never opened a call.
        let mut s = TwilioSession::new();
        let mut bad = start_msg(&["inbound"]);
        bad["start"]["mediaFormat"]["encoding"] = json!("audio/l16");
        assert!(s.on_text(&bad.to_string()).is_err());
        assert_eq!(s.on_close(), vec![]);
    }

    fn media_with(media: Value) -> String {
        json!({"event": "media", "streamSid": STREAM, "media": media}).to_string()
    }

    #[test]
    fn malformed_messages() {
        let ok_payload = STANDARD.encode([0xFF; 160]);
        let with_start = |f: &dyn Fn(&mut Value)| {
            let mut m = start_msg(&["inbound", "outbound"]);
            f(&mut m);
            m.to_string()
        };
        // (description, needs a started session, frame, expected error kind)
        let cases: Vec<(&str, bool, String, &str)> = vec![
            ("not json", false, "hello".into(), "malformed"),
            ("truncated json", false, r#"{"event":"media""#.into(), "malformed"),
            ("json array", false, "[1,2]".into(), "malformed"),
            ("no event", false, r#"{"start":{}}"#.into(), "malformed"),
            ("event not a string", false, r#"{"event":5}"#.into(), "malformed"),
            ("media before start", false, media("inbound", 0, &[0xFF; 160]), "protocol"),
            ("dtmf before start", false, dtmf("1"), "protocol"),
            ("stop before start", false, stop(), "protocol"),
            ("mark before start", false, r#"{"event":"mark","mark":{"name":"x"}}"#.into(), "protocol"),
            ("start without start", false, r#"{"event":"start"}"#.into(), "malformed"),
            ("start not object", false, r#"{"event":"start","start":"x"}"#.into(), "malformed"),
            ("no callSid", false, with_start(&|m| {
                m["start"].as_object_mut().unwrap().remove("callSid");
            }), "malformed"),
            ("empty callSid", false, with_start(&|m| m["start"]["callSid"] = json!("")), "malformed"),
            ("callSid number", false, with_start(&|m| m["start"]["callSid"] = json!(5)), "malformed"),
            ("no tracks", false, with_start(&|m| {
                m["start"].as_object_mut().unwrap().remove("tracks");
            }), "malformed"),
            ("empty tracks", false, with_start(&|m| m["start"]["tracks"] = json!([])), "malformed"),
            ("unknown track", false, with_start(&|m| m["start"]["tracks"] = json!(["both"])), "malformed"),
            ("track not string", false, with_start(&|m| m["start"]["tracks"] = json!([1])), "malformed"),
            ("no mediaFormat", false, with_start(&|m| {
                m["start"].as_object_mut().unwrap().remove("mediaFormat");
            }), "malformed"),
            ("rate not a number", false, with_start(&|m| m["start"]["mediaFormat"]["sampleRate"] = json!("8k")), "malformed"),
            ("wrong encoding", false, with_start(&|m| m["start"]["mediaFormat"]["encoding"] = json!("audio/x-alaw")), "unsupported"),
            ("wrong rate", false, with_start(&|m| m["start"]["mediaFormat"]["sampleRate"] = json!(16000)), "unsupported"),
            ("stereo", false, with_start(&|m| m["start"]["mediaFormat"]["channels"] = json!("2")), "unsupported"),
            ("customParameters not object", false, with_start(&|m| m["start"]["customParameters"] = json!([])), "malformed"),
            ("streamSid mismatch in start", false, with_start(&|m| m["streamSid"] = json!("MZother")), "malformed"),
            ("second start", true, start(&["inbound"]), "protocol"),
            ("connected after start", true, connected(), "protocol"),
            ("media without media", true, r#"{"event":"media"}"#.into(), "malformed"),
            ("media without payload", true, media_with(json!({"track": "inbound", "timestamp": "0"})), "malformed"),
            ("payload not a string", true, media_with(json!({"track": "inbound", "timestamp": "0", "payload": 5})), "malformed"),
            ("bad base64", true, media_with(json!({"track": "inbound", "timestamp": "0", "payload": "!!!not base64"})), "malformed"),
            ("media without track", true, media_with(json!({"timestamp": "0", "payload": ok_payload})), "malformed"),
            ("unknown media track", true, media_with(json!({"track": "inbound_track", "timestamp": "0", "payload": ok_payload})), "malformed"),
            ("media without timestamp", true, media_with(json!({"track": "inbound", "payload": ok_payload})), "malformed"),
            ("negative timestamp", true, media_with(json!({"track": "inbound", "timestamp": -20, "payload": ok_payload})), "malformed"),
            ("fractional timestamp", true, media_with(json!({"track": "inbound", "timestamp": "20.5", "payload": ok_payload})), "malformed"),
            ("huge timestamp", true, media_with(json!({"track": "inbound", "timestamp": u64::MAX, "payload": ok_payload})), "malformed"),
            ("bad chunk", true, media_with(json!({"track": "inbound", "timestamp": "0", "chunk": "one", "payload": ok_payload})), "malformed"),
            ("streamSid mismatch", true, json!({"event": "media", "streamSid": "MZother", "media": {"track": "inbound", "timestamp": "0", "payload": ok_payload}}).to_string(), "protocol"),
            ("dtmf without dtmf", true, r#"{"event":"dtmf"}"#.into(), "malformed"),
            ("dtmf without digit", true, r#"{"event":"dtmf","dtmf":{"track":"inbound_track"}}"#.into(), "malformed"),
            ("dtmf two digits", true, dtmf("12"), "malformed"),
            ("dtmf empty", true, dtmf(""), "malformed"),
            ("dtmf not a key", true, dtmf("x"), "malformed"),
            ("stop for another call", true, r#"{"event":"stop","stop":{"callSid":"CAother"}}"#.into(), "protocol"),
            ("stop not object", true, r#"{"event":"stop","stop":3}"#.into(), "malformed"),
            ("mark without mark", true, r#"{"event":"mark"}"#.into(), "malformed"),
        ];
        for (what, needs_start, frame, kind) in cases {
            let mut s = if needs_start {
                started(&["inbound", "outbound"])
            } else {
                TwilioSession::new()
            };
            let err = match s.on_text(&frame) {
                Err(e) => e,
                Ok(events) => panic!("{what}: accepted, gave {events:?}"),
            };
            let got = match err {
                SourceError::Malformed { .. } => "malformed",
                SourceError::Protocol { .. } => "protocol",
                SourceError::Unsupported { .. } => "unsupported",
            };
            assert_eq!(got, kind, "{what}: {err}");
            assert!(err.to_string().contains("twilio"), "{what}: {err}");
        }
    }

    #[test]
    fn second_connected_is_refused() {
        let mut s = TwilioSession::new();
        s.on_text(&connected()).unwrap();
        assert!(matches!(
            s.on_text(&connected()),
            Err(SourceError::Protocol { .. })
        ));
    }

    #[test]
    fn arbitrary_text_never_panics() {
        // A small deterministic generator: no extra crates, same inputs every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"event\"",
            "\"media\"",
            "\"start\"",
            "\"track\"",
            "\"inbound\"",
            "\"timestamp\"",
            "\"payload\"",
            "\"//8=\"",
            "\"-1\"",
            "1e99",
            "null",
            "\"tracks\"",
            "\"callSid\"",
            "\"mediaFormat\"",
            "\"dtmf\"",
            "\"digit\"",
            "\"stop\"",
        ];
        for _ in 0..2000 {
            let mut s = started(&["inbound", "outbound"]);
            for _ in 0..4 {
                let len = (next() % 12) as usize;
                let text: String = (0..len)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect();
                let _ = s.on_text(&text);
            }
            let _ = s.on_close();
        }
    }

    // Twilio's own worked example, as used in the unit tests of Twilio's helper libraries
    // (e.g. twilio-php RequestValidatorTest) and in Twilio's request-validation docs.
    const DOC_TOKEN: &str = "12345";
    const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn doc_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn signature_matches_twilios_documented_example() {
        let mut params = doc_params();
        assert!(validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Order of the received parameters does not matter.
        params.reverse();
        assert!(validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Every input counts.
        assert!(!validate_signature(
            "54321",
            DOC_URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!validate_signature(
            DOC_TOKEN,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        params[0].1 = "9999".into();
        assert!(!validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &doc_params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8"
        ));
        assert!(!validate_signature(DOC_TOKEN, DOC_URL, &doc_params(), ""));
        assert!(!validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &doc_params(),
            "not base64 at all!"
        ));
    }

    #[test]
    fn signature_port_variants_and_duplicates() {
        // From the same helper-library tests: the signature Twilio computed over the URL with
        // ":443" validates against the URL without it...
        assert!(validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &doc_params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        // ...and a URL that arrives with a port validates against the signature without it.
        assert!(validate_signature(
            DOC_TOKEN,
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &doc_params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Repeated parameters: identical pairs count once, values sorted.
        let repeated: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(validate_signature(
            DOC_TOKEN,
            DOC_URL,
            &repeated,
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        ));
    }

    #[test]
    fn signature_of_a_websocket_upgrade() {
        // Computed independently (Python hmac/hashlib/base64) from the documented algorithm:
        // base64(HMAC-SHA1(key = "12345", msg = the wss URL)); a GET has no parameters.
        let url = "wss://callguard.example.com/ingest/twilio";
        assert!(validate_signature(
            "12345",
            url,
            &[],
            "yLRYxE46tfVa7Cy9wbPgsezHVlU="
        ));
        // Signed with the explicit default port, presented without it.
        assert!(validate_signature(
            "12345",
            url,
            &[],
            "CtGZF68bo4yi1gAH7u2K/4WwW9A="
        ));
        assert!(!validate_signature(
            "12345",
            "wss://callguard.example.com/ingest/other",
            &[],
            "yLRYxE46tfVa7Cy9wbPgsezHVlU="
        ));
    }

    #[test]
    fn url_variants_cover_ports_userinfo_and_ipv6() {
        assert_eq!(
            url_variants("wss://h.example/x?y=1"),
            vec!["wss://h.example/x?y=1", "wss://h.example:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://u:p@h.example:8080"),
            vec!["http://u:p@h.example:8080", "http://u:p@h.example"]
        );
        assert_eq!(
            url_variants("https://[::1]/a"),
            vec!["https://[::1]/a", "https://[::1]:443/a"]
        );
        assert_eq!(
            url_variants("https://[::1]:8443/a"),
            vec!["https://[::1]:8443/a", "https://[::1]/a"]
        );
        assert_eq!(url_variants("not a url"), vec!["not a url"]);
        assert_eq!(url_variants("ftp://h/x"), vec!["ftp://h/x"]);
    }
}
