//! Asterisk AudioSocket: an incremental decoder and session state machine for one AudioSocket
//! TCP connection, and the frame encoder the test client uses.
//!
//! The wire format is a stream of frames: type (u8), payload length (u16, big-endian), payload.
//! [`AudiosocketSession::on_bytes`] accepts the stream in pieces split anywhere and yields
//! [`SourceEvent`]s: the call (its id is the UUID frame, which must come first), signed-linear
//! audio for the one leg the connection carries, DTMF, and the end of the call.
//!
//! Frame types, from the protocol definition on docs.asterisk.org (Channel-Drivers/AudioSocket)
//! and Asterisk's `res_audiosocket.c`:
//!
//! | type | payload |
//! |------|---------|
//! | 0x00 | hangup (payload ignored) |
//! | 0x01 | call UUID, 16 raw bytes |
//! | 0x03 | DTMF, one ASCII byte |
//! | 0x10 | slin 8 kHz (16-bit LE mono; what the `AudioSocket()` dialplan app always sends) |
//! | 0x11 / 0x12 / 0x13 / 0x14 | slin 12 / 16 / 24 / 32 kHz |
//! | 0x15 / 0x16 / 0x17 / 0x18 | slin 44.1 / 48 / 96 / 192 kHz |
//! | 0xFF | error; payload an optional code (bits: 0x01 caller hung up, 0x02 frame forwarding error, 0x04 memory error) |
//!
//! Anything else is refused as unsupported. Each type has a length limit, checked as soon as a
//! header is complete so that a bad length never makes the session buffer its payload.
//!
//! The sample rate is known only from the first audio frame's type, so `Started` is held back
//! until then: it goes out just before the first audio, or, if the call ends or the connection
//! closes before any audio, with the 8 kHz default. DTMF that arrives before the first audio is
//! held with it. Asterisk sends audio every 20 ms from the start, so the delay is one frame.
//!
//! This module does no I/O: no listener, no sockets, no clock. It never writes audio back.

use serde_json::Value;

use crate::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use crate::domain::leg::{AudioChunk, Leg, samples_to_ms};
use crate::ingest::{Session, SourceError};

const PROTOCOL: &str = "audiosocket";

pub const KIND_HANGUP: u8 = 0x00;
pub const KIND_UUID: u8 = 0x01;
pub const KIND_DTMF: u8 = 0x03;
/// Signed linear, 8 kHz.
pub const KIND_SLIN: u8 = 0x10;
pub const KIND_ERROR: u8 = 0xFF;

/// Audio frame types and their sample rates.
pub const AUDIO_KINDS: [(u8, u32); 9] = [
    (0x10, 8_000),
    (0x11, 12_000),
    (0x12, 16_000),
    (0x13, 24_000),
    (0x14, 32_000),
    (0x15, 44_100),
    (0x16, 48_000),
    (0x17, 96_000),
    (0x18, 192_000),
];

/// The rate assumed for a call that ends before any audio told its rate.
pub const DEFAULT_SAMPLE_RATE: u32 = 8_000;

pub const HEADER_LEN: usize = 3;

/// Hangup and error payloads are a code at most; anything longer is not AudioSocket.
pub const MAX_CONTROL_PAYLOAD: usize = 256;

/// The longest audio payload accepted, in seconds of audio at the frame's rate (Asterisk sends
/// 20 ms frames; the u16 length caps high rates below this anyway).
pub const MAX_AUDIO_SECONDS: usize = 1;

/// The largest payload [`encode_frame`] puts in one frame: even, so a 16-bit sample never
/// straddles two frames.
const MAX_ENCODED_PAYLOAD: usize = 65_534;

/// The sample rate of an audio frame type, `None` for other types.
pub fn audio_kind_rate(kind: u8) -> Option<u32> {
    AUDIO_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, rate)| *rate)
}

/// The audio frame type for a sample rate, `None` if AudioSocket has none.
pub fn audio_kind_for_rate(rate: u32) -> Option<u8> {
    AUDIO_KINDS
        .iter()
        .find(|(_, r)| *r == rate)
        .map(|(kind, _)| *kind)
}

/// Encodes one frame. A payload longer than the 16-bit length allows is split across several
/// frames of the same type (at even offsets, so audio stays sample-aligned); only audio is
/// ever that long.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN);
    let mut push = |chunk: &[u8]| {
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(chunk);
    };
    if payload.is_empty() {
        push(payload);
    } else {
        payload.chunks(MAX_ENCODED_PAYLOAD).for_each(push);
    }
    out
}

/// The UUID frame that opens every connection.
pub fn uuid_frame(id: &[u8; 16]) -> Vec<u8> {
    encode_frame(KIND_UUID, id)
}

/// The canonical 8-4-4-4-12 lower-case hex form of a UUID.
pub fn format_uuid(id: &[u8; 16]) -> String {
    let mut text = String::with_capacity(36);
    for (i, byte) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Parses the 8-4-4-4-12 hex form (either case), as Asterisk's dialplan takes it.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut id = [0u8; 16];
    for (slot, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(id)
}

/// One AudioSocket connection: one call, one leg.
#[derive(Debug)]
pub struct AudiosocketSession {
    leg: Leg,
    /// Received bytes not yet forming a whole frame.
    pending: Vec<u8>,
    call_id: Option<String>,
    rate: Option<u32>,
    /// `Started` has gone out (or is in the batch being returned).
    announced: bool,
    /// DTMF received before `Started` could go out.
    held: Vec<SourceEvent>,
    /// Samples delivered so far: the next `start_sample`.
    position: u64,
    /// A hangup or error frame arrived, or the connection closed.
    ended: bool,
    failed: bool,
}

impl AudiosocketSession {
    /// A session for a connection whose audio is `leg` (the server's configuration decides;
    /// usually [`Leg::Customer`]).
    pub fn new(leg: Leg) -> Self {
        AudiosocketSession {
            leg,
            pending: Vec::new(),
            call_id: None,
            rate: None,
            announced: false,
            held: Vec::new(),
            position: 0,
            ended: false,
            failed: false,
        }
    }

    /// The call's UUID, once its frame has arrived (possibly before `Started` went out).
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// Feeds bytes as they came off the socket. Everything after a hangup or error frame is
    /// ignored. After an error the session refuses all input: the connection is to be closed.
    pub fn on_bytes(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        if self.failed {
            return Err(SourceError::protocol(
                PROTOCOL,
                "the session already failed; the connection must close",
            ));
        }
        if self.ended {
            return Ok(Vec::new());
        }
        let announced_before = self.announced;
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut events = Vec::new();
        match self.decode(&buf, &mut events) {
            Ok(consumed) => {
                if !self.ended {
                    buf.drain(..consumed);
                    self.pending = buf;
                }
                Ok(events)
            }
            Err(e) => {
                // The events of this batch are lost with the error, `Started` included.
                self.announced = announced_before;
                self.failed = true;
                Err(e)
            }
        }
    }

    /// The connection closed. Ends the call with `Disconnected` unless a hangup or error
    /// frame already ended it; nothing if no call ever started.
    pub fn on_close(&mut self) -> Vec<SourceEvent> {
        if !self.pending.is_empty() {
            tracing::debug!(
                bytes = self.pending.len(),
                "audiosocket: dropping a partial frame at close"
            );
            self.pending.clear();
        }
        let mut events = Vec::new();
        let owes_end = if self.failed {
            self.announced
        } else {
            self.call_id.is_some()
        };
        if !self.ended && owes_end {
            self.announce(self.rate.unwrap_or(DEFAULT_SAMPLE_RATE), &mut events);
            events.push(SourceEvent::Ended(EndReason::Disconnected));
        }
        self.ended = true;
        events
    }

    /// Decodes whole frames from `buf`; returns how many bytes they used.
    fn decode(&mut self, buf: &[u8], events: &mut Vec<SourceEvent>) -> Result<usize, SourceError> {
        let mut offset = 0;
        while !self.ended {
            let Some(header) = buf.get(offset..offset + HEADER_LEN) else {
                break;
            };
            let kind = header[0];
            let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
            self.check_header(kind, len)?;
            let Some(payload) = buf.get(offset + HEADER_LEN..offset + HEADER_LEN + len) else {
                break;
            };
            self.frame(kind, payload, events)?;
            offset += HEADER_LEN + len;
        }
        Ok(offset)
    }

    /// Everything that can be judged from the header alone, before the payload is buffered.
    fn check_header(&self, kind: u8, len: usize) -> Result<(), SourceError> {
        if self.call_id.is_none() && kind != KIND_UUID {
            return Err(SourceError::protocol(
                PROTOCOL,
                format!("frame type {kind:#04x} before the UUID frame"),
            ));
        }
        let limit_ok = match kind {
            KIND_UUID => {
                if self.call_id.is_some() {
                    return Err(SourceError::protocol(PROTOCOL, "a second UUID frame"));
                }
                len == 16
            }
            KIND_DTMF => len == 1,
            KIND_HANGUP | KIND_ERROR => len <= MAX_CONTROL_PAYLOAD,
            _ => match audio_kind_rate(kind) {
                Some(rate) => {
                    if !len.is_multiple_of(2) {
                        return Err(SourceError::malformed(
                            PROTOCOL,
                            format!("audio frame of {len} bytes: not whole 16-bit samples"),
                        ));
                    }
                    len <= rate as usize * 2 * MAX_AUDIO_SECONDS
                }
                None => {
                    return Err(SourceError::Unsupported {
                        protocol: PROTOCOL,
                        what: format!("frame type {kind:#04x}"),
                    });
                }
            },
        };
        if limit_ok {
            Ok(())
        } else {
            Err(SourceError::malformed(
                PROTOCOL,
                format!("frame type {kind:#04x} with a {len}-byte payload"),
            ))
        }
    }

    fn frame(
        &mut self,
        kind: u8,
        payload: &[u8],
        events: &mut Vec<SourceEvent>,
    ) -> Result<(), SourceError> {
        match kind {
            KIND_UUID => {
                let id: &[u8; 16] = payload.try_into().map_err(|_| {
                    SourceError::malformed(PROTOCOL, "UUID payload is not 16 bytes")
                })?;
                let call_id = format_uuid(id);
                tracing::debug!(call_id, leg = %self.leg, "audiosocket: call connected");
                self.call_id = Some(call_id);
            }
            KIND_DTMF => {
                let byte = payload.first().copied().unwrap_or(0);
                let digit = char::from(byte).to_ascii_uppercase();
                if !(digit.is_ascii_digit() || matches!(digit, '*' | '#' | 'A'..='D')) {
                    return Err(SourceError::malformed(
                        PROTOCOL,
                        format!("DTMF byte {byte:#04x} is not a DTMF key"),
                    ));
                }
                let dtmf = SourceEvent::Dtmf {
                    digit,
                    at_ms: samples_to_ms(self.position, self.rate.unwrap_or(DEFAULT_SAMPLE_RATE)),
                };
                if self.announced {
                    events.push(dtmf);
                } else {
                    self.held.push(dtmf);
                }
            }
            KIND_HANGUP => {
                self.announce(self.rate.unwrap_or(DEFAULT_SAMPLE_RATE), events);
                events.push(SourceEvent::Ended(EndReason::Hangup));
                self.ended = true;
            }
            KIND_ERROR => {
                let reason = describe_error(payload);
                tracing::debug!(reason, "audiosocket: error frame");
                self.announce(self.rate.unwrap_or(DEFAULT_SAMPLE_RATE), events);
                events.push(SourceEvent::Ended(EndReason::SourceError(reason)));
                self.ended = true;
            }
            _ => {
                let Some(rate) = audio_kind_rate(kind) else {
                    return Err(SourceError::Unsupported {
                        protocol: PROTOCOL,
                        what: format!("frame type {kind:#04x}"),
                    });
                };
                match self.rate {
                    Some(current) if current != rate => {
                        return Err(SourceError::Unsupported {
                            protocol: PROTOCOL,
                            what: format!(
                                "sample rate changed from {current} Hz to {rate} Hz mid-call"
                            ),
                        });
                    }
                    _ => self.rate = Some(rate),
                }
                self.announce(rate, events);
                if payload.is_empty() {
                    return Ok(());
                }
                let samples: Vec<f32> = payload
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0)
                    .collect();
                let count = samples.len() as u64;
                events.push(SourceEvent::Audio(AudioChunk {
                    leg: self.leg,
                    start_sample: self.position,
                    samples,
                }));
                self.position += count;
            }
        }
        Ok(())
    }

    /// Emits `Started` (and any DTMF held for it) the first time.
    fn announce(&mut self, rate: u32, events: &mut Vec<SourceEvent>) {
        if self.announced {
            return;
        }
        let Some(call_id) = self.call_id.clone() else {
            return;
        };
        events.push(SourceEvent::Started(CallInfo {
            call_id,
            source: SourceKind::Audiosocket,
            legs: vec![self.leg],
            sample_rate: rate,
            lang: None,
            agent: None,
            metadata: Value::Null,
        }));
        events.append(&mut self.held);
        self.announced = true;
    }
}

/// A readable reason for an error frame. Asterisk's codes are single-byte bit fields.
fn describe_error(payload: &[u8]) -> String {
    match payload {
        [] => "AudioSocket error (no code)".to_string(),
        [code] => {
            let names: Vec<&str> = [
                (0x01, "caller hung up"),
                (0x02, "frame forwarding error"),
                (0x04, "memory allocation error"),
            ]
            .iter()
            .filter(|(bit, _)| code & bit != 0)
            .map(|(_, name)| *name)
            .collect();
            let mut text = format!("AudioSocket error {code:#04x}");
            if !names.is_empty() {
                text.push_str(": ");
                text.push_str(&names.join(", "));
            }
            let unknown = code & !0x07;
            if unknown != 0 {
                text.push_str(&format!(" (unknown bits {unknown:#04x})"));
            }
            text
        }
        longer => {
            let hex: String = longer.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if longer.len() > 16 { "..." } else { "" };
            format!("AudioSocket error, payload {hex}{more}")
        }
    }
}

impl Session for AudiosocketSession {
    fn on_text(&mut self, _frame: &str) -> Result<Vec<SourceEvent>, SourceError> {
        Err(SourceError::protocol(
            PROTOCOL,
            "AudioSocket is a byte stream: there are no text frames",
        ))
    }
    fn on_binary(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, SourceError> {
        self.on_bytes(data)
    }
    fn on_close(&mut self) -> Vec<SourceEvent> {
        AudiosocketSession::on_close(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [
        0x40, 0x32, 0x5e, 0xc2, 0x5e, 0xfd, 0x4b, 0xd3, 0x80, 0x5f, 0x53, 0x57, 0x6e, 0x58, 0x1d,
        0x13,
    ];
    const ID_TEXT: &str = "40325ec2-5efd-4bd3-805f-53576e581d13";

    fn slin(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn audio_frame(kind: u8, samples: &[i16]) -> Vec<u8> {
        encode_frame(kind, &slin(samples))
    }

    fn full_call() -> Vec<u8> {
        let mut bytes = uuid_frame(&ID);
        for i in 0..3 {
            bytes.extend(audio_frame(KIND_SLIN, &[i * 100; 160]));
        }
        bytes.extend(encode_frame(KIND_DTMF, b"5"));
        bytes.extend(audio_frame(KIND_SLIN, &[16384; 160]));
        bytes.extend(encode_frame(KIND_HANGUP, &[]));
        bytes
    }

    fn started(rate: u32, leg: Leg) -> SourceEvent {
        SourceEvent::Started(CallInfo {
            call_id: ID_TEXT.into(),
            source: SourceKind::Audiosocket,
            legs: vec![leg],
            sample_rate: rate,
            lang: None,
            agent: None,
            metadata: Value::Null,
        })
    }

    fn kind_of(err: &SourceError) -> &'static str {
        match err {
            SourceError::Malformed { .. } => "malformed",
            SourceError::Protocol { .. } => "protocol",
            SourceError::Unsupported { .. } => "unsupported",
        }
    }

    #[test]
    fn full_call_in_one_buffer() {
        let mut s = AudiosocketSession::new(Leg::Customer);
        let events = s.on_bytes(&full_call()).unwrap();
        assert_eq!(events.len(), 7, "{events:?}");
        assert_eq!(events[0], started(8000, Leg::Customer));
        for (i, event) in events[1..4].iter().enumerate() {
            let SourceEvent::Audio(AudioChunk {
                leg,
                start_sample,
                samples,
            }) = event
            else {
                panic!("{event:?}");
            };
            assert_eq!(
                (*leg, *start_sample, samples.len()),
                (Leg::Customer, i as u64 * 160, 160)
            );
            assert!(samples.iter().all(|&x| x == (i as f32 * 100.0) / 32768.0));
        }
        assert_eq!(
            events[4],
            SourceEvent::Dtmf {
                digit: '5',
                at_ms: 60
            }
        );
        assert!(matches!(
            &events[5],
            SourceEvent::Audio(AudioChunk { start_sample: 480, samples, .. }) if samples.iter().all(|&x| x == 0.5)
        ));
        assert_eq!(events[6], SourceEvent::Ended(EndReason::Hangup));
        assert_eq!(s.call_id(), Some(ID_TEXT));
        // After hangup: ignored, even garbage, and the close owes nothing.
        assert_eq!(s.on_bytes(&[0xAB; 10]).unwrap(), vec![]);
        assert_eq!(s.on_close(), vec![]);
    }

    #[test]
    fn split_at_every_offset_gives_identical_events() {
        let bytes = full_call();
        let whole = AudiosocketSession::new(Leg::Agent)
            .on_bytes(&bytes)
            .unwrap();
        for split in 0..=bytes.len() {
            let mut s = AudiosocketSession::new(Leg::Agent);
            let mut events = s.on_bytes(&bytes[..split]).unwrap();
            events.extend(s.on_bytes(&bytes[split..]).unwrap());
            assert_eq!(events, whole, "split at {split}");
        }
        let mut s = AudiosocketSession::new(Leg::Agent);
        let mut events = Vec::new();
        for byte in &bytes {
            events.extend(s.on_bytes(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(events, whole, "byte by byte");
        // Three pieces, at every pair of offsets in the first 60 bytes (header edges included).
        for a in 0..60 {
            for b in a..60 {
                let mut s = AudiosocketSession::new(Leg::Agent);
                let mut events = s.on_bytes(&bytes[..a]).unwrap();
                events.extend(s.on_bytes(&bytes[a..b]).unwrap());
                events.extend(s.on_bytes(&bytes[b..]).unwrap());
                assert_eq!(events, whole, "splits at {a} and {b}");
            }
        }
    }

    #[test]
    fn every_audio_type_sets_the_rate() {
        for (kind, rate) in AUDIO_KINDS {
            let mut s = AudiosocketSession::new(Leg::Customer);
            assert_eq!(
                s.on_bytes(&uuid_frame(&ID)).unwrap(),
                vec![],
                "Started waits for the rate"
            );
            let events = s.on_bytes(&audio_frame(kind, &[0; 320])).unwrap();
            assert_eq!(events[0], started(rate, Leg::Customer), "{kind:#04x}");
            assert!(
                matches!(&events[1], SourceEvent::Audio(AudioChunk { samples, .. }) if samples.len() == 320)
            );
            assert_eq!(audio_kind_for_rate(rate), Some(kind));
        }
        assert_eq!(audio_kind_rate(KIND_DTMF), None);
        assert_eq!(audio_kind_for_rate(11_025), None);
    }

    #[test]
    fn dtmf_before_audio_is_held_for_started() {
        let mut s = AudiosocketSession::new(Leg::Customer);
        let mut bytes = uuid_frame(&ID);
        bytes.extend(encode_frame(KIND_DTMF, b"#"));
        bytes.extend(encode_frame(KIND_DTMF, b"a"));
        assert_eq!(s.on_bytes(&bytes).unwrap(), vec![]);
        let events = s.on_bytes(&audio_frame(0x12, &[0; 320])).unwrap();
        assert_eq!(events[0], started(16_000, Leg::Customer));
        assert_eq!(
            events[1],
            SourceEvent::Dtmf {
                digit: '#',
                at_ms: 0
            }
        );
        assert_eq!(
            events[2],
            SourceEvent::Dtmf {
                digit: 'A',
                at_ms: 0
            }
        );
        assert!(matches!(events[3], SourceEvent::Audio(AudioChunk { .. })));
        let events = s.on_bytes(&encode_frame(KIND_DTMF, b"9")).unwrap();
        assert_eq!(
            events,
            vec![SourceEvent::Dtmf {
                digit: '9',
                at_ms: 20
            }]
        );
    }

    #[test]
    fn call_without_audio_starts_at_the_default_rate() {
        let mut s = AudiosocketSession::new(Leg::Customer);
        let mut bytes = uuid_frame(&ID);
        bytes.extend(encode_frame(KIND_DTMF, b"1"));
        bytes.extend(encode_frame(KIND_HANGUP, &[]));
        assert_eq!(
            s.on_bytes(&bytes).unwrap(),
            vec![
                started(8000, Leg::Customer),
                SourceEvent::Dtmf {
                    digit: '1',
                    at_ms: 0
                },
                SourceEvent::Ended(EndReason::Hangup)
            ]
        );
    }

    #[test]
    fn close_without_hangup() {
        let mut s = AudiosocketSession::new(Leg::Customer);
        assert_eq!(s.on_close(), vec![], "no UUID, no call");

        let mut s = AudiosocketSession::new(Leg::Customer);
        s.on_bytes(&uuid_frame(&ID)).unwrap();
        assert_eq!(
            s.on_close(),
            vec![
                started(8000, Leg::Customer),
                SourceEvent::Ended(EndReason::Disconnected)
            ]
        );
        assert_eq!(s.on_close(), vec![]);

        let mut s = AudiosocketSession::new(Leg::Customer);
        let mut bytes = uuid_frame(&ID);
        bytes.extend(audio_frame(0x12, &[0; 320]));
        bytes.extend(&audio_frame(0x12, &[0; 320])[..100]);
        assert_eq!(s.on_bytes(&bytes).unwrap().len(), 2);
        assert_eq!(
            s.on_close(),
            vec![SourceEvent::Ended(EndReason::Disconnected)]
        );
        assert_eq!(s.on_bytes(&[0; 3]).unwrap(), vec![], "closed");
    }

    #[test]
    fn error_frames() {
        let cases: [(&[u8], &str); 7] = [
            (&[0x01], "AudioSocket error 0x01: caller hung up"),
            (&[0x02], "AudioSocket error 0x02: frame forwarding error"),
            (&[0x04], "AudioSocket error 0x04: memory allocation error"),
            (
                &[0x03],
                "AudioSocket error 0x03: caller hung up, frame forwarding error",
            ),
            (
                &[0x81],
                "AudioSocket error 0x81: caller hung up (unknown bits 0x80)",
            ),
            (&[], "AudioSocket error (no code)"),
            (&[0xde, 0xad], "AudioSocket error, payload dead"),
        ];
        for (payload, reason) in cases {
            let mut s = AudiosocketSession::new(Leg::Customer);
            let mut bytes = uuid_frame(&ID);
            bytes.extend(audio_frame(KIND_SLIN, &[0; 160]));
            bytes.extend(encode_frame(KIND_ERROR, payload));
            bytes.extend(audio_frame(KIND_SLIN, &[0; 160]));
            let events = s.on_bytes(&bytes).unwrap();
            assert_eq!(
                events.len(),
                3,
                "audio after the error is ignored: {events:?}"
            );
            assert_eq!(
                events[2],
                SourceEvent::Ended(EndReason::SourceError(reason.into()))
            );
            assert_eq!(s.on_close(), vec![]);
        }
        let mut s = AudiosocketSession::new(Leg::Customer);
        let mut bytes = uuid_frame(&ID);
        bytes.extend(encode_frame(KIND_ERROR, &[0x00]));
        let events = s.on_bytes(&bytes).unwrap();
        assert_eq!(events[0], started(8000, Leg::Customer));
        assert_eq!(
            events[1],
            SourceEvent::Ended(EndReason::SourceError("AudioSocket error 0x00".into()))
        );
    }

    #[test]
    fn hangup_payload_is_ignored() {
        let mut s = AudiosocketSession::new(Leg::Customer);
        let mut bytes = uuid_frame(&ID);
        bytes.extend(encode_frame(KIND_HANGUP, b"bye"));
        assert_eq!(
            s.on_bytes(&bytes).unwrap().last(),
            Some(&SourceEvent::Ended(EndReason::Hangup))
        );
    }

    /// Feeds `before` (after a UUID frame when `with_uuid`), then `bad`; returns the error.
    fn error_for(with_uuid: bool, bad: &[u8]) -> SourceError {
        let mut s = AudiosocketSession::new(Leg::Customer);
        if with_uuid {
            s.on_bytes(&uuid_frame(&ID)).unwrap();
            s.on_bytes(&audio_frame(KIND_SLIN, &[0; 160])).unwrap();
        }
        let err = s.on_bytes(bad).expect_err("accepted bad input");
        // Poisoned afterwards; a started call still gets its end.
        assert!(s.on_bytes(&encode_frame(KIND_HANGUP, &[])).is_err());
        let expected_end = if with_uuid {
            vec![SourceEvent::Ended(EndReason::Disconnected)]
        } else {
            vec![]
        };
        assert_eq!(s.on_close(), expected_end);
        err
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<(&str, bool, Vec<u8>, &str)> = vec![
            (
                "audio before UUID",
                false,
                audio_frame(KIND_SLIN, &[0; 160]),
                "protocol",
            ),
            (
                "dtmf before UUID",
                false,
                encode_frame(KIND_DTMF, b"1"),
                "protocol",
            ),
            (
                "hangup before UUID",
                false,
                encode_frame(KIND_HANGUP, &[]),
                "protocol",
            ),
            ("second UUID", true, uuid_frame(&ID), "protocol"),
            (
                "short UUID",
                false,
                encode_frame(KIND_UUID, &ID[..15]),
                "malformed",
            ),
            (
                "long UUID",
                false,
                encode_frame(KIND_UUID, &[0; 17]),
                "malformed",
            ),
            (
                "two DTMF bytes",
                true,
                encode_frame(KIND_DTMF, b"12"),
                "malformed",
            ),
            (
                "empty DTMF",
                true,
                encode_frame(KIND_DTMF, b""),
                "malformed",
            ),
            (
                "DTMF not a key",
                true,
                encode_frame(KIND_DTMF, b"x"),
                "malformed",
            ),
            ("DTMF NUL", true, encode_frame(KIND_DTMF, &[0]), "malformed"),
            (
                "odd audio",
                true,
                encode_frame(KIND_SLIN, &[0; 161]),
                "malformed",
            ),
            (
                "rate change",
                true,
                audio_frame(0x12, &[0; 320]),
                "unsupported",
            ),
            ("type 0x02", true, encode_frame(0x02, &[0]), "unsupported"),
            ("type 0x04", true, encode_frame(0x04, &[]), "unsupported"),
            (
                "type 0x19",
                true,
                encode_frame(0x19, &[0; 2]),
                "unsupported",
            ),
            ("type 0xFE", true, encode_frame(0xFE, &[]), "unsupported"),
            (
                "long error",
                true,
                encode_frame(KIND_ERROR, &[1; 300]),
                "malformed",
            ),
        ];
        for (what, with_uuid, bytes, kind) in cases {
            let err = error_for(with_uuid, &bytes);
            assert_eq!(kind_of(&err), kind, "{what}: {err}");
            assert!(err.to_string().contains("audiosocket"), "{what}: {err}");
        }
    }

    #[test]
    fn oversize_length_fails_on_the_header_alone() {
        // 16 002 bytes of 8 kHz audio is more than a second: refused before any payload.
        for header in [
            [KIND_SLIN, 0x3E, 0x82],
            [KIND_SLIN, 0xFF, 0xFE],
            [KIND_HANGUP, 0xFF, 0xFF],
        ] {
            let mut s = AudiosocketSession::new(Leg::Customer);
            s.on_bytes(&uuid_frame(&ID)).unwrap();
            let err = s.on_bytes(&header).expect_err("oversize accepted");
            assert_eq!(kind_of(&err), "malformed", "{err}");
        }
        // Exactly one second is fine.
        let mut s = AudiosocketSession::new(Leg::Customer);
        s.on_bytes(&uuid_frame(&ID)).unwrap();
        let events = s.on_bytes(&audio_frame(KIND_SLIN, &[0; 8000])).unwrap();
        assert!(
            matches!(&events[1], SourceEvent::Audio(AudioChunk { samples, .. }) if samples.len() == 8000)
        );
        // A partial oversize header is not judged yet.
        let mut s = AudiosocketSession::new(Leg::Customer);
        s.on_bytes(&uuid_frame(&ID)).unwrap();
        assert_eq!(s.on_bytes(&[KIND_SLIN, 0xFF]).unwrap(), vec![]);
        assert!(s.on_bytes(&[0xFF]).is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert_eq!(
            kind_of(&error_for(false, b"GET / HTTP/1.1\r\n\r\n")),
            "protocol"
        );
        let mut state = 0xD1B5_4A32_D192_ED03u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut s = AudiosocketSession::new(Leg::Customer);
            if round % 2 == 0 {
                s.on_bytes(&uuid_frame(&ID)).unwrap();
            }
            for _ in 0..4 {
                let len = (next() % 40) as usize;
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // Bias towards plausible headers so the payload paths get exercised.
                if let Some(first) = bytes.first_mut() {
                    *first = [0x00, 0x03, 0x10, 0x12, 0xFF, *first][(next() % 6) as usize];
                }
                if bytes.len() > 2 {
                    bytes[1] = 0;
                    bytes[2] %= 40;
                }
                let _ = s.on_bytes(&bytes);
            }
            let _ = s.on_close();
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_frame(KIND_HANGUP, &[]), vec![0, 0, 0]);
        assert_eq!(encode_frame(KIND_DTMF, b"7"), vec![3, 0, 1, b'7']);
        let uuid = uuid_frame(&ID);
        assert_eq!(&uuid[..3], &[1, 0, 16]);
        assert_eq!(&uuid[3..], &ID);
        // Too long for one frame: split into frames of the same type at an even offset.
        let big = vec![7u8; 70_000];
        let frames = encode_frame(KIND_SLIN, &big);
        assert_eq!(frames.len(), 70_000 + 2 * HEADER_LEN);
        assert_eq!(&frames[..3], &[0x10, 0xFF, 0xFE]);
        assert_eq!(&frames[3 + 65_534..3 + 65_534 + 3], &[0x10, 0x11, 0x72]);
    }

    #[test]
    fn uuid_text() {
        assert_eq!(format_uuid(&ID), ID_TEXT);
        assert_eq!(parse_uuid(ID_TEXT), Some(ID));
        assert_eq!(parse_uuid(&ID_TEXT.to_uppercase()), Some(ID));
        assert_eq!(
            format_uuid(&[0; 16]),
            "00000000-0000-0000-0000-000000000000"
        );
        for bad in [
            "",
            "40325ec2-5efd-4bd3-805f-53576e581d1",
            "40325ec2-5efd-4bd3-805f-53576e581d1g",
            "40325ec25efd-4bd3-805f-53576e581d13-",
            "40325ec2-5efd-4bd3-805f_53576e581d13",
            "é0325ec2-5efd-4bd3-805f-53576e581d1",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad:?}");
        }
    }
}
