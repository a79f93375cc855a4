//! Call recordings: each call's audio written to a 16-bit PCM WAV file as it arrives, so that a
//! crash or kill mid-call still leaves a playable file.
//!
//! Layout: a two-leg call is stereo, left = customer and right = agent; a single-leg call
//! (customer, agent or mixed) is mono. Samples are at the call's source rate, clipped to
//! [-1, 1] and stored as `round(x * 32768)`, the inverse of what [`crate::audio::wav`] reads.
//! The header is always the canonical 44 bytes (`RIFF`, `fmt `, `data`), the data chunk last.
//!
//! Alignment: legs arrive separately (Twilio interleaves inbound and outbound frames, an
//! AudioSocket leg may join seconds late), each with its own `start_sample`. Each channel is
//! placed by `start_sample`: a gap becomes silence, audio for a position that channel already
//! has is dropped (and counted). Whole frames go to disk as soon as every channel has audio up
//! to a point. One leg may run at most [`MAX_LEAD_MS`] ahead of another; past that the lagging
//! channel is written as silence, so memory stays bounded and a dead leg cannot stall the file
//! (audio that leg sends later for positions already written is dropped as late).
//!
//! Crash safety: the RIFF and data sizes in the header are rewritten every [`HEADER_UPDATE_MS`]
//! of audio written (and after the first write), so a process killed mid-call leaves a valid WAV
//! whose header covers the audio up to the last update; [`repair`] then recomputes the header
//! from the file length (dropping a partial frame) and recovers every whole frame that reached
//! the file. What is lost on a kill is the audio still buffered here: at most [`MAX_LEAD_MS`] of
//! one leg's lead over the other. Writes go straight to the file (no user-space buffer); the
//! file is fsynced by [`Recording::finish`] and [`repair`], not on every update, so a power cut
//! (as opposed to a process crash) may lose whatever the kernel had not flushed yet.
//!
//! Redaction: [`Recording::silence`] zeroes one leg's stretch wherever it is (on disk: rewritten
//! in place, that channel only; buffered: zeroed before it is written; not yet arrived: zeroed
//! when it arrives), and [`silence_in_file`] does the same to a finished file.
//!
//! Does not: compress, resample, mix legs, split a call into several files, or write more than
//! a RIFF file can hold (4 GiB of data; [`RecordingError::TooLong`] stops the recording there,
//! leaving a valid file). After any I/O error (a full disk) a recording stops for good: the
//! file is cut back to its last whole frame and later writes return
//! [`RecordingError::Stopped`]. All calls block on file I/O (small writes, each a few ms of
//! audio); run them off the async executor's core threads (`spawn_blocking`, a writer task).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::domain::leg::Leg;
use crate::pipeline::audio::wav::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// How much audio is written between two rewrites of the header's size fields.
pub const HEADER_UPDATE_MS: u64 = 1_000;
/// How far one leg may run ahead of another before the lagging channel is written as silence.
pub const MAX_LEAD_MS: u64 = 2_000;

/// Length of the canonical header this module writes.
const HEADER_LEN: u64 = 44;
const RIFF_SIZE_AT: u64 = 4;
const DATA_SIZE_AT: u64 = 40;
const FORMAT_PCM: u16 = 1;
const BITS: u16 = 16;
/// The largest data chunk whose RIFF size (36 + data) still fits the u32 size field.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 36;
/// Bytes read and rewritten at a time when silencing a stretch of a file.
const EDIT_CHUNK_BYTES: u64 = 64 * 1024;

/// The folder of the data directory that recordings go to.
pub const RECORDINGS_DIR: &str = "recordings";

/// Why a recording could not be created, written, repaired or edited. Every message names the
/// file and is one line.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording {} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create recording {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write recording {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read recording {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recording {}: {what}", path.display())]
    InvalidInput { path: PathBuf, what: String },
    #[error(
        "recording {} reached the WAV size limit (4 GiB, {} s of audio at this rate); \
         audio from {at_ms} ms on is not recorded",
        path.display(),
        max_ms / 1000
    )]
    TooLong {
        path: PathBuf,
        max_ms: u64,
        at_ms: u64,
    },
    #[error("recording {} stopped earlier ({reason}); this audio is not recorded", path.display())]
    Stopped { path: PathBuf, reason: String },
    #[error("{} is not a recording this module can repair or edit: {what}", path.display())]
    NotRecording { path: PathBuf, what: String },
}

/// What [`Recording::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub path: PathBuf,
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// The leg on each channel, in channel order.
    pub legs: Vec<Leg>,
    /// Sample frames in the file.
    pub frames: u64,
    pub duration_ms: u64,
    /// Samples given to `write` for positions their channel already had (duplicates, or audio
    /// that arrived after its channel was written as silence).
    pub dropped_samples: u64,
    /// Why the recording stopped before the call ended (an I/O error, the size limit); `None`
    /// when everything given was recorded.
    pub incomplete: Option<String>,
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub path: PathBuf,
    pub sample_rate: u32,
    pub channels: u16,
    /// Whole frames in the file now.
    pub frames: u64,
    pub duration_ms: u64,
    /// Frames the header declared before the repair (clamped to what the file held).
    pub frames_before: u64,
    /// Bytes cut from the end: a partial frame, or anything past the 4 GiB limit.
    pub bytes_truncated: u64,
    /// Whether anything was rewritten (false for a file that was already consistent).
    pub changed: bool,
}

/// The channel layout for a call's legs, in channel order: `[Customer, Agent]` when the call has
/// both, otherwise its one leg.
pub fn channel_legs(legs: &[Leg]) -> Result<Vec<Leg>, String> {
    let has = |leg| legs.contains(&leg);
    match (has(Leg::Customer), has(Leg::Agent), has(Leg::Mixed)) {
        (true, true, false) => Ok(vec![Leg::Customer, Leg::Agent]),
        (true, false, false) => Ok(vec![Leg::Customer]),
        (false, true, false) => Ok(vec![Leg::Agent]),
        (false, false, true) => Ok(vec![Leg::Mixed]),
        (false, false, false) => Err("a recording needs at least one leg".into()),
        _ => Err(format!(
            "cannot record legs {} together: mixed audio is recorded on its own",
            legs.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The channel (0-based) that carries `leg` in a recording of a call with `legs`, for
/// [`silence_in_file`]; `None` if that recording has no such channel.
pub fn channel_for(legs: &[Leg], leg: Leg) -> Option<u16> {
    let layout = channel_legs(legs).ok()?;
    let at = layout.iter().position(|&l| l == leg)?;
    u16::try_from(at).ok()
}

/// A recording path in `dir` that does not exist yet: `<call>.wav`, else `<call>-1.wav`,
/// `<call>-2.wav`, ... (call ids repeat across runs; a recording is never overwritten).
pub fn unused_path(dir: &Path, call_id: &str) -> std::path::PathBuf {
    let name = file_name_for(call_id);
    let stem = name.trim_end_matches(".wav");
    let mut path = dir.join(&name);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.wav"));
        n += 1;
    }
    path
}

/// A file name (`<id>.wav`) for a call id from a phone system: anything but ASCII letters,
/// digits, `-` and `_` becomes `_`, and long ids are cut, so an id cannot leave the directory.
pub fn file_name_for(call_id: &str) -> String {
    let mut stem: String = call_id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        stem.push_str("call");
    }
    format!("{stem}.wav")
}

/// A stretch of a channel to zero when its audio arrives.
#[derive(Debug, Clone, Copy)]
struct Mute {
    channel: usize,
    start: u64,
    end: u64,
}

/// One call's recording, open for writing. See the module docs.
///
/// Dropping it without [`Recording::finish`] (a cancelled task, a panic) still writes what is
/// buffered and the header, best effort; only a real kill leaves the file for [`repair`].
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    file: File,
    sample_rate: u32,
    /// The leg on each channel.
    legs: Vec<Leg>,
    /// Per channel: samples for frames `frames_written ..` not yet on disk.
    pending: Vec<VecDeque<i16>>,
    frames_written: u64,
    /// Frames the header on disk declares.
    header_frames: u64,
    header_every: u64,
    max_lead: u64,
    max_frames: u64,
    mutes: Vec<Mute>,
    dropped_samples: u64,
    stopped: Option<String>,
    finished: bool,
}

impl Recording {
    /// Creates `path` (and its parent directories) as an empty WAV for a call with `legs` at
    /// `sample_rate`. Never overwrites: an existing file is [`RecordingError::Exists`].
    pub fn create(
        path: &Path,
        sample_rate: u32,
        legs: &[Leg],
    ) -> Result<Recording, RecordingError> {
        let invalid = |what: String| RecordingError::InvalidInput {
            path: path.to_path_buf(),
            what,
        };
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
            return Err(invalid(format!(
                "sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
            )));
        }
        let legs = channel_legs(legs).map_err(invalid)?;
        let create_err = |source| RecordingError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create_err)?;
        }
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(RecordingError::Exists {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(create_err(e)),
        };
        let channels = legs.len() as u16;
        if let Err(e) = file.write_all(&wav_header(sample_rate, channels, 0)) {
            // The file is ours and holds nothing yet: do not leave a broken one behind.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(create_err(e));
        }
        let rate = u64::from(sample_rate);
        let block_align = u64::from(channels) * 2;
        Ok(Recording {
            path: path.to_path_buf(),
            file,
            sample_rate,
            pending: vec![VecDeque::new(); legs.len()],
            legs,
            frames_written: 0,
            header_frames: 0,
            header_every: (rate * HEADER_UPDATE_MS / 1000).max(1),
            max_lead: (rate * MAX_LEAD_MS / 1000).max(1),
            max_frames: MAX_DATA_BYTES / block_align,
            mutes: Vec::new(),
            dropped_samples: 0,
            stopped: None,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> u16 {
        self.legs.len() as u16
    }

    /// The leg on each channel, in channel order.
    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }

    /// Frames on disk so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Samples held in memory, all channels together (bounded by [`MAX_LEAD_MS`] of one leg).
    pub fn buffered_samples(&self) -> usize {
        self.pending.iter().map(VecDeque::len).sum()
    }

    /// Why the recording stopped early, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Adds `samples` of `leg` starting at that leg's sample `start_sample` (see the module docs
    /// for alignment). Whole frames are written as soon as every channel has them.
    pub fn write(
        &mut self,
        leg: Leg,
        start_sample: u64,
        samples: &[f32],
    ) -> Result<(), RecordingError> {
        let ch = self.channel(leg)?;
        if let Some(reason) = &self.stopped {
            return Err(RecordingError::Stopped {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        let next = self.channel_end(ch);
        let mut samples = samples;
        let mut start = start_sample;
        if start < next {
            let overlap =
                usize::try_from(next - start).map_or(samples.len(), |n| n.min(samples.len()));
            self.dropped_samples += overlap as u64;
            samples = &samples[overlap..];
            start = next;
        }
        if samples.is_empty() {
            return Ok(());
        }
        if start >= self.max_frames {
            // Past what a RIFF file can hold (or a wild jump): stop, writing no silence.
            self.stop_at_limit();
            return Err(self.too_long(start));
        }
        let step = usize::try_from(self.max_lead).unwrap_or(usize::MAX);
        let mut gap = start - next;
        while gap > 0 {
            let n = gap.min(self.max_lead);
            self.pending[ch].extend(std::iter::repeat_n(0i16, n as usize));
            self.pump()?;
            gap -= n;
        }
        for part in samples.chunks(step) {
            let at = self.channel_end(ch);
            self.pending[ch].extend(part.iter().map(|&x| to_i16(x)));
            self.apply_mutes(ch, at);
            self.pump()?;
        }
        Ok(())
    }

    /// Zeroes `leg`'s audio from `start_ms` to `end_ms` (call time; widened to whole samples):
    /// in place on disk for what was written, in memory for what is buffered, and on arrival
    /// for what has not come yet. Other channels are untouched.
    pub fn silence(&mut self, leg: Leg, start_ms: u64, end_ms: u64) -> Result<(), RecordingError> {
        let ch = self.channel(leg)?;
        let (start, end) = span_to_samples(&self.path, start_ms, end_ms, self.sample_rate)?;
        if start >= end {
            return Ok(());
        }
        let on_disk_end = end.min(self.frames_written);
        if start < on_disk_end {
            let channels = self.channels();
            let end_of_data = self.data_end();
            let result = zero_channel(&mut self.file, HEADER_LEN, channels, ch, start, on_disk_end)
                .and_then(|()| self.file.seek(SeekFrom::Start(end_of_data)).map(|_| ()));
            if let Err(source) = result {
                // Where the cursor is now is unknown: stop rather than append at a wrong place.
                if self.stopped.is_none() {
                    self.stopped = Some(format!("silencing a span failed: {source}"));
                }
                return Err(self.write_err(source));
            }
        }
        let buffered_start = self.frames_written;
        let buffered_end = self.channel_end(ch);
        let from = start.max(buffered_start);
        let to = end.min(buffered_end);
        for pos in from..to {
            if let Some(s) = self.pending[ch].get_mut((pos - buffered_start) as usize) {
                *s = 0;
            }
        }
        if end > buffered_end && self.stopped.is_none() {
            self.mutes.push(Mute {
                channel: ch,
                start: start.max(buffered_end),
                end,
            });
        }
        Ok(())
    }

    /// Writes what is still buffered (a lagging channel's missing tail as silence), the final
    /// header, and fsyncs the file and its directory.
    pub fn finish(mut self) -> Result<RecordingInfo, RecordingError> {
        if self.stopped.is_none() {
            let rest = self.pending.iter().map(VecDeque::len).max().unwrap_or(0);
            match self.write_frames(rest as u64) {
                Ok(()) | Err(RecordingError::TooLong { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.write_sizes().map_err(|e| self.write_err(e))?;
        self.file.sync_all().map_err(|e| self.write_err(e))?;
        // The directory entry of a new file: best effort, not every filesystem can sync one.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.finished = true;
        Ok(RecordingInfo {
            path: self.path.clone(),
            sample_rate: self.sample_rate,
            channels: self.channels(),
            legs: self.legs.clone(),
            frames: self.frames_written,
            duration_ms: self.frames_written * 1000 / u64::from(self.sample_rate),
            dropped_samples: self.dropped_samples,
            incomplete: self.stopped.clone(),
        })
    }

    fn channel(&self, leg: Leg) -> Result<usize, RecordingError> {
        self.legs
            .iter()
            .position(|&l| l == leg)
            .ok_or_else(|| RecordingError::InvalidInput {
                path: self.path.clone(),
                what: format!(
                    "this recording has no {leg} channel (it records {})",
                    self.legs
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            })
    }

    /// The next position channel `ch` expects.
    fn channel_end(&self, ch: usize) -> u64 {
        self.frames_written + self.pending[ch].len() as u64
    }

    fn block_align(&self) -> u64 {
        u64::from(self.channels()) * 2
    }

    fn data_end(&self) -> u64 {
        HEADER_LEN + self.frames_written * self.block_align()
    }

    /// Zeroes the samples of channel `ch` from position `at` on that fall in a pending mute,
    /// and forgets mutes that channel has passed.
    fn apply_mutes(&mut self, ch: usize, at: u64) {
        let end = self.channel_end(ch);
        let base = self.frames_written;
        for m in self.mutes.iter().filter(|m| m.channel == ch) {
            for pos in m.start.max(at)..m.end.min(end) {
                if let Some(s) = self.pending[ch].get_mut((pos - base) as usize) {
                    *s = 0;
                }
            }
        }
        self.mutes.retain(|m| m.channel != ch || m.end > end);
    }

    /// Writes the frames every channel has, then forces out a lead past `max_lead`.
    fn pump(&mut self) -> Result<(), RecordingError> {
        let common = self.pending.iter().map(VecDeque::len).min().unwrap_or(0) as u64;
        if common > 0 {
            self.write_frames(common)?;
        }
        let longest = self.pending.iter().map(VecDeque::len).max().unwrap_or(0) as u64;
        if longest > self.max_lead {
            self.write_frames(longest - self.max_lead)?;
        }
        Ok(())
    }

    /// Writes `n` frames from the front of the buffers, a channel with fewer as silence.
    fn write_frames(&mut self, n: u64) -> Result<(), RecordingError> {
        let room = self.max_frames.saturating_sub(self.frames_written);
        let take = n.min(room);
        if take > 0 {
            let count = take as usize;
            let mut bytes = Vec::with_capacity(count * self.pending.len() * 2);
            for i in 0..count {
                for channel in &self.pending {
                    let s = channel.get(i).copied().unwrap_or(0);
                    bytes.extend_from_slice(&s.to_le_bytes());
                }
            }
            if let Err(e) = self.file.write_all(&bytes) {
                return Err(self.fail(e));
            }
            for channel in &mut self.pending {
                let drained = count.min(channel.len());
                channel.drain(..drained);
            }
            self.frames_written += take;
            let due = self.header_frames == 0
                || self.frames_written - self.header_frames >= self.header_every;
            if due && let Err(e) = self.write_sizes() {
                return Err(self.fail(e));
            }
        }
        if take < n {
            self.stop_at_limit();
            return Err(self.too_long(self.frames_written));
        }
        Ok(())
    }

    fn stop_at_limit(&mut self) {
        self.stopped = Some(format!(
            "it reached the 4 GiB WAV size limit at {} ms",
            self.frames_written * 1000 / u64::from(self.sample_rate)
        ));
        if let Err(e) = self.write_sizes() {
            self.stopped = Some(format!("updating the header failed: {e}"));
        }
    }

    /// Rewrites the header's RIFF and data sizes for the frames written, then returns to the
    /// end of the data.
    fn write_sizes(&mut self) -> std::io::Result<()> {
        let data = (self.frames_written * self.block_align()).min(MAX_DATA_BYTES) as u32;
        self.file.seek(SeekFrom::Start(RIFF_SIZE_AT))?;
        self.file.write_all(&(36 + data).to_le_bytes())?;
        self.file.seek(SeekFrom::Start(DATA_SIZE_AT))?;
        self.file.write_all(&data.to_le_bytes())?;
        let end = self.data_end();
        self.file.seek(SeekFrom::Start(end))?;
        self.header_frames = self.frames_written;
        Ok(())
    }

    /// After a failed write: cut the file back to its last whole frame and a matching header
    /// (best effort), and stop recording.
    fn fail(&mut self, source: std::io::Error) -> RecordingError {
        let end = self.data_end();
        let _ = self.file.set_len(end);
        let _ = self.write_sizes();
        self.stopped = Some(format!("writing failed: {source}"));
        self.write_err(source)
    }

    fn write_err(&self, source: std::io::Error) -> RecordingError {
        RecordingError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn too_long(&self, at_frame: u64) -> RecordingError {
        let rate = u64::from(self.sample_rate);
        RecordingError::TooLong {
            path: self.path.clone(),
            max_ms: self.max_frames * 1000 / rate,
            at_ms: at_frame.saturating_mul(1000) / rate,
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Best effort: a cancelled call task or a panic should still leave a complete file.
        if self.stopped.is_none() {
            let rest = self.pending.iter().map(VecDeque::len).max().unwrap_or(0);
            let _ = self.write_frames(rest as u64);
        }
        let _ = self.write_sizes();
    }
}

/// Recomputes the header of a recording left by a crash from the file's length: every whole
/// frame that reached the file becomes part of the data chunk, a partial frame at the end is
/// cut off, and the file is fsynced. Harmless on a consistent file (`changed` is false).
///
/// Works on 16-bit PCM WAV files whose data chunk is the last chunk, as every file this module
/// writes is; a file cut inside its header (killed while being created) holds no audio and is
/// [`RecordingError::NotRecording`].
pub fn repair(path: &Path) -> Result<RepairReport, RecordingError> {
    let mut file = open_rw(path)?;
    let layout = read_layout(&mut file, path)?;
    let read_err = |source| RecordingError::Read {
        path: path.to_path_buf(),
        source,
    };
    let write_err = |source| RecordingError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(read_err)?.len();
    let align = u64::from(layout.channels) * 2;
    let available = file_len.saturating_sub(layout.data_start);
    // The RIFF size (file length - 8) must fit in a u32.
    let max_data = (u64::from(u32::MAX) + 8).saturating_sub(layout.data_start);
    let data_len = available.min(max_data) / align * align;
    let new_len = layout.data_start + data_len;
    let frames_before = u64::from(layout.declared_data).min(available) / align;
    let riff_size = (new_len - 8) as u32;
    let changed = new_len != file_len
        || u64::from(layout.declared_data) != data_len
        || layout.riff_size != riff_size;
    if changed {
        if new_len < file_len {
            file.set_len(new_len).map_err(write_err)?;
        }
        let sizes = [
            (RIFF_SIZE_AT, riff_size),
            (layout.data_start - 4, data_len as u32),
        ];
        for (at, value) in sizes {
            file.seek(SeekFrom::Start(at)).map_err(write_err)?;
            file.write_all(&value.to_le_bytes()).map_err(write_err)?;
        }
        file.sync_all().map_err(write_err)?;
    }
    let frames = data_len / align;
    Ok(RepairReport {
        path: path.to_path_buf(),
        sample_rate: layout.sample_rate,
        channels: layout.channels,
        frames,
        duration_ms: frames * 1000 / u64::from(layout.sample_rate.max(1)),
        frames_before,
        bytes_truncated: file_len - new_len,
        changed,
    })
}

/// Zeroes channel `channel` (0-based: 0 = customer or the only leg, 1 = agent; see
/// [`channel_for`]) of a finished 16-bit PCM recording from `start_ms` to `end_ms`, widened to
/// whole samples and clamped to the file; returns the frames touched. The file is fsynced.
///
/// For a file with the canonical 44-byte header (every file this module writes) the data is
/// taken to run to the end of the file even if the header says less, so that a span in audio a
/// stale header does not yet cover is silenced too.
pub fn silence_in_file(
    path: &Path,
    channel: u16,
    start_ms: u64,
    end_ms: u64,
) -> Result<u64, RecordingError> {
    let mut file = open_rw(path)?;
    let layout = read_layout(&mut file, path)?;
    if channel >= layout.channels {
        return Err(RecordingError::InvalidInput {
            path: path.to_path_buf(),
            what: format!(
                "channel {channel} does not exist: the file has {} channel{}",
                layout.channels,
                if layout.channels == 1 { "" } else { "s" }
            ),
        });
    }
    let (start, end) = span_to_samples(path, start_ms, end_ms, layout.sample_rate)?;
    let file_len = file
        .metadata()
        .map_err(|source| RecordingError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let available = file_len.saturating_sub(layout.data_start);
    let data_len = if layout.data_start == HEADER_LEN {
        available
    } else {
        u64::from(layout.declared_data).min(available)
    };
    let frames = data_len / (u64::from(layout.channels) * 2);
    let end = end.min(frames);
    if start >= end {
        return Ok(0);
    }
    let write_err = |source| RecordingError::Write {
        path: path.to_path_buf(),
        source,
    };
    zero_channel(
        &mut file,
        layout.data_start,
        layout.channels,
        usize::from(channel),
        start,
        end,
    )
    .map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(end - start)
}

/// The 44-byte header of a 16-bit PCM file holding `data_len` bytes of audio.
fn wav_header(sample_rate: u32, channels: u16, data_len: u32) -> [u8; 44] {
    let block_align = channels * (BITS / 8);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&FORMAT_PCM.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&BITS.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// A sample in [-1, 1] as 16-bit PCM, the inverse of the WAV reader's `v / 32768`. NaN is 0.
fn to_i16(x: f32) -> i16 {
    if x.is_nan() {
        return 0;
    }
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// A call-time span in ms as sample positions `[start, end)`, widened outwards.
fn span_to_samples(
    path: &Path,
    start_ms: u64,
    end_ms: u64,
    rate: u32,
) -> Result<(u64, u64), RecordingError> {
    if start_ms > end_ms {
        return Err(RecordingError::InvalidInput {
            path: path.to_path_buf(),
            what: format!("span {start_ms}..{end_ms} ms ends before it starts"),
        });
    }
    let rate = u128::from(rate);
    let start = u128::from(start_ms) * rate / 1000;
    let end = (u128::from(end_ms) * rate).div_ceil(1000);
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Ok((clamp(start), clamp(end)))
}

/// Zeroes channel `ch` of frames `[from, to)` of the data that starts at byte `data_start`.
fn zero_channel(
    file: &mut File,
    data_start: u64,
    channels: u16,
    ch: usize,
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    let align = u64::from(channels) * 2;
    let per_chunk = (EDIT_CHUNK_BYTES / align).max(1);
    let mut buf = vec![0u8; (per_chunk * align) as usize];
    let mut frame = from;
    while frame < to {
        let n = (to - frame).min(per_chunk);
        let bytes = &mut buf[..(n * align) as usize];
        let at = data_start + frame * align;
        if channels == 1 {
            bytes.fill(0);
        } else {
            file.seek(SeekFrom::Start(at))?;
            file.read_exact(bytes)?;
            for f in bytes.chunks_exact_mut(align as usize) {
                f[ch * 2] = 0;
                f[ch * 2 + 1] = 0;
            }
        }
        file.seek(SeekFrom::Start(at))?;
        file.write_all(bytes)?;
        frame += n;
    }
    Ok(())
}

fn open_rw(path: &Path) -> Result<File, RecordingError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| RecordingError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Where a 16-bit PCM file's audio is.
#[derive(Debug, Clone, Copy)]
struct FileLayout {
    channels: u16,
    sample_rate: u32,
    riff_size: u32,
    /// Byte offset of the first sample.
    data_start: u64,
    /// What the data chunk's header says (possibly stale).
    declared_data: u32,
}

/// Walks the chunks from the start of `file` to the data chunk's header.
fn read_layout(file: &mut File, path: &Path) -> Result<FileLayout, RecordingError> {
    let not_ours = |what: &str| RecordingError::NotRecording {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let read_err = |source| RecordingError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut head = [0u8; 12];
    read_at(file, 0, &mut head).map_err(read_err)?;
    if file_len < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(not_ours("no RIFF/WAVE header"));
    }
    let riff_size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut pos = 12u64;
    let mut fmt: Option<(u16, u32)> = None;
    while pos + 8 <= file_len {
        let mut chunk = [0u8; 8];
        read_at(file, pos, &mut chunk).map_err(read_err)?;
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        let body = pos + 8;
        match &chunk[0..4] {
            b"fmt " => {
                if !(16..=1024).contains(&size) || body + u64::from(size) > file_len {
                    return Err(not_ours("its 'fmt ' chunk is cut off or malformed"));
                }
                let mut f = [0u8; 16];
                read_at(file, body, &mut f).map_err(read_err)?;
                let tag = u16::from_le_bytes([f[0], f[1]]);
                let channels = u16::from_le_bytes([f[2], f[3]]);
                let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                let align = u16::from_le_bytes([f[12], f[13]]);
                let bits = u16::from_le_bytes([f[14], f[15]]);
                if tag != FORMAT_PCM || bits != BITS {
                    return Err(not_ours("it is not 16-bit PCM"));
                }
                if !(1..=2).contains(&channels) || align != channels * 2 || rate == 0 {
                    return Err(not_ours(
                        "its 'fmt ' chunk is not mono or stereo 16-bit PCM",
                    ));
                }
                fmt = Some((channels, rate));
            }
            b"data" => {
                let Some((channels, sample_rate)) = fmt else {
                    return Err(not_ours("its 'data' chunk comes before any 'fmt ' chunk"));
                };
                return Ok(FileLayout {
                    channels,
                    sample_rate,
                    riff_size,
                    data_start: body,
                    declared_data: size,
                });
            }
            _ => {}
        }
        pos = body + u64::from(size) + u64::from(size & 1);
    }
    Err(not_ours(
        "the file ends before its 'data' chunk (cut off while being created: it holds no audio)",
    ))
}

fn read_at(file: &mut File, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::audio::wav::read_wav;

    /// What the WAV reader gives back for `x` written by this module.
    fn q(x: f32) -> f32 {
        f32::from(to_i16(x)) / 32768.0
    }

    /// A tone's sample at absolute position `pos`.
    fn tone(rate: u32, freq: f64, pos: u64) -> f32 {
        (0.5 * (2.0 * std::f64::consts::PI * freq * pos as f64 / f64::from(rate)).sin()) as f32
    }

    fn tone_run(rate: u32, freq: f64, start: u64, n: usize) -> Vec<f32> {
        (0..n as u64).map(|i| tone(rate, freq, start + i)).collect()
    }

    /// Checks `got` equals `want(pos)` (quantised) at every position, naming the first miss.
    fn assert_channel(got: &[f32], want: impl Fn(u64) -> f32, label: &str) {
        for (i, &g) in got.iter().enumerate() {
            let w = q(want(i as u64));
            assert!(
                g == w,
                "{label}: sample {i} is {g}, expected {w} (of {} samples)",
                got.len()
            );
        }
    }

    fn frame_len(rate: u32) -> usize {
        rate as usize / 50
    }

    #[test]
    fn two_leg_call_in_interleaved_20ms_frames_reads_back_on_the_right_channels() {
        for rate in [8_000u32, 48_000] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("calls/2024/call.wav");
            // Agent first in `legs`: the layout is still customer left, agent right.
            let mut rec = Recording::create(&path, rate, &[Leg::Agent, Leg::Customer]).unwrap();
            assert_eq!(rec.legs(), &[Leg::Customer, Leg::Agent]);
            let n = frame_len(rate);
            let frames = 150; // 3 s
            let half = (frames / 2 * n) as u64;
            // Customer speaks (440 Hz) in the first half, agent (1 kHz) in the second.
            let cust = |p: u64| if p < half { tone(rate, 440.0, p) } else { 0.0 };
            let agent = |p: u64| {
                if p >= half {
                    tone(rate, 1000.0, p)
                } else {
                    0.0
                }
            };
            for k in 0..frames {
                let at = (k * n) as u64;
                let c: Vec<f32> = (at..at + n as u64).map(cust).collect();
                let a: Vec<f32> = (at..at + n as u64).map(agent).collect();
                if k % 2 == 0 {
                    rec.write(Leg::Customer, at, &c).unwrap();
                    rec.write(Leg::Agent, at, &a).unwrap();
                } else {
                    rec.write(Leg::Agent, at, &a).unwrap();
                    rec.write(Leg::Customer, at, &c).unwrap();
                }
                // Written as soon as both legs have it: nothing lingers.
                assert_eq!(rec.buffered_samples(), 0, "{rate} Hz frame {k}");
                assert_eq!(rec.frames_written(), at + n as u64);
            }
            let info = rec.finish().unwrap();
            assert_eq!(info.frames, (frames * n) as u64);
            assert_eq!(info.duration_ms, 3000);
            assert_eq!(info.channels, 2);
            assert_eq!(info.sample_rate, rate);
            assert_eq!(info.dropped_samples, 0);
            assert_eq!(info.incomplete, None);
            assert_eq!(info.path, path);

            let audio = read_wav(&path).unwrap();
            assert_eq!(audio.sample_rate, rate);
            assert_eq!(audio.channels.len(), 2);
            assert_eq!(audio.frames(), frames * n);
            assert!(!audio.truncated);
            assert_channel(&audio.channels[0], cust, &format!("{rate} customer"));
            assert_channel(&audio.channels[1], agent, &format!("{rate} agent"));
            // The tone really is there (not a trivially silent file).
            assert!(audio.channels[0][..half as usize].iter().any(|&v| v > 0.45));
            assert!(audio.channels[1][half as usize..].iter().any(|&v| v > 0.45));
        }
    }

    /// Customer from the start; the agent's first audio comes `late_s` into the call, sent when
    /// the customer has already sent that much. Returns the reread file and the peak buffer.
    fn late_agent(
        rate: u32,
        late_s: f64,
    ) -> (crate::pipeline::audio::wav::DecodedAudio, usize, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.wav");
        let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
        let n = frame_len(rate);
        let join = (late_s * f64::from(rate)) as u64;
        let total = 5 * rate as u64;
        let mut peak = 0;
        let mut written_before_join = 0;
        let mut at = 0u64;
        while at < total {
            rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, n))
                .unwrap();
            if at + n as u64 > join {
                let from = at.max(join);
                let len = (at + n as u64 - from) as usize;
                rec.write(Leg::Agent, from, &tone_run(rate, 1000.0, from, len))
                    .unwrap();
            } else {
                written_before_join = rec.frames_written();
            }
            peak = peak.max(rec.buffered_samples());
            at += n as u64;
        }
        rec.finish().unwrap();
        (read_wav(&path).unwrap(), peak, written_before_join)
    }

    #[test]
    fn a_leg_joining_late_is_aligned_on_its_start_sample() {
        let rate = 8_000;
        // 1.5 s late: within the lead bound, everything is held until the agent arrives.
        let (audio, peak, before) = late_agent(rate, 1.5);
        let join = 12_000;
        assert_eq!(
            before, 0,
            "nothing can be written before the agent's audio arrives"
        );
        assert!(
            peak >= join as usize - 160,
            "the customer's lead was buffered: {peak}"
        );
        assert_eq!(audio.frames(), 5 * rate as usize);
        assert_channel(&audio.channels[0], |p| tone(rate, 440.0, p), "customer");
        assert_channel(
            &audio.channels[1],
            |p| if p < join { 0.0 } else { tone(rate, 1000.0, p) },
            "agent",
        );

        // 3.5 s late: past the lead bound the agent channel is written as silence meanwhile,
        // and the agent's audio still lands at its own position.
        let (audio, peak, before) = late_agent(rate, 3.5);
        let join = 28_000;
        assert!(
            peak <= 16_000 + 160,
            "buffer bounded by the 2 s lead: {peak}"
        );
        assert!(before >= 12_000, "the file kept growing: {before} frames");
        assert_channel(&audio.channels[0], |p| tone(rate, 440.0, p), "customer");
        assert_channel(
            &audio.channels[1],
            |p| if p < join { 0.0 } else { tone(rate, 1000.0, p) },
            "agent",
        );
    }

    #[test]
    fn gaps_become_silence_and_overlaps_are_dropped() {
        let rate = 8_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gaps.wav");
        let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
        let n = 160u64;
        let (gap_from, gap_to) = (8_000u64, 11_200u64); // 1.0 .. 1.4 s on the customer leg
        let mut at = 0;
        while at < 3 * 8_000 {
            if !(gap_from..gap_to).contains(&at) {
                rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, n as usize))
                    .unwrap();
            }
            rec.write(Leg::Agent, at, &tone_run(rate, 1000.0, at, n as usize))
                .unwrap();
            if at == 16_000 {
                // A retransmitted frame (different content) and one straddling the end: the
                // first copy wins, the new part of the straddling one is kept.
                rec.write(Leg::Agent, at, &vec![0.9; n as usize]).unwrap();
                rec.write(Leg::Customer, at + 80, &tone_run(rate, 440.0, at + 80, 160))
                    .unwrap();
                at += 80; // the customer leg is now 80 samples ahead
                rec.write(Leg::Agent, at + 80, &tone_run(rate, 1000.0, at + 80, 80))
                    .unwrap();
            }
            at += n;
        }
        let info = rec.finish().unwrap();
        assert_eq!(info.dropped_samples, 160 + 80);
        let audio = read_wav(&path).unwrap();
        assert!(audio.frames() >= 3 * 8_000);
        assert_channel(
            &audio.channels[0],
            |p| {
                if (gap_from..gap_to).contains(&p) {
                    0.0
                } else {
                    tone(rate, 440.0, p)
                }
            },
            "customer",
        );
        assert_channel(&audio.channels[1], |p| tone(rate, 1000.0, p), "agent");
    }

    #[test]
    fn a_dead_leg_keeps_memory_bounded_and_the_file_growing() {
        for rate in [8_000u32, 48_000] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("dead.wav");
            let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
            let n = frame_len(rate);
            let bound = (2 * rate) as usize + n;
            let mut sizes = Vec::new();
            for k in 0..500u64 {
                // 10 s of customer audio; the agent leg never sends anything.
                let at = k * n as u64;
                rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, n))
                    .unwrap();
                assert!(rec.buffered_samples() <= bound, "{rate} Hz frame {k}");
                if k % 100 == 99 {
                    sizes.push(std::fs::metadata(&path).unwrap().len());
                }
            }
            assert!(
                sizes.windows(2).all(|w| w[1] > w[0]),
                "the file grows: {sizes:?}"
            );
            // At 10 s, at most 2 s (plus a frame) can still be in memory.
            assert!(rec.frames_written() >= 8 * u64::from(rate) - n as u64);
            let info = rec.finish().unwrap();
            assert_eq!(info.frames, 10 * u64::from(rate));
            let audio = read_wav(&path).unwrap();
            assert_channel(&audio.channels[0], |p| tone(rate, 440.0, p), "customer");
            assert!(audio.channels[1].iter().all(|&v| v == 0.0));
        }
    }

    /// Writes `secs` of a two-leg call in 20 ms frames, plus `lead` extra customer frames.
    fn write_call(rec: &mut Recording, secs: u64, lead: u64) {
        let rate = rec.sample_rate();
        let n = frame_len(rate) as u64;
        let frames = secs * 50;
        for k in 0..frames + lead {
            let at = k * n;
            rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, n as usize))
                .unwrap();
            if k < frames {
                rec.write(Leg::Agent, at, &tone_run(rate, 1000.0, at, n as usize))
                    .unwrap();
            }
        }
    }

    fn declared_data(path: &Path) -> u32 {
        let bytes = std::fs::read(path).unwrap();
        u32::from_le_bytes(bytes[40..44].try_into().unwrap())
    }

    #[test]
    fn the_header_is_updated_while_the_call_runs() {
        let rate = 8_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.wav");
        let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
        let mut declared = Vec::new();
        for s in 1..=6u64 {
            let n = 160u64;
            for k in 0..50 {
                let at = (s - 1) * 8_000 + k * n;
                rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, 160))
                    .unwrap();
                rec.write(Leg::Agent, at, &tone_run(rate, 1000.0, at, 160))
                    .unwrap();
            }
            declared.push(declared_data(&path) / 4);
            // Read mid-call, without repair: the header covers all but the last second.
            let audio = read_wav(&path).unwrap();
            let written = rec.frames_written() as usize;
            assert_eq!(written, s as usize * 8_000);
            assert!(
                audio.frames() + 8_000 >= written && audio.frames() <= written,
                "after {s} s the header declares {} of {written} frames",
                audio.frames()
            );
            assert!(!audio.truncated);
            assert_channel(&audio.channels[0], |p| tone(rate, 440.0, p), "customer");
        }
        // It moved every second, not once at the end.
        assert!(
            declared.windows(2).all(|w| w[1] > w[0]),
            "declared frames {declared:?}"
        );
        rec.finish().unwrap();
        assert_eq!(declared_data(&path), 6 * 8_000 * 4);
    }

    #[test]
    fn a_killed_recording_is_playable_after_repair() {
        for rate in [8_000u32, 48_000] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("killed.wav");
            let copy = dir.path().join("copy.wav");
            let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
            write_call(&mut rec, 5, 0);
            // 0.5 s more agent-less customer audio: it sits in memory (lost on a kill).
            let n = frame_len(rate) as u64;
            for k in 0..25 {
                let at = 5 * u64::from(rate) + k * n;
                rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, n as usize))
                    .unwrap();
            }
            // A copy taken mid-write, with a frame half written when the process died.
            std::fs::copy(&path, &copy).unwrap();
            let mut f = OpenOptions::new().append(true).open(&copy).unwrap();
            f.write_all(&[1, 2, 3]).unwrap();
            drop(f);
            let on_disk = rec.frames_written();
            assert_eq!(on_disk, 5 * u64::from(rate));
            // The kill: nothing runs, no finish, no Drop.
            std::mem::forget(rec);

            // Without repair, the file plays up to the last header update.
            let before = read_wav(&path).unwrap();
            assert!(before.frames() as u64 + u64::from(rate) >= on_disk);

            for (file, cut) in [(&path, 0), (&copy, 3)] {
                let report = repair(file).unwrap();
                assert_eq!(report.frames, on_disk, "{}", file.display());
                assert_eq!(report.bytes_truncated, cut);
                assert_eq!(report.channels, 2);
                assert_eq!(report.sample_rate, rate);
                assert_eq!(report.duration_ms, 5_000);
                assert!(report.frames_before <= on_disk);
                let audio = read_wav(file).unwrap();
                assert_eq!(audio.frames() as u64, on_disk);
                assert!(!audio.truncated, "the repaired header is exact");
                assert_channel(&audio.channels[0], |p| tone(rate, 440.0, p), "customer");
                assert_channel(&audio.channels[1], |p| tone(rate, 1000.0, p), "agent");
                // A second repair finds nothing to do.
                let again = repair(file).unwrap();
                assert!(!again.changed);
                assert_eq!(again.frames, on_disk);
            }
        }
    }

    #[test]
    fn repair_names_files_it_cannot_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.wav");
        // Killed while the header was being written.
        std::fs::write(&cut, &wav_header(8_000, 2, 0)[..30]).unwrap();
        let err = repair(&cut).unwrap_err();
        assert!(matches!(err, RecordingError::NotRecording { .. }), "{err}");
        assert!(err.to_string().contains("cut.wav"), "{err}");
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "not audio at all").unwrap();
        let err = repair(&text).unwrap_err();
        assert!(err.to_string().contains("no RIFF/WAVE header"), "{err}");
        let err = repair(&dir.path().join("missing.wav")).unwrap_err();
        assert!(matches!(err, RecordingError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.wav"), "{err}");
        // A header-only file (killed before any audio) repairs to zero frames.
        let empty = dir.path().join("empty.wav");
        let rec = Recording::create(&empty, 8_000, &[Leg::Customer]).unwrap();
        std::mem::forget(rec);
        let report = repair(&empty).unwrap();
        assert_eq!(report.frames, 0);
        assert!(!report.changed);
    }

    #[test]
    fn dropping_without_finish_flushes_the_buffer_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropped.wav");
        let mut rec = Recording::create(&path, 8_000, &[Leg::Customer, Leg::Agent]).unwrap();
        write_call(&mut rec, 2, 10); // the customer leg 200 ms ahead, buffered
        assert_eq!(rec.frames_written(), 16_000);
        drop(rec);
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.frames(), 16_000 + 1_600);
        assert!(!audio.truncated);
        assert_channel(&audio.channels[0], |p| tone(8_000, 440.0, p), "customer");
    }

    #[test]
    fn silencing_buffered_on_disk_and_future_spans() {
        let rate = 8_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redact.wav");
        let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
        // Both legs to 2 s (on disk), the customer alone to 3 s (buffered).
        write_call(&mut rec, 2, 50);
        assert_eq!(rec.frames_written(), 16_000);
        assert_eq!(rec.buffered_samples(), 8_000);
        rec.silence(Leg::Customer, 500, 700).unwrap(); // on disk
        rec.silence(Leg::Agent, 1_000, 1_100).unwrap(); // on disk, the other channel
        rec.silence(Leg::Customer, 2_200, 2_500).unwrap(); // buffered
        rec.silence(Leg::Customer, 2_900, 3_200).unwrap(); // buffered, then not yet arrived
        rec.silence(Leg::Agent, 1_900, 2_100).unwrap(); // on disk, then not yet arrived
        let err = rec.silence(Leg::Customer, 10, 5).unwrap_err();
        assert!(matches!(err, RecordingError::InvalidInput { .. }), "{err}");
        // The rest of the call to 4 s, in order, and the call goes on being appended.
        let n = 160u64;
        let mut at = 16_000;
        while at < 32_000 {
            if at >= 24_000 {
                rec.write(Leg::Customer, at, &tone_run(rate, 440.0, at, 160))
                    .unwrap();
            }
            rec.write(Leg::Agent, at, &tone_run(rate, 1000.0, at, 160))
                .unwrap();
            at += n;
        }
        rec.finish().unwrap();
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.frames(), 32_000);
        let muted = |spans: &'static [(u64, u64)], freq: f64| {
            move |p: u64| {
                if spans.iter().any(|&(a, b)| (a * 8..b * 8).contains(&p)) {
                    0.0
                } else {
                    tone(rate, freq, p)
                }
            }
        };
        assert_channel(
            &audio.channels[0],
            muted(&[(500, 700), (2_200, 2_500), (2_900, 3_200)], 440.0),
            "customer",
        );
        assert_channel(
            &audio.channels[1],
            muted(&[(1_000, 1_100), (1_900, 2_100)], 1000.0),
            "agent",
        );
    }

    #[test]
    fn silencing_a_finished_file() {
        let rate = 48_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("done.wav");
        let mut rec = Recording::create(&path, rate, &[Leg::Customer, Leg::Agent]).unwrap();
        write_call(&mut rec, 2, 0);
        rec.finish().unwrap();
        let legs = [Leg::Customer, Leg::Agent];
        let agent = channel_for(&legs, Leg::Agent).unwrap();
        assert_eq!(agent, 1);
        assert_eq!(channel_for(&legs, Leg::Mixed), None);
        // 1.0 .. 1.5 s, plus a span running past the end (clamped).
        assert_eq!(silence_in_file(&path, agent, 1_000, 1_500).unwrap(), 24_000);
        assert_eq!(silence_in_file(&path, 0, 1_900, 9_000).unwrap(), 4_800);
        assert_eq!(silence_in_file(&path, 0, 5_000, 9_000).unwrap(), 0);
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.frames(), 96_000);
        assert_channel(
            &audio.channels[1],
            |p| {
                if (48_000..72_000).contains(&p) {
                    0.0
                } else {
                    tone(rate, 1000.0, p)
                }
            },
            "agent",
        );
        assert_channel(
            &audio.channels[0],
            |p| {
                if p >= 91_200 {
                    0.0
                } else {
                    tone(rate, 440.0, p)
                }
            },
            "customer",
        );
        let err = silence_in_file(&path, 2, 0, 10).unwrap_err();
        assert!(matches!(err, RecordingError::InvalidInput { .. }), "{err}");
        assert!(err.to_string().contains("done.wav"), "{err}");

        // A mono file.
        let mono = dir.path().join("mono.wav");
        let mut rec = Recording::create(&mono, 8_000, &[Leg::Mixed]).unwrap();
        rec.write(Leg::Mixed, 0, &tone_run(8_000, 440.0, 0, 8_000))
            .unwrap();
        rec.finish().unwrap();
        assert_eq!(silence_in_file(&mono, 0, 100, 200).unwrap(), 800);
        let audio = read_wav(&mono).unwrap();
        assert_channel(
            &audio.channels[0],
            |p| {
                if (800..1_600).contains(&p) {
                    0.0
                } else {
                    tone(8_000, 440.0, p)
                }
            },
            "mixed",
        );
    }

    #[test]
    fn single_leg_calls_are_mono() {
        for leg in [Leg::Customer, Leg::Agent, Leg::Mixed] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mono.wav");
            let mut rec = Recording::create(&path, 8_000, &[leg]).unwrap();
            assert_eq!(rec.channels(), 1);
            rec.write(leg, 0, &tone_run(8_000, 440.0, 0, 4_000))
                .unwrap();
            // Mono has nothing to wait for.
            assert_eq!(rec.frames_written(), 4_000);
            assert_eq!(rec.buffered_samples(), 0);
            rec.write(leg, 6_000, &tone_run(8_000, 440.0, 6_000, 2_000))
                .unwrap();
            let other = if leg == Leg::Agent {
                Leg::Customer
            } else {
                Leg::Agent
            };
            let err = rec.write(other, 0, &[0.1; 10]).unwrap_err();
            assert!(matches!(err, RecordingError::InvalidInput { .. }), "{err}");
            assert!(err.to_string().contains("mono.wav"), "{err}");
            let info = rec.finish().unwrap();
            assert_eq!((info.channels, info.frames), (1, 8_000));
            assert_eq!(info.legs, vec![leg]);
            let audio = read_wav(&path).unwrap();
            assert_eq!(audio.channels.len(), 1);
            assert_channel(
                &audio.channels[0],
                |p| {
                    if (4_000..6_000).contains(&p) {
                        0.0
                    } else {
                        tone(8_000, 440.0, p)
                    }
                },
                leg.as_str(),
            );
        }
    }

    #[test]
    fn refuses_to_overwrite_and_rejects_bad_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/once.wav");
        let mut rec = Recording::create(&path, 8_000, &[Leg::Customer]).unwrap();
        rec.write(Leg::Customer, 0, &[0.25; 800]).unwrap();
        rec.finish().unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Recording::create(&path, 8_000, &[Leg::Customer]).unwrap_err();
        assert!(matches!(err, RecordingError::Exists { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("once.wav") && msg.contains("refusing"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);

        for (rate, legs, needle) in [
            (8_000, &[][..], "at least one leg"),
            (8_000, &[Leg::Mixed, Leg::Agent][..], "mixed"),
            (4_000, &[Leg::Customer][..], "4000 Hz"),
            (96_000, &[Leg::Customer][..], "96000 Hz"),
        ] {
            let p = dir.path().join(format!("bad-{rate}-{}.wav", legs.len()));
            let err = Recording::create(&p, rate, legs).unwrap_err();
            assert!(matches!(err, RecordingError::InvalidInput { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            assert!(!p.exists());
        }
        // A parent that is a file.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = Recording::create(&blocker.join("x.wav"), 8_000, &[Leg::Agent]).unwrap_err();
        assert!(matches!(err, RecordingError::Create { .. }), "{err}");
        assert!(err.to_string().contains("x.wav"), "{err}");
    }

    #[test]
    fn the_size_limit_stops_the_recording_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        let mut rec = Recording::create(&path, 8_000, &[Leg::Customer, Leg::Agent]).unwrap();
        // The real limit is 4 GiB; a small one exercises the same code.
        assert_eq!(rec.max_frames, (u64::from(u32::MAX) - 36) / 4);
        rec.max_frames = 20_000;
        let mut first_err = None;
        for k in 0..200u64 {
            let at = k * 160;
            let r = rec
                .write(Leg::Customer, at, &[0.5; 160])
                .and_then(|()| rec.write(Leg::Agent, at, &[-0.5; 160]));
            if let Err(e) = r {
                first_err = Some((k, e));
                break;
            }
        }
        let (k, err) = first_err.expect("the limit is reached");
        assert_eq!(k, 125);
        assert!(matches!(err, RecordingError::TooLong { .. }), "{err}");
        assert!(err.to_string().contains("4 GiB"), "{err}");
        let err = rec.write(Leg::Customer, 40_000, &[0.5; 160]).unwrap_err();
        assert!(matches!(err, RecordingError::Stopped { .. }), "{err}");
        let info = rec.finish().unwrap();
        assert_eq!(info.frames, 20_000);
        assert!(info.incomplete.unwrap().contains("size limit"));
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.frames(), 20_000);
        assert!(!audio.truncated);

        // A start position past the limit is refused without writing gigabytes of silence.
        let other = dir.path().join("jump.wav");
        let mut rec = Recording::create(&other, 8_000, &[Leg::Customer]).unwrap();
        let err = rec
            .write(Leg::Customer, u64::MAX / 2, &[0.1; 10])
            .unwrap_err();
        assert!(matches!(err, RecordingError::TooLong { .. }), "{err}");
        assert_eq!(rec.frames_written(), 0);
        assert!(rec.stopped().is_some());
        assert_eq!(rec.finish().unwrap().frames, 0);
        assert_eq!(std::fs::metadata(&other).unwrap().len(), 44);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.wav");
        let mut rec = Recording::create(&path, 8_000, &[Leg::Customer, Leg::Agent]).unwrap();
        rec.write(Leg::Customer, 0, &[0.5; 160]).unwrap();
        rec.write(Leg::Agent, 0, &[0.5; 160]).unwrap();
        // Every write from here on fails with ENOSPC.
        rec.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/full")
            .unwrap();
        rec.write(Leg::Customer, 160, &[0.5; 160]).unwrap(); // buffered, no I/O yet
        let err = rec.write(Leg::Agent, 160, &[0.5; 160]).unwrap_err();
        assert!(matches!(err, RecordingError::Write { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("full.wav"), "{msg}");
        assert!(rec.stopped().is_some());
        let err = rec.write(Leg::Customer, 320, &[0.5; 160]).unwrap_err();
        assert!(matches!(err, RecordingError::Stopped { .. }), "{err}");
        assert!(rec.finish().is_err());
        // What reached the real file before the disk filled is still playable.
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.frames(), 160);
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        assert_eq!(file_name_for("CA1234abcd"), "CA1234abcd.wav");
        assert_eq!(file_name_for("../../etc/passwd"), "______etc_passwd.wav");
        assert_eq!(file_name_for(""), "call.wav");
        assert_eq!(file_name_for(&"x".repeat(500)).len(), 128 + 4);
    }
}
