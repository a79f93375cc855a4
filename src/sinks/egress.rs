//! The one way out of a call, for the daemon's live calls and for `analyze --store` alike.
//!
//! Each event leaves in this order: the detectors have already judged the raw words; it is
//! redacted (`pipeline::redact`), and the stretches of the recording that carried the redacted
//! words are silenced (Whisper times segments, not words, so a span is placed by its share of
//! the segment's text, widened to whole milliseconds and kept inside the segment); it is
//! committed to the store (awaited: nothing is only shown, and what a screen saw survives a
//! crash); then it is given to the hub, which shows it to the screens and the webhook.
//!
//! A [`CallSink`] is one call's end of this: it stores the call's start, starts its recording
//! (a full disk costs the recording, not the call), takes its audio and events, and on
//! [`CallSink::close`] finishes the recording and stores and announces the call's end. A call
//! analysed offline has no hub; a live call's audio reaches the recorder through an
//! [`AudioTap`] that never waits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::call::{CallInfo, EndReason, SourceKind};
use crate::domain::event::Event;
use crate::domain::leg::{AudioChunk, Leg};
use crate::pipeline::audio::split_legs;
use crate::pipeline::audio::wav::DecodedAudio;
use crate::pipeline::redact::{RedactConfig, Redactor, redact_event};
use crate::sinks::hub::state::Hub;
use crate::sinks::recorder::{AudioTap, Recorder};
use crate::sinks::store::recording::{RECORDINGS_DIR, RecordingError, RecordingInfo};
use crate::sinks::store::{CallKey, Store, StoreError, StoreHandle, StoreWriter};

/// A stretch of one leg to silence in the recording (call-time ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    pub leg: Leg,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Redacts an event in place and says which stretches of the recording to silence (none
/// unless `[redact] silence_audio` is on, and only transcripts carry audio). Returns the
/// number of spans redacted too.
pub fn redact(redactor: &Redactor, event: &mut Event) -> (usize, Vec<Silence>) {
    let said = match &*event {
        Event::Transcript(t) if redactor.silence_audio() => Some(t.text.clone()),
        _ => None,
    };
    let spans = redact_event(redactor, event);
    let mut silences = Vec::new();
    if let (Some(said), Event::Transcript(t)) = (said, &*event) {
        let (start, end) = (t.start_ms, t.end_ms);
        let len = end.saturating_sub(start) as f64;
        for span in &spans {
            let (a, b) = span.position(&said);
            let s = start + (f64::from(a) * len).floor() as u64;
            let e = (start + (f64::from(b) * len).ceil() as u64).min(end);
            if s < e {
                silences.push(Silence {
                    leg: t.leg,
                    start_ms: s,
                    end_ms: e,
                });
            }
        }
    }
    (spans.len(), silences)
}

/// A copy of everything a call commits, for other processes (a cluster's hubs, which store
/// and show it). Called after the local commit, in the call's order; never waits: an
/// implementation queues (bounded, counting what it drops).
pub trait Mirror: Send + Sync {
    fn call_started(&self, info: &CallInfo, started_unix_ms: u64);
    /// Every event, partial transcripts included (they are shown, not stored).
    fn event(&self, event: &Event);
    fn recording(&self, call_id: &str, path: &Path);
    fn call_ended(&self, call_id: &str, end: &EndReason, ended_unix_ms: u64);
}

/// What every call's way out shares.
pub struct Egress {
    pub redactor: Redactor,
    pub store: StoreHandle,
    /// The screens; none for a call analysed offline.
    pub hub: Option<Arc<Hub>>,
    /// Where recordings go (`<data_dir>/recordings`); none: calls are not recorded.
    pub recordings: Option<PathBuf>,
    /// In a cluster edge: the copy for the hubs.
    pub mirror: Option<Arc<dyn Mirror>>,
}

impl Egress {
    pub fn new(
        redact: &RedactConfig,
        store: StoreHandle,
        hub: Option<Arc<Hub>>,
        recordings: Option<PathBuf>,
    ) -> Self {
        Self {
            redactor: Redactor::new(redact),
            store,
            hub,
            recordings,
            mirror: None,
        }
    }

    /// The same, with every call's events also copied to `mirror`.
    pub fn with_mirror(mut self, mirror: Arc<dyn Mirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }
}

/// How a call's way out ended: what `close` could not do is logged, and also said here for a
/// caller that reports it (`analyze --store`).
#[derive(Debug)]
pub struct Closed {
    /// The stored call (none when the store refused the call's start).
    pub id: Option<CallKey>,
    /// The recording, or why it failed; none when the call was not recorded.
    pub recording: Option<Result<RecordingInfo, RecordingError>>,
    /// Events the store refused, with the first error.
    pub events_failed: usize,
    pub first_error: Option<StoreError>,
    /// Transcript spans redacted.
    pub redacted: usize,
}

/// One call's end of the egress step.
pub struct CallSink {
    egress: Arc<Egress>,
    call_id: String,
    id: Option<CallKey>,
    recorder: Option<Recorder>,
    /// Why the recording could not be started, when it could not.
    recorder_failed: Option<RecordingError>,
    events_failed: usize,
    first_error: Option<StoreError>,
    redacted: usize,
}

impl CallSink {
    /// Stores the call's start (at `started_unix_ms`) and starts its recording.
    pub async fn open(egress: Arc<Egress>, info: &CallInfo, started_unix_ms: u64) -> Self {
        let call_id = info.call_id.clone();
        let id = match egress
            .store
            .call_started_committed(info.clone(), started_unix_ms)
            .await
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(%call_id, error = %e, "call not stored");
                None
            }
        };
        if let Some(m) = &egress.mirror {
            m.call_started(info, started_unix_ms);
        }
        let (recorder, recorder_failed) = match egress.recordings.clone() {
            Some(dir) => {
                // Creating the file is blocking work.
                let info = info.clone();
                let started = tokio::task::spawn_blocking(move || Recorder::start(&info, &dir))
                    .await
                    .unwrap_or_else(|e| {
                        Err(RecordingError::Stopped {
                            path: PathBuf::new(),
                            reason: format!("the recorder could not start: {e}"),
                        })
                    });
                match started {
                    Ok(r) => (Some(r), None),
                    Err(e) => {
                        // A full disk costs the recording, not the call.
                        tracing::error!(%call_id, error = %e, "call not recorded");
                        (None, Some(e))
                    }
                }
            }
            None => (None, None),
        };
        if let Some(rec) = &recorder {
            let path = std::path::absolute(rec.path()).unwrap_or_else(|_| rec.path().to_owned());
            if let Some(m) = &egress.mirror {
                m.recording(&call_id, &path);
            }
            if let Err(e) = egress.store.set_recording(call_id.clone(), path).await {
                tracing::error!(%call_id, error = %e, "recording path not stored");
            }
        }
        Self {
            egress,
            call_id,
            id,
            recorder,
            recorder_failed,
            events_failed: 0,
            first_error: None,
            redacted: 0,
        }
    }

    /// A tap for the live call's audio, when it is recorded: copies go to the recorder
    /// without ever waiting.
    pub fn audio_tap(&self) -> Option<AudioTap> {
        self.recorder.as_ref().map(Recorder::tap)
    }

    /// Records a chunk of the call's audio, waiting for room (offline).
    pub async fn audio(&self, chunk: AudioChunk) {
        if let Some(rec) = &self.recorder {
            rec.audio(chunk).await;
        }
    }

    /// Takes one event out of the call: redacted, silenced in the recording, committed, shown.
    pub async fn emit(&mut self, mut event: Event) {
        let (redacted, silences) = redact(&self.egress.redactor, &mut event);
        self.redacted += redacted;
        if let Some(rec) = &self.recorder {
            for s in silences {
                rec.silence(s.leg, s.start_ms, s.end_ms).await;
            }
        }
        // Committed before it is shown: what a screen saw survives a crash.
        if let Err(e) = self.egress.store.record_committed(event.clone()).await {
            tracing::error!(call_id = %self.call_id, error = %e, "event not stored");
            self.events_failed += 1;
            self.first_error.get_or_insert(e);
        }
        if let Some(m) = &self.egress.mirror {
            m.event(&event);
        }
        if let Some(hub) = &self.egress.hub {
            hub.event(&event);
        }
    }

    /// Ends the call: its recording is finished, its end stored (at `ended_unix_ms`) and
    /// announced.
    pub async fn close(self, end: EndReason, ended_unix_ms: u64) -> Closed {
        let recording = match (self.recorder, self.recorder_failed) {
            (Some(rec), _) => Some(rec.finish().await),
            (None, Some(e)) => Some(Err(e)),
            (None, None) => None,
        };
        let call_id = self.call_id;
        if let Err(e) = self
            .egress
            .store
            .call_ended(call_id.clone(), end.clone(), ended_unix_ms)
            .await
        {
            tracing::error!(%call_id, error = %e, "call end not stored");
        }
        if let Some(m) = &self.egress.mirror {
            m.call_ended(&call_id, &end, ended_unix_ms);
        }
        if let Some(hub) = &self.egress.hub {
            hub.call_ended(&call_id);
        }
        Closed {
            id: self.id,
            recording,
            events_failed: self.events_failed,
            first_error: self.first_error,
            redacted: self.redacted,
        }
    }
}

/// A recording analysed offline (`analyze --store`), to be stored as a call of its own.
#[derive(Debug)]
pub struct RecordedCall<'a> {
    pub call_id: &'a str,
    /// The analysed file (kept in the call's metadata).
    pub file: &'a Path,
    /// The decoded audio, at its own rate: the recording is made of it.
    pub audio: DecodedAudio,
    /// Which leg each channel of a stereo file is (`audio.stereo_legs`).
    pub stereo_legs: [Leg; 2],
    /// The analysis' events, raw: detection has run on them.
    pub events: Vec<Event>,
    /// The call's length.
    pub duration_ms: u64,
    pub redact: &'a RedactConfig,
    pub data_dir: &'a Path,
    /// When it is stored: the call ends then, and started its length before.
    pub now_unix_ms: u64,
}

/// What [`store_recorded_call`] stored.
#[derive(Debug)]
pub struct StoredCall {
    pub id: CallKey,
    pub recording: Option<RecordingInfo>,
    /// Transcript spans redacted.
    pub redacted: usize,
}

/// Why an analysed recording was not (wholly) stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreCallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the store's writer: {0}")]
    Runtime(std::io::Error),
    /// The call is stored and ended, but not all of it.
    #[error("stored as call {id}, but {problems}")]
    Partial { id: CallKey, problems: String },
}

/// Recordings are written a second of each leg in turn: a recording lets one leg run only so
/// far ahead of the other.
const OFFLINE_CHUNK_S: usize = 1;

/// Stores an analysed recording as a call of source `file` through the same egress step as a
/// live call: the call, its events redacted per `redact` (detection already ran on the raw
/// words), its recording (the redacted spans silenced when `silence_audio` is on), its end
/// (`hangup`). The store is given to a writer thread for the while, as the daemon's is. When
/// events or the recording fail the call is still ended and kept, an incomplete recording of
/// ours is removed, and the error says which call it is.
pub fn store_recorded_call(
    store: Store,
    call: RecordedCall<'_>,
) -> Result<StoredCall, StoreCallError> {
    let RecordedCall {
        call_id,
        file,
        audio,
        stereo_legs,
        events,
        duration_ms,
        redact,
        data_dir,
        now_unix_ms,
    } = call;
    let rate = audio.sample_rate;
    let format = audio.format.to_string();
    let truncated = audio.truncated;
    let legs = split_legs(audio, stereo_legs);
    let info = CallInfo {
        call_id: call_id.to_owned(),
        source: SourceKind::File,
        legs: legs.iter().map(|(l, _)| *l).collect(),
        sample_rate: rate,
        lang: None,
        agent: None,
        metadata: serde_json::json!({
            "file": std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
            "format": format,
            "truncated": truncated,
        }),
    };
    let (handle, writer) = StoreWriter::start(store)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreCallError::Runtime)?;
    let egress = Arc::new(Egress::new(
        redact,
        handle.clone(),
        None,
        Some(data_dir.join(RECORDINGS_DIR)),
    ));
    let closed = runtime.block_on(async {
        let started = now_unix_ms.saturating_sub(duration_ms);
        let mut sink = CallSink::open(egress, &info, started).await;
        let step = (rate as usize).max(1) * OFFLINE_CHUNK_S;
        let frames = legs.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        for at in (0..frames).step_by(step) {
            for (leg, samples) in &legs {
                let end = (at + step).min(samples.len());
                if at < end {
                    let chunk = AudioChunk {
                        leg: *leg,
                        start_sample: at as u64,
                        samples: samples[at..end].to_vec(),
                    };
                    sink.audio(chunk).await;
                }
            }
        }
        for event in events {
            sink.emit(event).await;
        }
        let closed = sink.close(EndReason::Hangup, now_unix_ms).await;
        let flushed = handle.flush().await;
        (closed, flushed)
    });
    drop(handle);
    let _ = writer.join();
    let (closed, flushed) = closed;
    flushed?;
    let Some(id) = closed.id else {
        return Err(closed.first_error.unwrap_or(StoreError::Closed).into());
    };
    let mut problems = Vec::new();
    if let Some(e) = &closed.first_error {
        problems.push(format!(
            "{} events were not stored (first: {e})",
            closed.events_failed
        ));
    }
    let recording = match closed.recording {
        Some(Ok(info)) if info.incomplete.is_none() => Some(info),
        Some(Ok(info)) => {
            let why = info.incomplete.unwrap_or_default();
            problems.push(format!(
                "its recording failed: recording {} is incomplete: {why}",
                info.path.display()
            ));
            // Ours and incomplete: do not leave a broken file behind.
            let _ = std::fs::remove_file(&info.path);
            None
        }
        Some(Err(e)) => {
            problems.push(format!("its recording failed: {e}"));
            None
        }
        None => None,
    };
    if !problems.is_empty() {
        return Err(StoreCallError::Partial {
            id,
            problems: problems.join("; "),
        });
    }
    Ok(StoredCall {
        id,
        recording,
        redacted: closed.redacted,
    })
}
