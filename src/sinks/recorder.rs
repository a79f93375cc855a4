//! A call's recording, written on a thread of its own: audio chunks and silenced spans come in
//! over a bounded channel, the WAV file (`store::recording`) is written as they arrive, and the
//! file is finished when the last sender is gone.
//!
//! The channel (`RECORDER_QUEUE` messages) is the one place a live call and its recording meet.
//! When it is full, a live call's audio chunk is dropped ([`AudioTap::try_send`]: a silent gap
//! in the file, counted and logged once at the end) rather than holding the call back; a span
//! to silence is waited for ([`Recorder::silence`]), since a dropped one would leave redacted
//! words audible. Offline (`analyze --store`) audio is waited for too ([`Recorder::audio`]).
//!
//! What it does not do: decide what to silence (that is the egress step, from the redactor's
//! spans), or keep the file when asked to throw it away (the caller deletes it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::domain::call::CallInfo;
use crate::domain::leg::{AudioChunk, Leg};
use crate::sinks::store::recording::{Recording, RecordingError, RecordingInfo, unused_path};

/// Messages a recorder may have waiting (about 10 s of 20 ms two-leg frames).
pub const RECORDER_QUEUE: usize = 1000;

enum ToRecorder {
    Audio(AudioChunk),
    /// Silence a redacted stretch of one leg (call-time ms).
    Silence {
        leg: Leg,
        start_ms: u64,
        end_ms: u64,
    },
}

/// One call's recording thread.
pub struct Recorder {
    tx: mpsc::Sender<ToRecorder>,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Result<RecordingInfo, RecordingError>>,
}

/// A clonable way to hand a live call's audio to its recorder without ever waiting.
#[derive(Clone)]
pub struct AudioTap {
    tx: mpsc::Sender<ToRecorder>,
    dropped: Arc<AtomicU64>,
}

impl AudioTap {
    /// Queues a copy of the chunk; a full queue drops it (counted).
    pub fn try_send(&self, chunk: &AudioChunk) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.tx.try_send(ToRecorder::Audio(chunk.clone()))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Recorder {
    /// Creates the call's recording in `dir` (`<call id>.wav`, or `-1`, `-2`... when taken) and
    /// starts its thread.
    pub fn start(info: &CallInfo, dir: &Path) -> Result<Self, RecordingError> {
        let path = unused_path(dir, &info.call_id);
        let recording = Recording::create(&path, info.sample_rate, &info.legs)?;
        let (tx, rx) = mpsc::channel(RECORDER_QUEUE);
        let call_id = info.call_id.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record(recording, rx, call_id))
            .map_err(|source| RecordingError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            tx,
            path,
            dropped: Arc::new(AtomicU64::new(0)),
            thread,
        })
    }

    /// Where the recording is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A tap for the live call's audio (never waits).
    pub fn tap(&self) -> AudioTap {
        AudioTap {
            tx: self.tx.clone(),
            dropped: Arc::clone(&self.dropped),
        }
    }

    /// Writes a chunk, waiting for room (offline recordings, where nothing is live).
    pub async fn audio(&self, chunk: AudioChunk) {
        let _ = self.tx.send(ToRecorder::Audio(chunk)).await;
    }

    /// Silences a redacted stretch of a leg, waiting for room: never dropped.
    pub async fn silence(&self, leg: Leg, start_ms: u64, end_ms: u64) {
        let msg = ToRecorder::Silence {
            leg,
            start_ms,
            end_ms,
        };
        let _ = self.tx.send(msg).await;
    }

    /// Closes the recording once everything queued is written; the audio chunks a full queue
    /// dropped are counted in the result's log line.
    pub async fn finish(self) -> Result<RecordingInfo, RecordingError> {
        let Self {
            tx,
            path,
            dropped,
            thread,
        } = self;
        drop(tx);
        let result = tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(|joined| joined.ok())
            .unwrap_or_else(|| {
                Err(RecordingError::Stopped {
                    path: path.clone(),
                    reason: "the recorder thread failed".into(),
                })
            });
        let dropped = dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(path = %path.display(), dropped, "recorder fell behind: audio chunks left out of the recording");
        }
        result
    }
}

/// The recorder thread: writes until every sender is gone, then finishes the file. The first
/// failure stops the recording (the call goes on) and is what the thread returns; the file is
/// finished all the same, so what was written plays.
fn record(
    mut recording: Recording,
    mut rx: mpsc::Receiver<ToRecorder>,
    call_id: String,
) -> Result<RecordingInfo, RecordingError> {
    let mut failed: Option<RecordingError> = None;
    while let Some(msg) = rx.blocking_recv() {
        let result = match msg {
            ToRecorder::Audio(c) => recording.write(c.leg, c.start_sample, &c.samples),
            ToRecorder::Silence {
                leg,
                start_ms,
                end_ms,
            } => recording.silence(leg, start_ms, end_ms),
        };
        if let Err(e) = result
            && failed.is_none()
        {
            // Logged once: the recording stops, the call goes on.
            tracing::error!(%call_id, error = %e, "recording stopped");
            failed = Some(e);
        }
    }
    let finished = recording.finish();
    match &finished {
        Ok(info) => {
            tracing::info!(%call_id, duration_ms = info.duration_ms, path = %info.path.display(), "recording finished")
        }
        Err(e) => tracing::error!(%call_id, error = %e, "recording not finished cleanly"),
    }
    match failed {
        Some(e) => Err(e),
        None => finished,
    }
}
