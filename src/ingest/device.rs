//! The local sound card (cpal; ALSA on Linux): one input device, such as an agent's headset or
//! a line-in tap on a phone line, monitored by `serve` as one long call. Also the listing that
//! `callguard devices` prints.
//!
//! What it does: finds the device by the name in `[device] name` (the first column of
//! `callguard devices`, a device's unique description, or `default`), picks a capture format
//! (the configured or the device's default channel count and rate, in any integer or float
//! sample format), and runs the cpal input stream on its own thread (a cpal `Stream` is not
//! `Send`). The audio callback converts to f32 and copies whole frames into a ring buffer
//! allocated at open; it never allocates, locks, blocks or logs, and what does not fit (the
//! reader fell behind) is dropped and counted in an atomic. A reader task drains the ring every
//! [`TICK_MS`] and sends one [`SourceEvent::Audio`] per leg: a mono capture is the one
//! configured leg, a stereo capture is left/right per `stereo_legs` (of more channels, the first
//! two). When the call's channel is full the chunk is dropped and counted, never waited for, so
//! a slow call cannot back up into the audio path; `start_sample` skips over every dropped run.
//!
//! A device that cannot be found or opened is a [`DeviceError`] at startup. A device that
//! disappears mid-call (unplugged), or that stops delivering audio for [`STALL_MS`], ends the
//! call with [`EndReason::SourceError`], logged once; the daemon goes on without it.
//!
//! What it does not do: reopen a device that went away (restart `serve`), follow the system's
//! default device when it changes, play audio, or detect calls on the line: the call lasts as
//! long as the daemon runs.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use crate::domain::leg::{AudioChunk, Leg};
use crate::ingest::{CallHost, HostedCall};
use serde::{Deserialize, Serialize};

/// How often the reader drains the ring (ms): the length of a typical chunk.
pub const TICK_MS: u64 = 20;
/// Audio the ring holds (ms) before the callback starts dropping frames.
const RING_MS: u64 = 2000;
/// The most audio (ms) one tick passes on, so a device that delivers faster than real time
/// (ALSA `null`) cannot flood the call; a late reader still catches up at ten times real time.
const MAX_DRAIN_MS: u64 = 200;
/// A device that delivers no audio at all for this long (ms) is taken to be gone.
pub const STALL_MS: u64 = 5000;
/// Minimum time (ms) between two warnings about dropped audio or stream errors.
const WARN_EVERY_MS: u64 = 10_000;
/// How long opening a device may take before it is given up on.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the sound card could not be listed or opened. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("no audio system available: {0}")]
    Host(String),
    #[error("cannot list audio input devices: {0}")]
    List(String),
    #[error("no input device named {0:?} (see: callguard devices)")]
    NotFound(String),
    #[error("there is no default input device (see: callguard devices)")]
    NoDefault,
    #[error(
        "input device name {name:?} is ambiguous: it describes {names} (use one of those names)"
    )]
    Ambiguous { name: String, names: String },
    #[error("cannot open input device {name:?}: {message}")]
    Open { name: String, message: String },
    #[error("input device {name:?} cannot capture {what}")]
    Unsupported { name: String, what: String },
}

/// One input device, as `callguard devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to put in `[device] name` (for ALSA the PCM name, e.g. `hw:CARD=PCH,DEV=0`).
    pub name: String,
    /// The system's description of the device.
    pub description: String,
    /// Whether it is the system's default input.
    pub is_default: bool,
    /// The channel counts it can capture, ascending.
    pub channels: Vec<u16>,
    /// The sample-rate ranges (Hz, inclusive) it can capture at, merged and ascending.
    pub rates: Vec<(u32, u32)>,
    /// Its default capture format: channels and rate.
    pub default_format: Option<(u16, u32)>,
    /// Why its formats could not be read (busy, no permission), if they could not.
    pub unavailable: Option<String>,
}

impl DeviceInfo {
    /// One line: default marker, name, channels, rates, description.
    pub fn line(&self) -> String {
        let marker = if self.is_default { '*' } else { ' ' };
        let formats = match &self.unavailable {
            Some(why) => format!("unavailable: {why}"),
            None => {
                let default = self
                    .default_format
                    .map(|(c, r)| format!(", default {c} ch {r} Hz"))
                    .unwrap_or_default();
                format!(
                    "{} ch, {} Hz{default}",
                    format_channels(&self.channels),
                    format_rates(&self.rates)
                )
            }
        };
        format!(
            "{marker} {:<24} {formats}  ({})",
            self.name,
            one_line(&self.description)
        )
    }
}

/// The input devices of the default audio system, the default one marked. A device whose
/// formats cannot be read is listed with the reason.
pub fn list_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    let _quiet = AlsaMessages::catch();
    let host = host()?;
    let default = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.id().to_owned());
    let devices = host
        .input_devices()
        .map_err(|e| DeviceError::List(one_line(&e.to_string())))?;
    let mut out: Vec<DeviceInfo> = devices
        .map(|d| device_info(&d, default.as_deref()))
        .collect();
    // The default is often an alias that is not enumerated; list it when it can be used.
    if let (Some(name), Some(d)) = (&default, host.default_input_device())
        && !out.iter().any(|i| &i.name == name)
    {
        let info = device_info(&d, Some(name));
        if info.unavailable.is_none() {
            out.insert(0, info);
        }
    }
    Ok(out)
}

fn device_info(d: &cpal::Device, default: Option<&str>) -> DeviceInfo {
    let (name, description) = names(d);
    let mut info = DeviceInfo {
        is_default: default == Some(name.as_str()),
        name,
        description,
        channels: Vec::new(),
        rates: Vec::new(),
        default_format: None,
        unavailable: None,
    };
    match d.supported_input_configs() {
        Ok(ranges) => {
            let formats: Vec<Format> = ranges.map(Format::from).collect();
            info.channels = formats
                .iter()
                .filter(|f| readable(f.format))
                .map(|f| f.channels)
                .collect();
            info.channels.sort_unstable();
            info.channels.dedup();
            info.rates = merge_ranges(
                formats
                    .iter()
                    .filter(|f| readable(f.format))
                    .map(|f| (f.min_rate, f.max_rate))
                    .collect(),
            );
            info.default_format = d
                .default_input_config()
                .ok()
                .map(|c| (c.channels(), c.sample_rate()));
        }
        Err(e) => info.unavailable = Some(one_line(&e.to_string())),
    }
    info
}

/// A device's config name (its id) and description.
fn names(d: &cpal::Device) -> (String, String) {
    let description = d
        .description()
        .map(|x| x.name().to_owned())
        .unwrap_or_default();
    let name = match d.id() {
        Ok(id) => id.id().to_owned(),
        Err(_) => description.clone(),
    };
    (name, description)
}

/// The first audio system that starts (ALSA on Linux), without cpal's panic when none does.
fn host() -> Result<cpal::Host, DeviceError> {
    let mut last = String::from("none is compiled in");
    for id in cpal::available_hosts() {
        match cpal::host_from_id(id) {
            Ok(h) => return Ok(h),
            Err(e) => last = one_line(&e.to_string()),
        }
    }
    Err(DeviceError::Host(last))
}

/// Which of `devices` (config name, description) the configured `wanted` means: an exact
/// name, else the one device with exactly that description.
fn match_device(wanted: &str, devices: &[(String, String)]) -> Result<usize, DeviceError> {
    if let Some(i) = devices.iter().position(|(name, _)| name == wanted) {
        return Ok(i);
    }
    let described: Vec<usize> = devices
        .iter()
        .enumerate()
        .filter(|(_, (_, desc))| desc == wanted)
        .map(|(i, _)| i)
        .collect();
    match described.as_slice() {
        [i] => Ok(*i),
        [] => Err(DeviceError::NotFound(wanted.to_owned())),
        many => Err(DeviceError::Ambiguous {
            name: wanted.to_owned(),
            names: many
                .iter()
                .map(|&i| format!("{:?}", devices[i].0))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Finds the configured device.
fn find_device(host: &cpal::Host, wanted: &str) -> Result<cpal::Device, DeviceError> {
    let devices: Vec<cpal::Device> = host
        .input_devices()
        .map_err(|e| DeviceError::List(one_line(&e.to_string())))?
        .collect();
    let names: Vec<(String, String)> = devices.iter().map(names).collect();
    match match_device(wanted, &names) {
        Ok(i) => devices
            .into_iter()
            .nth(i)
            .ok_or_else(|| DeviceError::NotFound(wanted.to_owned())),
        Err(DeviceError::NotFound(_)) if wanted == "default" => {
            host.default_input_device().ok_or(DeviceError::NoDefault)
        }
        // A name the system knows by another spelling (ALSA `hw:0,0` for `hw:CARD=0,DEV=0`).
        Err(DeviceError::NotFound(n)) => host
            .device_by_id(&cpal::DeviceId::new(host.id(), wanted))
            .ok_or(DeviceError::NotFound(n)),
        Err(e) => Err(e),
    }
}

/// One supported capture format range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Format {
    channels: u16,
    min_rate: u32,
    max_rate: u32,
    format: SampleFormat,
}

impl From<cpal::SupportedStreamConfigRange> for Format {
    fn from(r: cpal::SupportedStreamConfigRange) -> Self {
        Format {
            channels: r.channels(),
            min_rate: r.min_sample_rate(),
            max_rate: r.max_sample_rate(),
            format: r.sample_format(),
        }
    }
}

/// The capture format chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chosen {
    channels: u16,
    rate: u32,
    format: SampleFormat,
}

/// Preference among sample formats callguard converts (lower is better); `None`: unreadable.
fn format_rank(f: SampleFormat) -> Option<u8> {
    Some(match f {
        SampleFormat::F32 => 0,
        SampleFormat::I16 => 1,
        SampleFormat::I32 => 2,
        SampleFormat::I24 => 3,
        SampleFormat::F64 => 4,
        SampleFormat::U16 => 5,
        SampleFormat::I8 => 6,
        SampleFormat::U8 => 7,
        SampleFormat::U24 => 8,
        SampleFormat::U32 => 9,
        SampleFormat::I64 => 10,
        SampleFormat::U64 => 11,
        _ => return None,
    })
}

fn readable(f: SampleFormat) -> bool {
    format_rank(f).is_some()
}

/// Picks the capture format: `want_channels`/`want_rate` (0 = the device default) from the
/// device's `supported` ranges, the default format itself when it fits.
fn choose_format(
    supported: &[Format],
    default: Option<Chosen>,
    want_channels: u16,
    want_rate: u32,
) -> Result<Chosen, String> {
    let usable: Vec<&Format> = supported.iter().filter(|f| readable(f.format)).collect();
    let channels = match (want_channels, default) {
        (0, Some(d)) => d.channels,
        (0, None) => usable
            .iter()
            .map(|f| f.channels)
            .filter(|&c| c > 0)
            .min()
            .ok_or_else(|| "audio in any format callguard reads".to_owned())?,
        (c, _) => c,
    };
    let fits =
        |f: &&Format, rate: u32| f.channels == channels && f.min_rate <= rate && rate <= f.max_rate;
    let rate = match (want_rate, default) {
        (0, Some(d)) => d.rate,
        (0, None) => [48_000, 44_100, 16_000, 8000]
            .into_iter()
            .find(|&r| usable.iter().any(|f| fits(f, r)))
            .unwrap_or(48_000),
        (r, _) => r,
    };
    if let Some(d) = default
        && d.channels == channels
        && d.rate == rate
        && readable(d.format)
    {
        return Ok(d);
    }
    usable
        .iter()
        .filter(|f| fits(f, rate))
        .min_by_key(|f| format_rank(f.format))
        .map(|f| Chosen {
            channels,
            rate,
            format: f.format,
        })
        .ok_or_else(|| {
            let mut offered: Vec<u16> = usable.iter().map(|f| f.channels).collect();
            offered.sort_unstable();
            offered.dedup();
            let rates = merge_ranges(usable.iter().map(|f| (f.min_rate, f.max_rate)).collect());
            format!(
                "{channels} channel(s) at {rate} Hz (it offers {} ch, {} Hz; set [device] \
                 channels and sample_rate, 0 = the device default)",
                format_channels(&offered),
                format_rates(&rates)
            )
        })
}

/// The legs of a capture with `channels` channels: mono is `mono_leg`, two or more are the
/// first two channels on `stereo_legs`.
fn legs_for(channels: u16, cfg: &DeviceConfig) -> Vec<Leg> {
    if channels <= 1 {
        vec![cfg.mono_leg]
    } else {
        cfg.stereo_legs.to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// The ring: single producer (the audio callback), single consumer (the reader task).

/// A fixed ring of f32 samples shared by one producer and one consumer. Lock-free and
/// allocation-free after creation, and safe code throughout: each slot is an atomic holding an
/// f32's bits. Positions count samples since creation and never wrap in practice (2^64).
struct RingInner {
    slots: Box<[AtomicU32]>,
    /// Samples written so far; stored only by the producer.
    written: AtomicUsize,
    /// Samples read so far; stored only by the consumer.
    read: AtomicUsize,
    /// Frames the producer dropped because the ring was full.
    dropped_frames: AtomicU64,
}

/// The writing end, used in the audio callback.
struct RingProducer {
    ring: Arc<RingInner>,
    channels: usize,
}

/// The reading end, used by the reader task.
struct RingConsumer {
    ring: Arc<RingInner>,
    channels: usize,
}

/// A ring holding `frames` frames of `channels` samples.
fn ring(frames: usize, channels: usize) -> (RingProducer, RingConsumer) {
    let channels = channels.max(1);
    let slots = (0..frames.max(1) * channels)
        .map(|_| AtomicU32::new(0))
        .collect();
    let ring = Arc::new(RingInner {
        slots,
        written: AtomicUsize::new(0),
        read: AtomicUsize::new(0),
        dropped_frames: AtomicU64::new(0),
    });
    (
        RingProducer {
            ring: Arc::clone(&ring),
            channels,
        },
        RingConsumer { ring, channels },
    )
}

impl RingProducer {
    /// Stores the whole frames of `input` (interleaved, `in_channels` per frame, at least the
    /// ring's channel count), keeping each frame's first channels, converted by `convert`.
    /// Frames that do not fit are dropped and counted. Returns the frames stored. Never
    /// allocates, locks, blocks or panics: it is called in the audio callback.
    fn push_frames<T: Copy>(
        &mut self,
        input: &[T],
        in_channels: usize,
        convert: impl Fn(T) -> f32,
    ) -> usize {
        let r = &*self.ring;
        let cap = r.slots.len();
        let in_channels = in_channels.max(self.channels);
        let written = r.written.load(Ordering::Relaxed);
        let free = cap.saturating_sub(written.wrapping_sub(r.read.load(Ordering::Acquire)));
        let frames = input.len() / in_channels;
        let fit = frames.min(free / self.channels);
        let mut pos = written;
        for frame in input.chunks_exact(in_channels).take(fit) {
            for &s in frame.iter().take(self.channels) {
                if let Some(slot) = r.slots.get(pos % cap) {
                    slot.store(convert(s).to_bits(), Ordering::Relaxed);
                }
                pos = pos.wrapping_add(1);
            }
        }
        r.written.store(pos, Ordering::Release);
        if fit < frames {
            r.dropped_frames
                .fetch_add((frames - fit) as u64, Ordering::Relaxed);
        }
        fit
    }
}

impl RingConsumer {
    /// Appends up to `max_frames` whole frames (interleaved) to `out`; returns how many.
    fn pop_frames(&mut self, max_frames: usize, out: &mut Vec<f32>) -> usize {
        let r = &*self.ring;
        let cap = r.slots.len();
        let read = r.read.load(Ordering::Relaxed);
        let available = r.written.load(Ordering::Acquire).wrapping_sub(read) / self.channels;
        let n = available.min(max_frames);
        out.extend((0..n * self.channels).map(|i| {
            r.slots
                .get(read.wrapping_add(i) % cap)
                .map_or(0.0, |s| f32::from_bits(s.load(Ordering::Relaxed)))
        }));
        r.read
            .store(read.wrapping_add(n * self.channels), Ordering::Release);
        n
    }

    /// Frames the producer has dropped so far.
    fn dropped_frames(&self) -> u64 {
        self.ring.dropped_frames.load(Ordering::Relaxed)
    }
}

/// Splits interleaved frames into one buffer per leg: channel i goes to `legs[i]`.
fn deinterleave(interleaved: &[f32], legs: &[Leg]) -> Vec<(Leg, Vec<f32>)> {
    let n = legs.len().max(1);
    legs.iter()
        .enumerate()
        .map(|(c, &leg)| {
            (
                leg,
                interleaved.iter().skip(c).step_by(n).copied().collect(),
            )
        })
        .collect()
}

/// A sample in [-1, 1]; NaN (a broken driver) is silence.
fn clean(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

// ---------------------------------------------------------------------------------------------
// The stream: its thread, its status, and the reader.

/// What the stream's callbacks report to the reader, all without locks. The error callback runs
/// on the audio thread too: an xrun is only counted; it allocates only to keep the text of the
/// first other error and of a fatal one (after which the stream is over anyway).
#[derive(Default)]
struct Status {
    /// Data callbacks so far (the stall watchdog).
    callbacks: AtomicU64,
    /// Overruns the driver reported (audio lost before it reached the callback).
    xruns: AtomicU64,
    /// Other stream errors the stream went on after.
    errors: AtomicU64,
    /// The first such error's text (set once; the error callback allocates only then).
    first_error: OnceLock<String>,
    /// Set when the stream has failed for good (device gone).
    failed: AtomicBool,
    /// Why it failed.
    failure: OnceLock<String>,
}

impl Status {
    fn on_error(&self, e: cpal::Error) {
        match e.kind() {
            cpal::ErrorKind::Xrun => {
                self.xruns.fetch_add(1, Ordering::Relaxed);
            }
            cpal::ErrorKind::RealtimeDenied => {}
            cpal::ErrorKind::DeviceNotAvailable
            | cpal::ErrorKind::StreamInvalidated
            | cpal::ErrorKind::DeviceChanged => self.fail(one_line(&e.to_string())),
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let _ = self.first_error.get_or_init(|| one_line(&e.to_string()));
            }
        }
    }

    fn fail(&self, why: String) {
        let _ = self.failure.set(why);
        self.failed.store(true, Ordering::Release);
    }
}

/// What the capture thread is told; dropping the sender stops the stream.
enum Control {
    Play,
}

/// What one sound-card call's capture amounted to, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames (samples per channel) read from the ring.
    pub frames: u64,
    /// Frames dropped in the callback because the ring was full (the reader fell behind).
    pub ring_dropped_frames: u64,
    /// Of `frames`, those not passed on (for one leg or both) because the call's channel was
    /// full (the call fell behind).
    pub channel_dropped_frames: u64,
    /// Overruns the driver reported.
    pub xruns: u64,
    /// Other stream errors the stream went on after.
    pub errors: u64,
}

/// An opened input device, its stream built (not yet started) on its own thread. [`run`]
/// (`DeviceSource::run`) starts it and feeds a call; dropping it unstarted closes the device.
pub struct DeviceSource {
    info: CallInfo,
    device: String,
    legs: Vec<Leg>,
    consumer: RingConsumer,
    status: Arc<Status>,
    control: std::sync::mpsc::Sender<Control>,
    thread: std::thread::JoinHandle<()>,
}

/// What the capture thread hands back once the stream is built.
struct Opened {
    info: CallInfo,
    device: String,
    legs: Vec<Leg>,
    consumer: RingConsumer,
    status: Arc<Status>,
}

impl std::fmt::Debug for DeviceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSource")
            .field("device", &self.device)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl DeviceSource {
    /// The configured device, opened; `None` when `[device] name` is empty.
    pub fn from_config(cfg: &DeviceConfig) -> Result<Option<Self>, DeviceError> {
        if cfg.name.is_empty() {
            return Ok(None);
        }
        Self::open(cfg).map(Some)
    }

    /// Finds and opens `cfg.name` and builds its input stream on a new thread, paused.
    /// Blocks while the device opens (milliseconds; at most 10 s).
    pub fn open(cfg: &DeviceConfig) -> Result<Self, DeviceError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (control, control_rx) = std::sync::mpsc::channel();
        let thread_cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("callguard-device".into())
            .spawn(move || capture_thread(&thread_cfg, ready_tx, control_rx))
            .map_err(|e| DeviceError::Open {
                name: cfg.name.clone(),
                message: format!("cannot start its capture thread: {e}"),
            })?;
        let opened = match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(r) => r?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(DeviceError::Open {
                    name: cfg.name.clone(),
                    message: format!("no answer within {} s", OPEN_TIMEOUT.as_secs()),
                });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(DeviceError::Open {
                    name: cfg.name.clone(),
                    message: "its capture thread stopped".into(),
                });
            }
        };
        Ok(DeviceSource {
            info: opened.info,
            device: opened.device,
            legs: opened.legs,
            consumer: opened.consumer,
            status: opened.status,
            control,
            thread,
        })
    }

    /// The call this device's audio makes (announce it before [`run`](Self::run)).
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// Starts the stream and sends the call's audio to `tx` until `stop` (then
    /// `Ended(Disconnected)`), or until the device fails (then `Ended(SourceError)`, logged).
    /// Stops without an end event when `tx`'s receiver goes away. The stream is closed before
    /// this returns.
    pub async fn run(self, tx: mpsc::Sender<SourceEvent>, stop: CancellationToken) -> DeviceStats {
        let DeviceSource {
            info,
            device,
            legs,
            mut consumer,
            status,
            control,
            thread,
        } = self;
        let mut reader = Reader {
            device: &device,
            legs: &legs,
            positions: vec![0; legs.len()],
            scratch: Vec::new(),
            max_frames: (info.sample_rate as u64 * MAX_DRAIN_MS / 1000).max(1) as usize,
            stats: DeviceStats::default(),
            seen_ring_drops: 0,
            last_warning: None,
        };
        let end = if control.send(Control::Play).is_err() {
            Some(EndReason::SourceError(format!(
                "input device {device:?}: its capture thread stopped"
            )))
        } else {
            reader.pump(&mut consumer, &status, &tx, &stop).await
        };
        if let Some(reason) = end {
            if let EndReason::SourceError(why) = &reason {
                tracing::error!(device = %device, error = %why, "sound-card call ended by the device");
            }
            let _ = tx.send(SourceEvent::Ended(reason)).await;
        }
        drop(control);
        // Closing a cpal stream joins its audio thread: wait for it off the async runtime.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let mut stats = reader.stats;
        stats.ring_dropped_frames = consumer.dropped_frames();
        stats.xruns = status.xruns.load(Ordering::Relaxed);
        stats.errors = status.errors.load(Ordering::Relaxed);
        tracing::info!(device = %device, ?stats, "sound-card capture closed");
        stats
    }
}

/// The reader task's state.
struct Reader<'a> {
    device: &'a str,
    legs: &'a [Leg],
    /// Per leg: samples since the call started, dropped ones included.
    positions: Vec<u64>,
    scratch: Vec<f32>,
    max_frames: usize,
    stats: DeviceStats,
    seen_ring_drops: u64,
    last_warning: Option<Instant>,
}

impl Reader<'_> {
    /// Drains the ring every tick until the call should end; `None`: the receiver is gone.
    async fn pump(
        &mut self,
        consumer: &mut RingConsumer,
        status: &Status,
        tx: &mpsc::Sender<SourceEvent>,
        stop: &CancellationToken,
    ) -> Option<EndReason> {
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_callbacks = 0;
        let mut last_progress = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Some(EndReason::Disconnected),
                _ = ticker.tick() => {}
            }
            if !self.drain(consumer, tx) {
                return None;
            }
            if status.failed.load(Ordering::Acquire) {
                let why = status
                    .failure
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "the stream failed".into());
                return Some(EndReason::SourceError(format!(
                    "input device {:?}: {why}",
                    self.device
                )));
            }
            let callbacks = status.callbacks.load(Ordering::Relaxed);
            if callbacks != last_callbacks {
                last_callbacks = callbacks;
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= Duration::from_millis(STALL_MS) {
                let last = status
                    .first_error
                    .get()
                    .map(|e| format!(" (stream error: {e})"))
                    .unwrap_or_default();
                return Some(EndReason::SourceError(format!(
                    "input device {:?} delivered no audio for {} s{last}",
                    self.device,
                    STALL_MS / 1000
                )));
            }
            self.warn_about_losses(consumer, status);
        }
    }

    /// Passes what the ring holds (up to `max_frames`) to the call; false when it is gone.
    fn drain(&mut self, consumer: &mut RingConsumer, tx: &mpsc::Sender<SourceEvent>) -> bool {
        self.scratch.clear();
        let frames = consumer.pop_frames(self.max_frames, &mut self.scratch) as u64;
        if frames > 0 {
            let mut dropped_any = false;
            for (i, (leg, samples)) in deinterleave(&self.scratch, self.legs)
                .into_iter()
                .enumerate()
            {
                let start_sample = self.positions.get(i).copied().unwrap_or(0);
                let event = SourceEvent::Audio(AudioChunk {
                    leg,
                    start_sample,
                    samples,
                });
                match tx.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => dropped_any = true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            if dropped_any {
                self.stats.channel_dropped_frames += frames;
            }
            self.stats.frames += frames;
        }
        // Frames the callback dropped since the last tick leave a gap after these.
        let dropped = consumer.dropped_frames();
        let gap = frames + dropped.saturating_sub(self.seen_ring_drops);
        self.seen_ring_drops = dropped;
        for p in &mut self.positions {
            *p += gap;
        }
        true
    }

    /// At most one warning per [`WARN_EVERY_MS`] while audio is being lost.
    fn warn_about_losses(&mut self, consumer: &RingConsumer, status: &Status) {
        let ring = consumer.dropped_frames();
        let xruns = status.xruns.load(Ordering::Relaxed);
        let errors = status.errors.load(Ordering::Relaxed);
        let lost = ring + self.stats.channel_dropped_frames + xruns + errors;
        if lost == 0
            || self
                .last_warning
                .is_some_and(|t| t.elapsed() < Duration::from_millis(WARN_EVERY_MS))
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        tracing::warn!(
            device = %self.device,
            ring_dropped_frames = ring,
            channel_dropped_frames = self.stats.channel_dropped_frames,
            xruns,
            errors,
            first_error = status.first_error.get().map(String::as_str).unwrap_or(""),
            "sound-card audio is being lost (totals so far)"
        );
    }
}

/// The capture thread: opens the device, builds the stream, reports back, then keeps the
/// stream alive until its control sender is dropped.
fn capture_thread(
    cfg: &DeviceConfig,
    ready: std::sync::mpsc::SyncSender<Result<Opened, DeviceError>>,
    control: std::sync::mpsc::Receiver<Control>,
) {
    let (stream, opened) = match build_stream(cfg) {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let status = Arc::clone(&opened.status);
    let name = opened.device.clone();
    if ready.send(Ok(opened)).is_err() {
        return;
    }
    while let Ok(Control::Play) = control.recv() {
        if let Err(e) = stream.play() {
            status.fail(format!(
                "cannot start input device {name:?}: {}",
                one_line(&e.to_string())
            ));
        }
    }
    drop(stream);
}

/// Finds the device, chooses its format and builds the (paused) input stream.
fn build_stream(cfg: &DeviceConfig) -> Result<(cpal::Stream, Opened), DeviceError> {
    let alsa = AlsaMessages::catch();
    let host = host()?;
    let device = find_device(&host, &cfg.name)?;
    let (name, description) = names(&device);
    let open_error = |e: cpal::Error| DeviceError::Open {
        name: cfg.name.clone(),
        message: match alsa.last() {
            Some(said) => format!("{} (ALSA: {said})", one_line(&e.to_string())),
            None => one_line(&e.to_string()),
        },
    };
    let supported: Vec<Format> = device
        .supported_input_configs()
        .map_err(open_error)?
        .map(Format::from)
        .collect();
    let default = device.default_input_config().ok().map(|c| Chosen {
        channels: c.channels(),
        rate: c.sample_rate(),
        format: c.sample_format(),
    });
    let chosen =
        choose_format(&supported, default, cfg.channels, cfg.sample_rate).map_err(|what| {
            DeviceError::Unsupported {
                name: cfg.name.clone(),
                what,
            }
        })?;
    let legs = legs_for(chosen.channels, cfg);
    let frames = (chosen.rate as u64 * RING_MS / 1000).max(1) as usize;
    let (producer, consumer) = ring(frames, legs.len());
    let status = Arc::new(Status::default());
    let config = cpal::StreamConfig {
        channels: chosen.channels,
        sample_rate: chosen.rate,
        buffer_size: cpal::BufferSize::Default,
    };
    let s = Arc::clone(&status);
    let stream = match chosen.format {
        SampleFormat::F32 => input::<f32>(&device, config, producer, s),
        SampleFormat::I16 => input::<i16>(&device, config, producer, s),
        SampleFormat::I32 => input::<i32>(&device, config, producer, s),
        SampleFormat::I24 => input::<cpal::I24>(&device, config, producer, s),
        SampleFormat::F64 => input::<f64>(&device, config, producer, s),
        SampleFormat::U16 => input::<u16>(&device, config, producer, s),
        SampleFormat::I8 => input::<i8>(&device, config, producer, s),
        SampleFormat::U8 => input::<u8>(&device, config, producer, s),
        SampleFormat::U24 => input::<cpal::U24>(&device, config, producer, s),
        SampleFormat::U32 => input::<u32>(&device, config, producer, s),
        SampleFormat::I64 => input::<i64>(&device, config, producer, s),
        SampleFormat::U64 => input::<u64>(&device, config, producer, s),
        other => {
            return Err(DeviceError::Unsupported {
                name: cfg.name.clone(),
                what: format!("in {other} samples"),
            });
        }
    }
    .map_err(open_error)?;
    let info = CallInfo {
        call_id: cfg.call_id.clone(),
        source: SourceKind::Device,
        legs: legs.clone(),
        sample_rate: chosen.rate,
        lang: None,
        agent: (!cfg.agent.is_empty()).then(|| cfg.agent.clone()),
        metadata: serde_json::json!({
            "device": name,
            "description": description,
            "channels": chosen.channels,
            "sample_format": chosen.format.to_string(),
        }),
    };
    tracing::info!(
        device = %name,
        channels = chosen.channels,
        rate = chosen.rate,
        format = %chosen.format,
        ?legs,
        "input device opened"
    );
    Ok((
        stream,
        Opened {
            info,
            device: name,
            legs,
            consumer,
            status,
        },
    ))
}

/// Builds the input stream for samples of type `T`. The data callback only converts and
/// copies into the ring, and counts itself.
fn input<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: RingProducer,
    status: Arc<Status>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let in_channels = config.channels as usize;
    let counter = Arc::clone(&status);
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            counter.callbacks.fetch_add(1, Ordering::Relaxed);
            producer.push_frames(data, in_channels, |s| clean(s.to_sample::<f32>()));
        },
        move |e| status.on_error(e),
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Formatting for `callguard devices`.

/// Merges overlapping or touching inclusive ranges.
fn merge_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.retain(|(lo, hi)| lo <= hi);
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// `1-2`, `1, 4, 6-8`: sorted counts with runs collapsed.
fn format_channels(channels: &[u16]) -> String {
    let runs = merge_ranges(channels.iter().map(|&c| (c as u32, c as u32)).collect());
    if runs.is_empty() {
        return "no".into();
    }
    runs.iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `8000-48000`, `44100, 48000`, or `any` for a device that takes every rate (ALSA plugins).
fn format_rates(rates: &[(u32, u32)]) -> String {
    match rates {
        [] => "no".into(),
        [(lo, hi)] if *lo <= 1 && *hi == u32::MAX => "any".into(),
        _ => rates
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// alsa-lib prints its complaints (an unknown PCM, a missing card) straight to stderr. On the
/// threads that list or open devices they are caught instead (a thread-local alsa-lib handler,
/// left in place for the thread's life), and the last one is added to an open error.
#[cfg(target_os = "linux")]
struct AlsaMessages(Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>);

#[cfg(target_os = "linux")]
impl AlsaMessages {
    fn catch() -> Self {
        Self(alsa::Output::local_error_handler().ok())
    }

    /// The last message alsa-lib gave on this thread since [`catch`](Self::catch).
    fn last(&self) -> Option<String> {
        let text = self.0.as_ref()?.try_borrow().ok()?.to_string();
        let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
        // "snd_pcm_open_noupdate: Unknown PCM default": the function name is noise.
        Some(one_line(line.split_once(": ").map_or(line, |(_, m)| m)))
    }
}

#[cfg(not(target_os = "linux"))]
struct AlsaMessages;

#[cfg(not(target_os = "linux"))]
impl AlsaMessages {
    fn catch() -> Self {
        AlsaMessages
    }

    fn last(&self) -> Option<String> {
        None
    }
}

/// Multi-line system text as one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The local sound card (`serve`): one input device monitored as one long call, for an agent's
/// headset or a line-in tap on a phone line. `callguard devices` lists the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// The input device: its name as `callguard devices` prints it (first column), or
    /// `default` for the system's default input. Empty: no sound-card call.
    pub name: String,
    /// Channels to capture: 1 (mono), 2 (stereo), or 0 for the device's default count (of more
    /// than two, the first two are used).
    pub channels: u16,
    /// Sample rate (Hz) to capture at, 8000..192000; 0 = the device's default rate.
    pub sample_rate: u32,
    /// The leg a mono capture carries: `customer`, `agent` or `mixed` (both parties).
    pub mono_leg: Leg,
    /// The legs on the left (0) and right (1) channel of a stereo capture.
    pub stereo_legs: [Leg; 2],
    /// The call id the sound-card call gets.
    pub call_id: String,
    /// The agent (name or extension) on the sound-card call, for agent tokens; empty = none.
    pub agent: String,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            channels: 0,
            sample_rate: 0,
            mono_leg: Leg::Mixed,
            stereo_legs: [Leg::Customer, Leg::Agent],
            call_id: "device".into(),
            agent: String::new(),
        }
    }
}

impl DeviceConfig {
    /// Checks ranges and names; called by [`Config::validate`].
    pub fn validate(&self) -> Result<(), String> {
        if self.channels > 2 {
            return Err(format!(
                "device.channels = {} must be 0 (device default), 1 or 2",
                self.channels
            ));
        }
        if self.sample_rate != 0 && !(8000..=192_000).contains(&self.sample_rate) {
            return Err(format!(
                "device.sample_rate = {} must be 0 (device default) or 8000..192000",
                self.sample_rate
            ));
        }
        if self.stereo_legs[0] == self.stereo_legs[1] {
            return Err("device.stereo_legs must name two different legs".into());
        }
        if self.stereo_legs.contains(&Leg::Mixed) {
            return Err("device.stereo_legs: each stereo channel is customer or agent".into());
        }
        if self.call_id.trim().is_empty() || self.call_id.chars().count() > 128 {
            return Err("device.call_id must be 1..128 characters".into());
        }
        for (field, value) in [
            ("name", &self.name),
            ("call_id", &self.call_id),
            ("agent", &self.agent),
        ] {
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "device.{field} must not contain control characters"
                ));
            }
        }
        Ok(())
    }
}

/// The sound-card call: the opened device's audio as one hosted call from startup until
/// `stop`, or until the device fails or goes away (the call then ends with the error, logged,
/// and the daemon goes on without it).
pub async fn run_as_call(source: DeviceSource, host: Arc<dyn CallHost>, stop: CancellationToken) {
    let Ok(HostedCall { input, done }) = host.host(source.info().clone()) else {
        return;
    };
    source.run(input, stop).await;
    let _ = done.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::Sample;

    fn cfg() -> DeviceConfig {
        DeviceConfig::default()
    }

    #[test]
    fn names_match_exactly_then_by_unique_description() {
        let devices = vec![
            ("default".to_owned(), "Default Audio Device".to_owned()),
            ("hw:CARD=PCH,DEV=0".to_owned(), "HDA Intel PCH".to_owned()),
            (
                "plughw:CARD=PCH,DEV=0".to_owned(),
                "HDA Intel PCH".to_owned(),
            ),
            ("null".to_owned(), "Discard all samples".to_owned()),
        ];
        assert_eq!(match_device("null", &devices), Ok(3));
        assert_eq!(match_device("hw:CARD=PCH,DEV=0", &devices), Ok(1));
        assert_eq!(match_device("Default Audio Device", &devices), Ok(0));
        assert_eq!(
            match_device("Null", &devices),
            Err(DeviceError::NotFound("Null".into()))
        );
        let err = match_device("HDA Intel PCH", &devices).unwrap_err();
        assert!(matches!(err, DeviceError::Ambiguous { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("\"hw:CARD=PCH,DEV=0\""), "{msg}");
        assert!(msg.contains("\"plughw:CARD=PCH,DEV=0\""), "{msg}");
    }

    #[test]
    fn not_found_is_one_clear_line() {
        assert_eq!(
            DeviceError::NotFound("Headset X".into()).to_string(),
            "no input device named \"Headset X\" (see: callguard devices)"
        );
    }

    fn f(channels: u16, min: u32, max: u32, format: SampleFormat) -> Format {
        Format {
            channels,
            min_rate: min,
            max_rate: max,
            format,
        }
    }

    #[test]
    fn format_choice_prefers_the_default_then_the_best_sample_type() {
        let supported = [
            f(1, 8000, 48_000, SampleFormat::I16),
            f(2, 8000, 48_000, SampleFormat::I16),
            f(2, 8000, 48_000, SampleFormat::I32),
            f(2, 44_100, 96_000, SampleFormat::F32),
            f(2, 8000, 48_000, SampleFormat::DsdU8),
        ];
        let default = Chosen {
            channels: 2,
            rate: 48_000,
            format: SampleFormat::I32,
        };
        // Nothing asked: the default as it is.
        assert_eq!(choose_format(&supported, Some(default), 0, 0), Ok(default));
        // Mono at 16 kHz: only i16 offers it.
        assert_eq!(
            choose_format(&supported, Some(default), 1, 16_000),
            Ok(Chosen {
                channels: 1,
                rate: 16_000,
                format: SampleFormat::I16
            })
        );
        // Stereo at 44.1 kHz: f32 ranks above i16 and i32.
        assert_eq!(
            choose_format(&supported, Some(default), 0, 44_100),
            Ok(Chosen {
                channels: 2,
                rate: 44_100,
                format: SampleFormat::F32
            })
        );
        // No default known: the fewest channels, 48 kHz.
        assert_eq!(
            choose_format(&supported, None, 0, 0),
            Ok(Chosen {
                channels: 1,
                rate: 48_000,
                format: SampleFormat::I16
            })
        );
        let err = choose_format(&supported, Some(default), 1, 96_000).unwrap_err();
        assert!(err.contains("1 channel(s) at 96000 Hz"), "{err}");
        assert!(err.contains("1-2 ch, 8000-96000 Hz"), "{err}");
        // Only DSD: nothing callguard reads.
        let dsd = [f(2, 8000, 48_000, SampleFormat::DsdU32)];
        assert!(choose_format(&dsd, None, 0, 0).is_err());
    }

    #[test]
    fn legs_follow_the_config() {
        let mut c = cfg();
        assert_eq!(legs_for(1, &c), vec![Leg::Mixed]);
        assert_eq!(legs_for(2, &c), vec![Leg::Customer, Leg::Agent]);
        assert_eq!(legs_for(8, &c), vec![Leg::Customer, Leg::Agent]);
        c.mono_leg = Leg::Agent;
        c.stereo_legs = [Leg::Agent, Leg::Customer];
        assert_eq!(legs_for(1, &c), vec![Leg::Agent]);
        assert_eq!(legs_for(2, &c), vec![Leg::Agent, Leg::Customer]);
    }

    #[test]
    fn the_ring_keeps_the_first_channels_of_whole_frames_and_counts_what_does_not_fit() {
        // Room for 4 stereo frames; the device delivers 3 channels per frame.
        let (mut tx, mut rx) = ring(4, 2);
        let input: Vec<i16> = (0..9).map(|i| i * 1000).collect(); // 3 frames of 3 channels
        let stored = tx.push_frames(&input, 3, |s| s as f32 / 10_000.0);
        assert_eq!(stored, 3);
        assert_eq!(rx.dropped_frames(), 0);
        // 2 more frames: 1 fits, 1 is dropped and counted.
        assert_eq!(tx.push_frames(&[1i16, 2, 3, 4, 5, 6], 3, |s| s as f32), 1);
        assert_eq!(rx.dropped_frames(), 1);
        let mut out = Vec::new();
        assert_eq!(rx.pop_frames(10, &mut out), 4);
        assert_eq!(out, vec![0.0, 0.1, 0.3, 0.4, 0.6, 0.7, 1.0, 2.0]);
        // Emptied: the ring takes frames again, wrapping around.
        for round in 0..5 {
            let frame = [round as f32, -(round as f32)];
            assert_eq!(tx.push_frames(&frame, 2, |s| s), 1);
            out.clear();
            assert_eq!(rx.pop_frames(1, &mut out), 1);
            assert_eq!(out, frame.to_vec());
        }
        assert_eq!(rx.pop_frames(10, &mut out), 0);
        assert_eq!(rx.dropped_frames(), 1);
    }

    #[test]
    fn the_ring_pops_at_most_what_is_asked() {
        let (mut tx, mut rx) = ring(8, 1);
        assert_eq!(tx.push_frames(&[0.5f32; 6], 1, |s| s), 6);
        let mut out = Vec::new();
        assert_eq!(rx.pop_frames(4, &mut out), 4);
        assert_eq!(rx.pop_frames(4, &mut out), 2);
        assert_eq!(out.len(), 6);
        // A frame count that does not divide the input: the partial frame is ignored.
        let (mut tx, _rx) = ring(8, 2);
        assert_eq!(tx.push_frames(&[0.1f32, 0.2, 0.3], 2, |s| s), 1);
    }

    #[test]
    fn the_ring_works_across_threads() {
        let (mut tx, mut rx) = ring(64, 2);
        let producer = std::thread::spawn(move || {
            let mut sent = 0u32;
            while sent < 10_000 {
                let frame = [sent as f32, sent as f32 + 0.5];
                if tx.push_frames(&frame, 2, |s| s) == 1 {
                    sent += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        let mut out = Vec::new();
        while got.len() < 10_000 {
            out.clear();
            rx.pop_frames(16, &mut out);
            for pair in out.chunks_exact(2) {
                assert_eq!(pair[1], pair[0] + 0.5);
                got.push(pair[0]);
            }
        }
        producer.join().unwrap();
        assert!(got.iter().enumerate().all(|(i, &v)| v == i as f32));
    }

    #[test]
    fn deinterleave_maps_channels_to_legs() {
        let legs = [Leg::Customer, Leg::Agent];
        let split = deinterleave(&[0.1, -0.1, 0.2, -0.2, 0.3, -0.3], &legs);
        assert_eq!(
            split,
            vec![
                (Leg::Customer, vec![0.1, 0.2, 0.3]),
                (Leg::Agent, vec![-0.1, -0.2, -0.3])
            ]
        );
        let mono = deinterleave(&[0.1, 0.2], &[Leg::Mixed]);
        assert_eq!(mono, vec![(Leg::Mixed, vec![0.1, 0.2])]);
    }

    #[test]
    fn samples_are_clamped_and_nan_is_silence() {
        assert_eq!(clean(f32::NAN), 0.0);
        assert_eq!(clean(1.5), 1.0);
        assert_eq!(clean(-3.0), -1.0);
        assert_eq!(clean(0.25), 0.25);
        assert_eq!(clean(i16::MIN.to_sample::<f32>()), -1.0);
    }

    #[test]
    fn listing_lines_are_compact() {
        assert_eq!(
            merge_ranges(vec![(8000, 16_000), (16_001, 48_000), (96_000, 96_000)]),
            vec![(8000, 48_000), (96_000, 96_000)]
        );
        assert_eq!(format_channels(&[1, 2, 3, 6]), "1-3, 6");
        assert_eq!(format_rates(&[(1, u32::MAX)]), "any");
        let info = DeviceInfo {
            name: "hw:CARD=PCH,DEV=0".into(),
            description: "HDA Intel PCH\nDirect hardware device".into(),
            is_default: true,
            channels: vec![2],
            rates: vec![(44_100, 48_000)],
            default_format: Some((2, 48_000)),
            unavailable: None,
        };
        let line = info.line();
        assert!(line.starts_with("* hw:CARD=PCH,DEV=0"), "{line}");
        assert!(
            line.contains("2 ch, 44100-48000 Hz, default 2 ch 48000 Hz"),
            "{line}"
        );
        assert!(
            line.ends_with("(HDA Intel PCH Direct hardware device)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    /// The reader against a hand-fed ring: chunks per leg, positions, gaps for drops, a full
    /// channel dropping instead of waiting, and the failure path.
    #[tokio::test(start_paused = true)]
    async fn the_reader_sends_legs_skips_gaps_and_ends_on_failure() {
        let legs = [Leg::Customer, Leg::Agent];
        let (mut producer, mut consumer) = ring(4, 2);
        let status = Status::default();
        let (tx, mut rx) = mpsc::channel(2);
        let mut reader = Reader {
            device: "test",
            legs: &legs,
            positions: vec![0; 2],
            scratch: Vec::new(),
            max_frames: 100,
            stats: DeviceStats::default(),
            seen_ring_drops: 0,
            last_warning: None,
        };
        // 6 frames offered, 4 fit, 2 dropped by the "callback".
        producer.push_frames(
            &[
                1.0f32, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0, 5.0, -5.0, 6.0, -6.0,
            ],
            2,
            |s| s / 10.0,
        );
        assert!(reader.drain(&mut consumer, &tx));
        let Some(SourceEvent::Audio(AudioChunk {
            leg,
            start_sample,
            samples,
        })) = rx.recv().await
        else {
            panic!("no audio")
        };
        assert_eq!(
            (leg, start_sample, samples),
            (Leg::Customer, 0, vec![0.1, 0.2, 0.3, 0.4])
        );
        let Some(SourceEvent::Audio(AudioChunk { leg, samples, .. })) = rx.recv().await else {
            panic!("no audio")
        };
        assert_eq!((leg, samples), (Leg::Agent, vec![-0.1, -0.2, -0.3, -0.4]));
        // The next chunk starts after the 2 dropped frames.
        producer.push_frames(&[0.5f32, -0.5], 2, |s| s);
        assert!(reader.drain(&mut consumer, &tx));
        let Some(SourceEvent::Audio(AudioChunk { start_sample, .. })) = rx.recv().await else {
            panic!("no audio")
        };
        assert_eq!(start_sample, 6);
        // A full channel: the chunk is dropped and counted, the reader does not wait.
        producer.push_frames(&[0.5f32, -0.5, 0.5, -0.5], 2, |s| s);
        assert!(reader.drain(&mut consumer, &tx)); // fills the channel (2 slots, 1 left over)
        producer.push_frames(&[0.5f32, -0.5], 2, |s| s);
        assert!(reader.drain(&mut consumer, &tx));
        assert_eq!(reader.stats.channel_dropped_frames, 2 + 1);
        assert_eq!(reader.stats.frames, 4 + 1 + 2 + 1);
        // The receiver gone: the reader says so.
        drop(rx);
        producer.push_frames(&[0.5f32, -0.5], 2, |s| s);
        assert!(!reader.drain(&mut consumer, &tx));

        // A failed stream ends the call with its reason.
        let (tx, _rx) = mpsc::channel(64);
        status.on_error(cpal::Error::new(cpal::ErrorKind::DeviceNotAvailable));
        let end = reader
            .pump(&mut consumer, &status, &tx, &CancellationToken::new())
            .await;
        let Some(EndReason::SourceError(why)) = end else {
            panic!("{end:?}")
        };
        assert!(why.starts_with("input device \"test\": "), "{why}");
        assert!(why.contains("not available"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_ends_a_silent_device_and_stops_on_shutdown() {
        let legs = [Leg::Mixed];
        let (_producer, mut consumer) = ring(4, 1);
        let status = Status::default();
        let (tx, _rx) = mpsc::channel(8);
        let mut reader = Reader {
            device: "mic",
            legs: &legs,
            positions: vec![0],
            scratch: Vec::new(),
            max_frames: 100,
            stats: DeviceStats::default(),
            seen_ring_drops: 0,
            last_warning: None,
        };
        // Xruns are counted, not fatal; a non-fatal error is remembered for the stall message.
        status.on_error(cpal::Error::new(cpal::ErrorKind::Xrun));
        status.on_error(cpal::Error::with_message(
            cpal::ErrorKind::BackendError,
            "poll failed",
        ));
        let started = Instant::now();
        let end = reader
            .pump(&mut consumer, &status, &tx, &CancellationToken::new())
            .await;
        assert_eq!(status.xruns.load(Ordering::Relaxed), 1);
        let Some(EndReason::SourceError(why)) = end else {
            panic!("{end:?}")
        };
        assert!(why.contains("no audio for 5 s"), "{why}");
        assert!(why.contains("poll failed"), "{why}");
        assert!(started.elapsed() >= Duration::from_millis(STALL_MS));

        let stop = CancellationToken::new();
        stop.cancel();
        let status = Status::default();
        let end = reader.pump(&mut consumer, &status, &tx, &stop).await;
        assert_eq!(end, Some(EndReason::Disconnected));
    }
}
