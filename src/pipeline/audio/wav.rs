//! Reads RIFF/WAVE files (our own parser, not a crate) into per-channel f32 samples, and writes
//! small 16-bit PCM files for fixtures.
//!
//! Reads: PCM 8 (unsigned), 16, 24 and 32-bit; IEEE float 32 and 64-bit; G.711 mu-law and A-law;
//! and WAVE_FORMAT_EXTENSIBLE wrapping any of those. Mono or stereo, 8 to 48 kHz: what call
//! recorders produce. Recordings that were cut off, or written by streaming writers that never
//! went back to fix the sizes, are read up to the last whole frame and flagged `truncated`
//! instead of being rejected, because a call that dropped mid-way is still worth transcribing.
//!
//! Does not: resample, mix channels, stream from disk (the whole file is read into memory), or
//! read compressed formats (ADPCM, GSM, MP3-in-WAV), RF64, big-endian RIFX, or more than two
//! channels; those fail with a `WavError` that says so. Parsing never panics, whatever the bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pipeline::audio::g711;

/// The lowest and highest sample rates accepted: narrowband telephony up to studio rates.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
pub const MAX_SAMPLE_RATE: u32 = 48_000;

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_FLOAT: u16 = 0x0003;
const FORMAT_ALAW: u16 = 0x0006;
const FORMAT_MULAW: u16 = 0x0007;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// The last 12 bytes shared by every KSDATAFORMAT_SUBTYPE GUID that wraps a classic format tag
/// (the tag itself sits in the first 4 bytes, little-endian).
const SUBFORMAT_GUID_TAIL: [u8; 12] = [
    0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// How the samples were stored in the file (decoded audio is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// Integer PCM; 8-bit is unsigned, wider is signed, as WAV defines.
    Pcm { bits: u16 },
    /// IEEE floating point, 32 or 64-bit.
    Float { bits: u16 },
    /// G.711 mu-law, 8 bits per sample.
    MuLaw,
    /// G.711 A-law, 8 bits per sample.
    ALaw,
}

impl SampleFormat {
    /// Bytes one sample of one channel takes in the data chunk.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::Pcm { bits } | SampleFormat::Float { bits } => usize::from(bits / 8),
            SampleFormat::MuLaw | SampleFormat::ALaw => 1,
        }
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleFormat::Pcm { bits: 8 } => f.write_str("8-bit unsigned PCM"),
            SampleFormat::Pcm { bits } => write!(f, "{bits}-bit PCM"),
            SampleFormat::Float { bits } => write!(f, "{bits}-bit float"),
            SampleFormat::MuLaw => f.write_str("G.711 mu-law"),
            SampleFormat::ALaw => f.write_str("G.711 A-law"),
        }
    }
}

/// A decoded WAV file.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub sample_rate: u32,
    /// One vector per channel (1 or 2), all the same length, samples in [-1, 1].
    pub channels: Vec<Vec<f32>>,
    pub format: SampleFormat,
    /// The data chunk ended before its declared size (a cut-off recording, or a streaming
    /// writer's placeholder size) or ended inside a frame; what was there has been decoded.
    pub truncated: bool,
}

impl DecodedAudio {
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Length of the audio in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }
}

/// Why a WAV file could not be read or written. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("not a WAV file: {what}")]
    NotWav { what: String },
    #[error("unsupported WAV file: {what}")]
    Unsupported { what: String },
    #[error("WAV file holds no audio: its data chunk has no complete sample frame")]
    Empty,
    #[error("truncated WAV file: {what}")]
    Truncated { what: String },
    #[error("corrupt WAV file: {what}")]
    Corrupt { what: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write WAV: {what}")]
    InvalidInput { what: String },
    /// A decoding error from [`read_wav`], with the file it came from.
    #[error("{}: {error}", path.display())]
    InFile { path: PathBuf, error: Box<WavError> },
}

impl WavError {
    /// The error without the [`WavError::InFile`] wrapper, for matching on what went wrong.
    pub fn kind(&self) -> &WavError {
        match self {
            WavError::InFile { error, .. } => error.kind(),
            other => other,
        }
    }
}

fn not_wav(what: impl Into<String>) -> WavError {
    WavError::NotWav { what: what.into() }
}

fn unsupported(what: impl Into<String>) -> WavError {
    WavError::Unsupported { what: what.into() }
}

fn truncated(what: impl Into<String>) -> WavError {
    WavError::Truncated { what: what.into() }
}

fn corrupt(what: impl Into<String>) -> WavError {
    WavError::Corrupt { what: what.into() }
}

/// Reads and decodes a whole WAV file.
pub fn read_wav(path: &Path) -> Result<DecodedAudio, WavError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_wav(&bytes).map_err(|error| WavError::InFile {
        path: path.to_path_buf(),
        error: Box::new(error),
    })
}

/// Decodes a WAV file held in memory.
pub fn decode_wav(bytes: &[u8]) -> Result<DecodedAudio, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(classify_non_wav(bytes));
    }
    let layout = walk_chunks(bytes)?;
    let block_align = usize::from(layout.fmt.block_align);
    // block_align was checked non-zero against channels * sample size in parse_fmt.
    let frames = layout.data.len() / block_align;
    if frames == 0 {
        return Err(WavError::Empty);
    }
    let whole = &layout.data[..frames * block_align];
    let partial_frame = layout.data.len() % block_align != 0;
    let channels = decode_samples(whole, &layout.fmt, frames);
    Ok(DecodedAudio {
        sample_rate: layout.fmt.sample_rate,
        channels,
        format: layout.fmt.format,
        truncated: layout.data_cut || partial_frame,
    })
}

/// What the 'fmt ' chunk says, already validated.
#[derive(Debug, Clone, Copy)]
struct FmtInfo {
    format: SampleFormat,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
}

struct Layout<'a> {
    fmt: FmtInfo,
    data: &'a [u8],
    /// The data chunk's declared size ran past the end of the file.
    data_cut: bool,
}

fn walk_chunks(bytes: &[u8]) -> Result<Layout<'_>, WavError> {
    let len = bytes.len();
    let mut pos = 12usize;
    let mut fmt: Option<FmtInfo> = None;
    let mut data: Option<(&[u8], bool)> = None;

    // The RIFF size is ignored on purpose: streaming writers leave it wrong, and walking to the
    // end of the bytes we actually have is both safer and more forgiving.
    while fmt.is_none() || data.is_none() {
        let remaining = len - pos;
        if remaining == 0 {
            break;
        }
        if remaining < 8 {
            if data.is_some() {
                break;
            }
            return Err(truncated(format!(
                "the file ends inside a chunk header at byte {pos}"
            )));
        }
        let id = &bytes[pos..pos + 4];
        let size = read_u32(bytes, pos + 4);
        let body_start = pos + 8;
        let available = len - body_start;
        // Compare in u64 so a huge declared size cannot wrap on 32-bit targets.
        let fits = u64::from(size) <= available as u64;

        match id {
            b"fmt " if fmt.is_none() => {
                if !fits {
                    return Err(truncated("the file ends inside the 'fmt ' chunk"));
                }
                fmt = Some(parse_fmt(&bytes[body_start..body_start + size as usize])?);
            }
            b"data" if data.is_none() => {
                let rest = &bytes[body_start..];
                if !fits {
                    // Cut-off recording or a placeholder size (0xFFFFFFFF, 0x7FFFF000, ...):
                    // the audio runs to the end of the file and nothing can follow it.
                    data = Some((rest, true));
                    break;
                }
                if size == 0 && !rest.is_empty() && !looks_like_chunk_header(rest) {
                    // A streaming writer that left the size at zero: the audio follows anyway.
                    data = Some((rest, true));
                    break;
                }
                data = Some((&rest[..size as usize], false));
            }
            _ => {
                if !fits {
                    if data.is_some() {
                        // Trailing metadata cut short after the audio: nothing we need is lost.
                        break;
                    }
                    return Err(truncated(format!(
                        "the file ends inside the '{}' chunk, before any audio",
                        fourcc(id)
                    )));
                }
            }
        }
        // Chunks are padded to even sizes; a missing pad byte at the very end is tolerated.
        let next = body_start as u64 + u64::from(size) + u64::from(size & 1);
        pos = usize::try_from(next).map_or(len, |n| n.min(len));
    }

    match (fmt, data) {
        (Some(fmt), Some((data, data_cut))) => Ok(Layout {
            fmt,
            data,
            data_cut,
        }),
        (Some(_), None) => Err(truncated("the file ends before the 'data' chunk")),
        (None, Some(_)) => Err(corrupt("no 'fmt ' chunk describes the audio data")),
        (None, None) if len == 12 => Err(truncated("the file ends right after the RIFF header")),
        (None, None) => Err(corrupt("no 'fmt ' or 'data' chunk")),
    }
}

fn parse_fmt(body: &[u8]) -> Result<FmtInfo, WavError> {
    if body.len() < 16 {
        return Err(corrupt(format!(
            "the 'fmt ' chunk is {} bytes, at least 16 are needed",
            body.len()
        )));
    }
    let tag = read_u16(body, 0);
    let channels = read_u16(body, 2);
    let sample_rate = read_u32(body, 4);
    let block_align = read_u16(body, 12);
    let bits = read_u16(body, 14);

    let (format_tag, valid_bits) = if tag == FORMAT_EXTENSIBLE {
        if body.len() < 40 {
            return Err(corrupt(format!(
                "the WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {} bytes, 40 are needed",
                body.len()
            )));
        }
        let guid = &body[24..40];
        if guid[4..] != SUBFORMAT_GUID_TAIL || guid[2..4] != [0, 0] {
            return Err(unsupported(format!(
                "WAVE_FORMAT_EXTENSIBLE sub-format {}",
                guid_string(guid)
            )));
        }
        (read_u16(guid, 0), Some(read_u16(body, 18)))
    } else {
        (tag, None)
    };

    let format = match format_tag {
        FORMAT_PCM if matches!(bits, 8 | 16 | 24 | 32) => SampleFormat::Pcm { bits },
        FORMAT_FLOAT if matches!(bits, 32 | 64) => SampleFormat::Float { bits },
        FORMAT_MULAW if bits == 8 => SampleFormat::MuLaw,
        FORMAT_ALAW if bits == 8 => SampleFormat::ALaw,
        FORMAT_PCM => return Err(unsupported(format!("{bits}-bit PCM samples"))),
        FORMAT_FLOAT => return Err(unsupported(format!("{bits}-bit float samples"))),
        FORMAT_MULAW | FORMAT_ALAW => {
            return Err(unsupported(format!(
                "{bits}-bit G.711 samples (8 expected)"
            )));
        }
        other => return Err(unsupported(describe_format_tag(other))),
    };
    if channels == 0 {
        return Err(corrupt("the 'fmt ' chunk declares 0 channels"));
    }
    if channels > 2 {
        return Err(unsupported(format!(
            "{channels} channels (only mono and stereo are supported)"
        )));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(unsupported(format!(
            "sample rate {sample_rate} Hz (supported: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )));
    }
    if let Some(valid) = valid_bits
        && valid > bits
    {
        return Err(corrupt(format!(
            "{valid} valid bits declared in a {bits}-bit sample container"
        )));
    }
    let expected_align = usize::from(channels) * format.bytes_per_sample();
    if usize::from(block_align) != expected_align {
        return Err(corrupt(format!(
            "block align is {block_align} bytes, but {channels} x {bits}-bit needs {expected_align}"
        )));
    }
    Ok(FmtInfo {
        format,
        channels,
        sample_rate,
        block_align,
    })
}

fn decode_samples(data: &[u8], fmt: &FmtInfo, frames: usize) -> Vec<Vec<f32>> {
    match fmt.format {
        SampleFormat::Pcm { bits: 8 } => {
            deinterleave::<1>(data, fmt, frames, |b| (f32::from(b[0]) - 128.0) / 128.0)
        }
        SampleFormat::Pcm { bits: 16 } => deinterleave::<2>(data, fmt, frames, |b| {
            f32::from(i16::from_le_bytes(b)) / 32_768.0
        }),
        SampleFormat::Pcm { bits: 24 } => deinterleave::<3>(data, fmt, frames, |b| {
            // Place the 3 bytes at the top of an i32 so the arithmetic shift sign-extends.
            let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
            v as f32 / 8_388_608.0
        }),
        SampleFormat::Pcm { .. } => deinterleave::<4>(data, fmt, frames, |b| {
            (f64::from(i32::from_le_bytes(b)) / 2_147_483_648.0) as f32
        }),
        SampleFormat::Float { bits: 32 } => {
            deinterleave::<4>(data, fmt, frames, |b| clean_float(f32::from_le_bytes(b)))
        }
        SampleFormat::Float { .. } => deinterleave::<8>(data, fmt, frames, |b| {
            clean_float(f64::from_le_bytes(b) as f32)
        }),
        SampleFormat::MuLaw => deinterleave::<1>(data, fmt, frames, |b| {
            f32::from(g711::ulaw_to_i16(b[0])) / 32_768.0
        }),
        SampleFormat::ALaw => deinterleave::<1>(data, fmt, frames, |b| {
            f32::from(g711::alaw_to_i16(b[0])) / 32_768.0
        }),
    }
}

/// Float files may hold NaN or values past full scale; downstream stages assume [-1, 1].
fn clean_float(v: f32) -> f32 {
    if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) }
}

/// Splits interleaved frames into one vector per channel, converting each `N`-byte sample.
/// Generic over `N` so each format gets a tight loop with fixed-size sample reads.
fn deinterleave<const N: usize>(
    data: &[u8],
    fmt: &FmtInfo,
    frames: usize,
    convert: impl Fn([u8; N]) -> f32,
) -> Vec<Vec<f32>> {
    let channels = usize::from(fmt.channels);
    let mut out: Vec<Vec<f32>> = (0..channels).map(|_| Vec::with_capacity(frames)).collect();
    for frame in data.chunks_exact(usize::from(fmt.block_align)) {
        for (samples, bytes) in out.iter_mut().zip(frame.chunks_exact(N)) {
            let mut sample = [0u8; N];
            sample.copy_from_slice(bytes);
            samples.push(convert(sample));
        }
    }
    out
}

/// Explains what a non-WAV file seems to be, so the user knows what to convert from.
fn classify_non_wav(bytes: &[u8]) -> WavError {
    if bytes.is_empty() {
        return not_wav("the file is empty");
    }
    let head = &bytes[..bytes.len().min(4)];
    if bytes.len() < 12 && b"RIFF".starts_with(head) {
        let form_ok = bytes.len() <= 8 || b"WAVE".starts_with(&bytes[8..]);
        if form_ok {
            return truncated(format!(
                "the file ends inside the RIFF header ({} bytes)",
                bytes.len()
            ));
        }
    }
    if head == b"RIFF" {
        if let Some(form) = bytes.get(8..12) {
            return not_wav(format!("a RIFF file of type '{}', not WAVE", fourcc(form)));
        }
        return not_wav("a RIFF file that is not WAVE");
    }
    if head == b"RF64" || head == b"BW64" {
        return unsupported("RF64/BW64 (64-bit WAV) files; convert to a plain WAV first");
    }
    if head == b"RIFX" {
        return unsupported("big-endian RIFX files");
    }
    if bytes.starts_with(b"ID3")
        || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
    {
        return not_wav("it looks like an MP3 file");
    }
    if bytes.starts_with(b"OggS") {
        return not_wav("it looks like an Ogg (Vorbis/Opus) file");
    }
    if bytes.starts_with(b"fLaC") {
        return not_wav("it looks like a FLAC file");
    }
    if bytes.starts_with(b"FORM") {
        return not_wav("it looks like an AIFF file");
    }
    if bytes.starts_with(b".snd") {
        return not_wav("it looks like a Sun/NeXT .au file");
    }
    let sample = &bytes[..bytes.len().min(256)];
    if sample
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return not_wav("it looks like a text file");
    }
    not_wav(format!(
        "no RIFF/WAVE header (the file starts with {})",
        hex_prefix(bytes)
    ))
}

fn describe_format_tag(tag: u16) -> String {
    let name = match tag {
        0x0002 => "Microsoft ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG audio",
        0x0055 => "MP3",
        0x0064 => "G.726 ADPCM",
        0x00FF => "AAC",
        0x0161..=0x0163 => "Windows Media Audio",
        _ => "unknown",
    };
    format!("audio format tag {tag:#06x} ({name}); convert it to PCM, e.g. with sox")
}

fn looks_like_chunk_header(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4].iter().all(|&b| (0x20..=0x7E).contains(&b))
}

/// A chunk id made safe to print on one line.
fn fourcc(id: &[u8]) -> String {
    id.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

fn guid_string(g: &[u8]) -> String {
    // Standard GUID text order: the first three groups are little-endian integers.
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        read_u32(g, 0),
        read_u16(g, 4),
        read_u16(g, 6),
        g.get(8).copied().unwrap_or(0),
        g.get(9).copied().unwrap_or(0),
        g.iter()
            .skip(10)
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Little-endian u16 at `at`, or 0 past the end (callers check lengths first; this just keeps
/// a slip from becoming a panic).
fn read_u16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b2, c, d]) => u32::from_le_bytes([a, b2, c, d]),
        _ => 0,
    }
}

/// Builds a 16-bit PCM WAV file in memory; `channels` holds one equally long slice per channel.
pub fn encode_wav_i16(sample_rate: u32, channels: &[&[i16]]) -> Result<Vec<u8>, WavError> {
    let Some(first) = channels.first() else {
        return Err(WavError::InvalidInput {
            what: "no channels given".into(),
        });
    };
    let frames = first.len();
    if channels.iter().any(|c| c.len() != frames) {
        return Err(WavError::InvalidInput {
            what: "channels have different lengths".into(),
        });
    }
    let too_big = || WavError::InvalidInput {
        what: "audio too long for a RIFF file (4 GiB limit)".into(),
    };
    let n_channels = u16::try_from(channels.len()).map_err(|_| WavError::InvalidInput {
        what: format!("{} channels is too many", channels.len()),
    })?;
    let block_align = n_channels.checked_mul(2).ok_or_else(too_big)?;
    let data_len = frames
        .checked_mul(usize::from(block_align))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= u32::MAX - 36)
        .ok_or_else(too_big)?;
    let byte_rate = sample_rate
        .checked_mul(u32::from(block_align))
        .ok_or_else(too_big)?;

    let mut out = Vec::with_capacity(44 + data_len as usize + 1);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len + (data_len & 1)).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&n_channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        for channel in channels {
            out.extend_from_slice(&channel[i].to_le_bytes());
        }
    }
    Ok(out)
}

/// Writes a 16-bit PCM WAV file (see [`encode_wav_i16`]).
pub fn write_wav_i16(path: &Path, sample_rate: u32, channels: &[&[i16]]) -> Result<(), WavError> {
    let bytes = encode_wav_i16(sample_rate, channels)?;
    std::fs::write(path, bytes).map_err(|source| WavError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Running sox from tests: shared with the G.711 tests, which cross-check our tables against it.
#[cfg(test)]
pub(crate) mod sox_support {
    use std::process::Command;

    /// Runs sox with `args` and returns its stdout. A missing sox fails the test loudly rather
    /// than skipping it, so a bare machine cannot pass the suite without exercising these paths.
    pub(crate) fn sox(args: &[&str]) -> Vec<u8> {
        let output = match Command::new("sox").args(args).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "sox is not installed, and the audio tests need it to write reference files: \
                 install sox (`make test` installs it, or `apt-get install sox`)"
            ),
            Err(e) => panic!("could not run sox: {e}"),
        };
        assert!(
            output.status.success(),
            "sox {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

#[cfg(test)]
mod tests {
    use super::sox_support::sox;
    use super::*;

    const AMPLITUDE: f32 = 0.5;

    /// Frequency from the first and last upward zero crossings, interpolated between samples.
    fn zero_crossing_frequency(x: &[f32], rate: u32) -> f64 {
        let mut crossings = Vec::new();
        for i in 1..x.len() {
            let (a, b) = (x[i - 1] as f64, x[i] as f64);
            if a < 0.0 && b >= 0.0 {
                crossings.push((i - 1) as f64 + a / (a - b));
            }
        }
        assert!(crossings.len() > 10, "too few zero crossings");
        let first = crossings[0];
        let last = crossings[crossings.len() - 1];
        (crossings.len() - 1) as f64 * rate as f64 / (last - first)
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Amplitude of the `freq` component, by correlating with a sine and a cosine.
    fn tone_amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64;
            s += v as f64 * phase.sin();
            c += v as f64 * phase.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f64
    }

    fn check_tone(samples: &[f32], rate: u32, freq: f64, other: f64, label: &str) {
        let f = zero_crossing_frequency(samples, rate);
        assert!(
            (f - freq).abs() / freq < 0.01,
            "{label}: expected {freq} Hz, measured {f:.1} Hz"
        );
        let r = rms(samples);
        let want = AMPLITUDE as f64 / 2f64.sqrt();
        assert!(
            (r - want).abs() / want < 0.04,
            "{label}: rms {r:.4}, expected {want:.4}"
        );
        let own = tone_amplitude(samples, rate, freq);
        let leak = tone_amplitude(samples, rate, other);
        assert!(
            (own - AMPLITUDE as f64).abs() < 0.03,
            "{label}: {freq} Hz amplitude {own:.4}"
        );
        assert!(
            leak < 0.01,
            "{label}: {other} Hz leaks in at amplitude {leak:.4}"
        );
    }

    /// Generates 0.5 s of 440 Hz (left / mono) and 1000 Hz (right) at half scale.
    fn sox_tone(
        dir: &Path,
        name: &str,
        rate: u32,
        channels: u16,
        encoding: &[&str],
        file_type: &str,
    ) -> PathBuf {
        let path = dir.join(name);
        let rate_s = rate.to_string();
        let ch_s = channels.to_string();
        let path_s = path.to_string_lossy().into_owned();
        // Rate and channels go on the null input: otherwise sox synthesises at 48 kHz and
        // resamples, which muddies lengths.
        let mut args = vec!["-D", "-r", &rate_s, "-c", &ch_s, "-n"];
        args.extend_from_slice(encoding);
        args.extend_from_slice(&["-t", file_type, &path_s, "synth", "0.5", "sine", "440"]);
        if channels == 2 {
            args.extend_from_slice(&["sine", "1000"]);
        }
        args.extend_from_slice(&["vol", "0.5"]);
        sox(&args);
        path
    }

    fn format_tag_of(bytes: &[u8]) -> u16 {
        read_u16(bytes, 20)
    }

    const ENCODINGS: &[(&str, &[&str], SampleFormat)] = &[
        (
            "u8",
            &["-e", "unsigned-integer", "-b", "8"],
            SampleFormat::Pcm { bits: 8 },
        ),
        (
            "s16",
            &["-e", "signed-integer", "-b", "16"],
            SampleFormat::Pcm { bits: 16 },
        ),
        (
            "s24",
            &["-e", "signed-integer", "-b", "24"],
            SampleFormat::Pcm { bits: 24 },
        ),
        (
            "s32",
            &["-e", "signed-integer", "-b", "32"],
            SampleFormat::Pcm { bits: 32 },
        ),
        (
            "f32",
            &["-e", "floating-point", "-b", "32"],
            SampleFormat::Float { bits: 32 },
        ),
        (
            "f64",
            &["-e", "floating-point", "-b", "64"],
            SampleFormat::Float { bits: 64 },
        ),
        ("ulaw", &["-e", "mu-law"], SampleFormat::MuLaw),
        ("alaw", &["-e", "a-law"], SampleFormat::ALaw),
    ];

    #[test]
    fn decodes_every_format_sox_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut tags_seen = std::collections::BTreeSet::new();
        for &(name, encoding, format) in ENCODINGS {
            for rate in [8000u32, 16000, 44100, 48000] {
                for channels in [1u16, 2] {
                    // `wav` lets sox pick the header (it goes extensible for >16-bit PCM);
                    // `wavpcm` asks for the classic header.
                    for file_type in ["wav", "wavpcm"] {
                        let file = format!("{name}-{rate}-{channels}-{file_type}.wav");
                        let path = sox_tone(dir.path(), &file, rate, channels, encoding, file_type);
                        let bytes = std::fs::read(&path).unwrap();
                        let tag = format_tag_of(&bytes);
                        tags_seen.insert(tag);
                        let label = format!("{file} (format tag {tag:#06x})");
                        let audio = read_wav(&path).unwrap_or_else(|e| panic!("{label}: {e}"));
                        assert_eq!(audio.sample_rate, rate, "{label}");
                        assert_eq!(audio.channels.len(), channels as usize, "{label}");
                        assert_eq!(audio.frames(), rate as usize / 2, "{label}");
                        assert_eq!(audio.format, format, "{label}");
                        assert!(!audio.truncated, "{label}");
                        check_tone(&audio.channels[0], rate, 440.0, 1000.0, &label);
                        if channels == 2 {
                            check_tone(&audio.channels[1], rate, 1000.0, 440.0, &label);
                        }
                    }
                }
            }
        }
        // Whatever sox version runs this, both header styles must have been exercised.
        assert!(
            tags_seen.contains(&FORMAT_EXTENSIBLE),
            "tags seen: {tags_seen:x?}"
        );
        assert!(tags_seen.contains(&FORMAT_PCM), "tags seen: {tags_seen:x?}");
    }

    /// Finds a chunk's body in a well-formed file (test helper, independent of the parser).
    fn find_chunk<'a>(bytes: &'a [u8], id: &[u8; 4]) -> (usize, &'a [u8]) {
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let size = read_u32(bytes, pos + 4) as usize;
            if &bytes[pos..pos + 4] == id {
                let end = (pos + 8 + size).min(bytes.len());
                return (pos + 8, &bytes[pos + 8..end]);
            }
            pos += 8 + size + (size & 1);
        }
        panic!("no {:?} chunk", String::from_utf8_lossy(id));
    }

    /// Rewrites a file with a WAVE_FORMAT_EXTENSIBLE header, with an odd-sized chunk before
    /// the fmt chunk and another before the data chunk so the walker must honour pad bytes.
    fn to_extensible(bytes: &[u8]) -> Vec<u8> {
        let (_, fmt) = find_chunk(bytes, b"fmt ");
        let (_, data) = find_chunk(bytes, b"data");
        let tag = read_u16(fmt, 0);
        let bits = read_u16(fmt, 14);
        let mut ext = fmt[..16].to_vec();
        ext[0..2].copy_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        ext.extend_from_slice(&22u16.to_le_bytes());
        ext.extend_from_slice(&bits.to_le_bytes());
        ext.extend_from_slice(&0u32.to_le_bytes());
        ext.extend_from_slice(&u32::from(tag).to_le_bytes());
        ext.extend_from_slice(&SUBFORMAT_GUID_TAIL);

        let mut body = b"WAVE".to_vec();
        let mut chunk = |id: &[u8], payload: &[u8]| {
            body.extend_from_slice(id);
            body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            body.extend_from_slice(payload);
            if payload.len() % 2 == 1 {
                body.push(0);
            }
        };
        chunk(b"junk", b"odd");
        chunk(b"fmt ", &ext);
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00test\x00");
        chunk(b"data", data);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn extensible_subformats_decode_like_their_classic_forms() {
        let dir = tempfile::tempdir().unwrap();
        for &(name, encoding, format) in ENCODINGS {
            let path = sox_tone(
                dir.path(),
                &format!("{name}.wav"),
                8000,
                2,
                encoding,
                "wavpcm",
            );
            let classic = std::fs::read(&path).unwrap();
            let ext = to_extensible(&classic);
            assert_eq!(read_u16(find_chunk(&ext, b"fmt ").1, 0), FORMAT_EXTENSIBLE);
            let a = decode_wav(&classic).unwrap();
            let b = decode_wav(&ext).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(b.format, format, "{name}");
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn unknown_extensible_subformat_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let path = sox_tone(dir.path(), "x.wav", 8000, 1, &["-b", "16"], "wavpcm");
        let mut ext = to_extensible(&std::fs::read(&path).unwrap());
        let (fmt_at, _) = find_chunk(&ext, b"fmt ");
        // Turn the GUID into something that is not a KSDATAFORMAT subtype at all.
        ext[fmt_at + 24 + 15] ^= 0xFF;
        let err = decode_wav(&ext).unwrap_err();
        assert!(matches!(err, WavError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("sub-format"), "{err}");
    }

    #[test]
    fn sox_streaming_header_is_read_as_truncated() {
        // Writing to a pipe, sox cannot seek back, so it leaves placeholder sizes.
        let bytes = sox(&[
            "-D", "-r", "8000", "-c", "2", "-n", "-b", "16", "-t", "wav", "-", "synth", "0.5",
            "sine", "440", "sine", "1000", "vol", "0.5",
        ]);
        let declared = read_u32(&bytes, 40);
        assert!(declared as usize > bytes.len(), "declared {declared:#x}");
        let audio = decode_wav(&bytes).unwrap();
        assert!(audio.truncated);
        assert_eq!(audio.frames(), 4000);
        check_tone(&audio.channels[0], 8000, 440.0, 1000.0, "pipe left");
        check_tone(&audio.channels[1], 8000, 1000.0, 440.0, "pipe right");
    }

    #[test]
    fn placeholder_data_sizes_read_to_end_of_file() {
        let samples: Vec<i16> = (0..101).map(|i| (i * 300) as i16).collect();
        let good = encode_wav_i16(16000, &[&samples]).unwrap();
        for placeholder in [0u32, 0xFFFF_FFFF] {
            let mut bytes = good.clone();
            bytes[40..44].copy_from_slice(&placeholder.to_le_bytes());
            bytes[4..8].copy_from_slice(&placeholder.to_le_bytes());
            let audio = decode_wav(&bytes).unwrap();
            assert!(audio.truncated, "{placeholder:#x}");
            assert_eq!(audio.frames(), 101, "{placeholder:#x}");
            assert_eq!(audio.channels[0][100], (100 * 300) as f32 / 32768.0);
        }
        // A genuinely empty data chunk followed by another chunk is not streaming output.
        let mut bytes = good[..44].to_vec();
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(b"LIST\x04\x00\x00\x00INFO");
        assert!(matches!(decode_wav(&bytes), Err(WavError::Empty)));
    }

    /// Every prefix of a valid file either decodes (flagged truncated, with exactly the whole
    /// frames present) or fails cleanly; none panics.
    #[test]
    fn every_prefix_of_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[&str], &str); 4] = [
            ("s16", &["-b", "16"], "wavpcm"),
            ("s24ext", &["-b", "24"], "wav"),
            ("ulaw", &["-e", "mu-law"], "wav"),
            ("u8", &["-e", "unsigned-integer", "-b", "8"], "wav"),
        ];
        for (name, encoding, file_type) in cases {
            let path = dir.path().join(format!("{name}.wav"));
            let p = path.to_string_lossy().into_owned();
            let mut args = vec!["-D", "-r", "8000", "-c", "2", "-n"];
            args.extend_from_slice(encoding);
            let synth = ["synth", "41s", "sine", "440", "sine", "1000"];
            args.extend_from_slice(&["-t", file_type, &p]);
            args.extend_from_slice(&synth);
            sox(&args);
            let full = std::fs::read(&path).unwrap();
            let full_audio = decode_wav(&full).unwrap();
            assert_eq!(full_audio.frames(), 41, "{name}");
            let (data_at, data) = find_chunk(&full, b"data");
            let align = full_audio.format.bytes_per_sample() * 2;
            for len in 0..full.len() {
                let result = decode_wav(&full[..len]);
                let data_bytes = len.saturating_sub(data_at).min(data.len());
                match result {
                    Ok(audio) => {
                        assert!(len >= data_at + align, "{name} prefix {len} decoded");
                        assert_eq!(audio.frames(), data_bytes / align, "{name} prefix {len}");
                        assert_eq!(audio.truncated, len < data_at + data.len(), "{name} {len}");
                        for ch in 0..2 {
                            assert_eq!(
                                audio.channels[ch][..],
                                full_audio.channels[ch][..audio.frames()],
                                "{name} prefix {len}"
                            );
                        }
                    }
                    Err(e) => {
                        assert!(len < data_at + align, "{name} prefix {len}: {e}");
                        let msg = e.to_string();
                        assert!(!msg.contains('\n'), "{msg}");
                        if len == 0 {
                            assert!(matches!(e, WavError::NotWav { .. }), "{e}");
                        } else if len >= data_at {
                            assert!(matches!(e, WavError::Empty), "{name} prefix {len}: {e}");
                        } else {
                            assert!(
                                matches!(e, WavError::Truncated { .. }),
                                "{name} prefix {len}: {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A tiny deterministic generator, so the garbage is the same on every run.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let check = |bytes: &[u8]| {
            if let Err(e) = decode_wav(bytes) {
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            }
        };
        // Pure noise.
        for _ in 0..2000 {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check(&bytes);
        }
        // Noise behind a valid RIFF/WAVE header, and plausible chunk ids with wild sizes.
        for _ in 0..5000 {
            let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
            for _ in 0..rng.below(5) {
                let ids: [&[u8; 4]; 5] = [b"fmt ", b"data", b"LIST", b"fact", b"junk"];
                bytes.extend_from_slice(ids[rng.below(ids.len())]);
                let size = match rng.below(4) {
                    0 => u32::MAX,
                    1 => rng.below(64) as u32,
                    2 => 16 + 24 * (rng.below(2) as u32),
                    _ => rng.next() as u32,
                };
                bytes.extend_from_slice(&size.to_le_bytes());
                for _ in 0..rng.below(64) {
                    bytes.push(rng.next() as u8);
                }
            }
            check(&bytes);
        }
        // Random corruption of real files in several formats.
        let mut valid = vec![encode_wav_i16(8000, &[&[1, -2, 3, -4, 5]]).unwrap()];
        let classic = encode_wav_i16(8000, &[&[1, 2, 3], &[4, 5, 6]]).unwrap();
        valid.push(to_extensible(&classic));
        for base in &valid {
            for _ in 0..5000 {
                let mut bytes = base.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
                let cut = rng.below(bytes.len() + 1);
                check(&bytes);
                check(&bytes[..cut]);
            }
        }
    }

    #[test]
    fn non_wav_files_say_what_they_are() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "empty"),
            (b"hello, this is a transcript\n", "text"),
            (b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb", "MP3"),
            (b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00", "MP3"),
            (b"OggS\x00\x02\x00\x00\x00\x00\x00\x00", "Ogg"),
            (b"fLaC\x00\x00\x00\x22\x00\x00\x00\x00", "FLAC"),
            (b"RIFF\x24\x00\x00\x00AVI LIST", "AVI "),
            (
                b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b",
                "00 01 02",
            ),
        ];
        for (bytes, needle) in cases {
            let err = decode_wav(bytes).unwrap_err();
            assert!(matches!(err, WavError::NotWav { .. }), "{needle}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.starts_with("not a WAV file"), "{msg}");
        }
        let err = decode_wav(b"RF64\xff\xff\xff\xffWAVEds64").unwrap_err();
        assert!(matches!(err, WavError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn unsupported_layouts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[&str], &str); 6] = [
            (&["-r", "8000", "-c", "3", "-b", "16"], "3 channels"),
            (&["-r", "96000", "-c", "1", "-b", "16"], "96000 Hz"),
            (&["-r", "6000", "-c", "1", "-b", "16"], "6000 Hz"),
            (&["-r", "8000", "-c", "1", "-e", "ima-adpcm"], "IMA ADPCM"),
            (
                &["-r", "8000", "-c", "1", "-e", "ms-adpcm"],
                "Microsoft ADPCM",
            ),
            (&["-r", "8000", "-c", "1", "-e", "gsm-full-rate"], "GSM"),
        ];
        for (i, (opts, needle)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.wav"));
            let p = path.to_string_lossy().into_owned();
            // The same options on the null input keep sox from adding its own conversions.
            let mut args = vec!["-D"];
            args.extend_from_slice(&opts[..4]);
            args.push("-n");
            args.extend_from_slice(opts);
            args.extend_from_slice(&[&p, "synth", "0.1", "sine", "440"]);
            sox(&args);
            let err = read_wav(&path).unwrap_err();
            assert!(matches!(err.kind(), WavError::Unsupported { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains(&p), "message names the file: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn inconsistent_headers_are_corrupt() {
        let good = encode_wav_i16(8000, &[&[1, 2, 3], &[4, 5, 6]]).unwrap();

        let mut bad_align = good.clone();
        bad_align[32..34].copy_from_slice(&3u16.to_le_bytes());
        let err = decode_wav(&bad_align).unwrap_err();
        assert!(matches!(err, WavError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("block align is 3 bytes"), "{err}");

        let mut no_channels = good.clone();
        no_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        let err = decode_wav(&no_channels).unwrap_err();
        assert!(matches!(err, WavError::Corrupt { .. }), "{err}");

        let mut short_fmt = good.clone();
        short_fmt[16..20].copy_from_slice(&12u32.to_le_bytes());
        let err = decode_wav(&short_fmt).unwrap_err();
        assert!(matches!(err, WavError::Corrupt { .. }), "{err}");

        // No fmt chunk: rename it so the walker skips it as unknown.
        let mut no_fmt = good.clone();
        no_fmt[12..16].copy_from_slice(b"fmtx");
        let err = decode_wav(&no_fmt).unwrap_err();
        assert!(matches!(err, WavError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("'fmt '"), "{err}");

        // No data chunk: the file ends after the header chunks.
        let mut no_data = good.clone();
        no_data[36..40].copy_from_slice(b"junk");
        let err = decode_wav(&no_data).unwrap_err();
        assert!(matches!(err, WavError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("'data'"), "{err}");
    }

    #[test]
    fn empty_and_partial_data() {
        let empty = encode_wav_i16(8000, &[&[], &[]]).unwrap();
        assert!(matches!(decode_wav(&empty), Err(WavError::Empty)));

        // A declared size that is not a whole number of frames: the partial frame is dropped.
        let mut partial = encode_wav_i16(8000, &[&[7, 8], &[9, 10]]).unwrap();
        partial.extend_from_slice(&[1, 2]);
        partial[40..44].copy_from_slice(&10u32.to_le_bytes());
        let audio = decode_wav(&partial).unwrap();
        assert_eq!(audio.frames(), 2);
        assert!(audio.truncated);
    }

    #[test]
    fn odd_sized_data_chunk_with_pad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.wav");
        let p = path.to_string_lossy().into_owned();
        // 41 one-byte frames: sox pads the data chunk to an even length.
        sox(&[
            "-D",
            "-r",
            "8000",
            "-c",
            "1",
            "-n",
            "-e",
            "unsigned-integer",
            "-b",
            "8",
            &p,
            "synth",
            "41s",
            "sine",
            "440",
        ]);
        let bytes = std::fs::read(&path).unwrap();
        let audio = decode_wav(&bytes).unwrap();
        assert_eq!(audio.frames(), 41);
        assert!(!audio.truncated);
        // Putting an odd chunk in front of the data must not shift the audio by the pad byte.
        let ext = to_extensible(&bytes);
        assert_eq!(decode_wav(&ext).unwrap().channels, audio.channels);
    }

    #[test]
    fn writer_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.wav");
        let left: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 1234];
        let right: Vec<i16> = vec![5, 4, 3, 2, 1, 0];
        write_wav_i16(&path, 16000, &[&left, &right]).unwrap();
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.sample_rate, 16000);
        assert_eq!(audio.format, SampleFormat::Pcm { bits: 16 });
        let back: Vec<i16> = audio.channels[0]
            .iter()
            .map(|&v| (v * 32768.0) as i16)
            .collect();
        assert_eq!(back, left);
        assert_eq!(audio.channels[1][0], 5.0 / 32768.0);
        // sox agrees with our writer.
        let info = sox(&["--i", "-r", &path.to_string_lossy()]);
        assert_eq!(String::from_utf8_lossy(&info).trim(), "16000");

        assert!(matches!(
            encode_wav_i16(8000, &[&[1, 2], &[1]]),
            Err(WavError::InvalidInput { .. })
        ));
        assert!(matches!(
            encode_wav_i16(8000, &[]),
            Err(WavError::InvalidInput { .. })
        ));
        let err = write_wav_i16(&dir.path().join("no/such/dir.wav"), 8000, &[&[1]]).unwrap_err();
        assert!(matches!(err, WavError::Write { .. }), "{err}");
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let err = read_wav(&missing).unwrap_err();
        assert!(matches!(err, WavError::Io { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read ") && msg.contains("missing.wav"),
            "{msg}"
        );

        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "call notes\n").unwrap();
        let err = read_wav(&text).unwrap_err();
        assert!(matches!(err.kind(), WavError::NotWav { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("notes.wav: not a WAV file"), "{msg}");
    }

    #[test]
    fn float_oddities_are_cleaned() {
        let classic = encode_wav_i16(8000, &[&[0, 0, 0, 0]]).unwrap();
        let mut bytes = classic[..44].to_vec();
        bytes[20..22].copy_from_slice(&FORMAT_FLOAT.to_le_bytes());
        bytes[32..34].copy_from_slice(&4u16.to_le_bytes());
        bytes[34..36].copy_from_slice(&32u16.to_le_bytes());
        bytes[40..44].copy_from_slice(&16u32.to_le_bytes());
        for v in [f32::NAN, 2.5, -7.0, 0.25] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let audio = decode_wav(&bytes).unwrap();
        assert_eq!(audio.channels[0], vec![0.0, 1.0, -1.0, 0.25]);
    }

    #[test]
    fn sample_format_display() {
        assert_eq!(
            SampleFormat::Pcm { bits: 8 }.to_string(),
            "8-bit unsigned PCM"
        );
        assert_eq!(SampleFormat::Pcm { bits: 24 }.to_string(), "24-bit PCM");
        assert_eq!(SampleFormat::Float { bits: 64 }.to_string(), "64-bit float");
        assert_eq!(SampleFormat::MuLaw.to_string(), "G.711 mu-law");
        assert_eq!(SampleFormat::ALaw.to_string(), "G.711 A-law");
    }
}
