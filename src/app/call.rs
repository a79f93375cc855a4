//! Hosting one live call: the call task (`live::run_call`), its recording, and the path of its
//! events out of the call. A call is registered with the hub (which may refuse it) before any
//! audio is taken.
//!
//! Each event leaves the call in this order: the detectors have already judged the raw words;
//! then it is redacted (`redact::redact_event`), committed to the store (awaited: so nothing
//! is only broadcast, and what a screen saw survives a crash), and then given to the hub and
//! the screens. The recording is written on its own thread per call from a copy of the
//! audio: a full recorder queue drops a chunk (a silent gap in the file, counted in the log)
//! rather than holding the call back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tokio::sync::mpsc;

use super::{CALL_INPUT, CALL_OUTPUT};
use crate::audio::Leg;
use crate::event::Event;
use crate::hub::server::Hub;
use crate::hub::state::CallRefused;
use crate::live::{LiveContext, run_call};
use crate::redact::{Redactor, redact_event};
use crate::source::{CallInfo, EndReason, SourceEvent};
use crate::store::recording::{Recording, unused_path};
use crate::store::writer::StoreHandle;

/// What every hosted call is handed: the pipeline, the hub, the store and the redactor.
pub struct CallServices {
    pub live: Arc<LiveContext>,
    pub hub: Arc<Hub>,
    pub store: StoreHandle,
    pub redactor: Redactor,
    /// Where recordings go (`<data_dir>/recordings`).
    pub recordings: PathBuf,
}

/// Audio chunks a recorder may have waiting (about 10 s of 20 ms two-leg frames).
const RECORDER_QUEUE: usize = 1000;

enum ToRecorder {
    Audio {
        leg: Leg,
        start_sample: u64,
        samples: Vec<f32>,
    },
    /// Silence a redacted stretch of one leg (call-time ms).
    Silence {
        leg: Leg,
        start_ms: u64,
        end_ms: u64,
    },
}

/// Starts hosting a live call. Feed the returned sender with the call's source events; the
/// handle finishes once the call has drained, its last events are stored and its
/// `call_ended` has gone out. Refused, with the reason, when the daemon is at `hub.max_calls`
/// or the call id is live.
pub fn host_call(
    info: CallInfo,
    services: &Arc<CallServices>,
) -> Result<(mpsc::Sender<SourceEvent>, tokio::task::JoinHandle<()>), CallRefused> {
    let s = Arc::clone(services);
    if let Err(e) = s.hub.call_started(&info) {
        tracing::warn!(call_id = %info.call_id, source = ?info.source, error = %e, "call refused");
        return Err(e);
    }
    let call_id = info.call_id.clone();
    let started = crate::clock::unix_ms();
    let recorder = start_recorder(&info, &s.recordings);
    let (in_tx, mut in_rx) = mpsc::channel::<SourceEvent>(CALL_INPUT);
    let (call_tx, call_rx) = mpsc::channel(CALL_INPUT);
    let (out_tx, mut out_rx) = mpsc::channel(CALL_OUTPUT);
    let calls = s.live.calls.clone();
    let call = tokio::spawn(run_call(info.clone(), call_rx, Arc::clone(&s.live), out_tx));

    // The tee: the call gets every source event, the recorder a copy of the audio.
    let to_recorder = recorder.as_ref().map(|(tx, _)| tx.clone());
    let tee_id = call_id.clone();
    calls.spawn(async move {
        let mut dropped = 0u64;
        while let Some(event) = in_rx.recv().await {
            if let (Some(rec), SourceEvent::Audio { leg, start_sample, samples }) =
                (&to_recorder, &event)
            {
                let chunk = ToRecorder::Audio {
                    leg: *leg,
                    start_sample: *start_sample,
                    samples: samples.clone(),
                };
                if let Err(TrySendError::Full(_)) = rec.try_send(chunk) {
                    dropped += 1;
                }
            }
            if call_tx.send(event).await.is_err() {
                break;
            }
        }
        if dropped > 0 {
            tracing::warn!(call_id = %tee_id, dropped, "recorder fell behind: audio chunks left out of the recording");
        }
    });

    let recording_path = recorder.as_ref().map(|(_, p)| p.clone());
    let to_recorder = recorder.map(|(tx, _)| tx);
    let handle = calls.spawn(async move {
        if let Err(e) = s.store.call_started(info, started).await {
            tracing::error!(%call_id, error = %e, "call not stored");
        }
        if let Some(path) = recording_path
            && let Err(e) = s.store.set_recording(call_id.clone(), path).await
        {
            tracing::error!(%call_id, error = %e, "recording path not stored");
        }
        while let Some(mut event) = out_rx.recv().await {
            let said = match &event {
                Event::Transcript(t) if s.redactor.silence_audio() => t.text.clone(),
                _ => String::new(),
            };
            let spans = redact_event(&s.redactor, &mut event);
            if s.redactor.silence_audio()
                && let (Event::Transcript(t), Some(rec)) = (&event, &to_recorder)
            {
                // Whisper gives times per segment, not per word: silence the same share of
                // the segment as the span is of its text.
                let len = t.end_ms.saturating_sub(t.start_ms) as f32;
                for span in &spans {
                    let (a, b) = span.position(&said);
                    let _ = rec.try_send(ToRecorder::Silence {
                        leg: t.leg,
                        start_ms: t.start_ms + (a * len) as u64,
                        end_ms: t.start_ms + (b * len).ceil() as u64,
                    });
                }
            }
            // Committed before it is shown: what a screen saw survives a crash.
            if let Err(e) = s.store.record_committed(event.clone()).await {
                tracing::error!(%call_id, error = %e, "event not stored");
            }
            s.hub.event(&event);
        }
        let end = match call.await {
            Ok(Ok(outcome)) => {
                tracing::info!(%call_id, ?outcome.end, "call finished");
                outcome.end
            }
            Ok(Err(e)) => {
                tracing::error!(%call_id, error = %e, "call failed");
                EndReason::SourceError(e.to_string())
            }
            Err(e) => {
                tracing::error!(%call_id, error = %e, "call task panicked");
                EndReason::SourceError("the call task failed".into())
            }
        };
        drop(to_recorder);
        if let Err(e) = s
            .store
            .call_ended(call_id.clone(), end, crate::clock::unix_ms())
            .await
        {
            tracing::error!(%call_id, error = %e, "call end not stored");
        }
        s.hub.call_ended(&call_id);
    });
    Ok((in_tx, handle))
}

/// Opens the call's recording and its writer thread; `None` (logged) when the file cannot be
/// created, so that a full disk costs the recording, not the call.
fn start_recorder(
    info: &CallInfo,
    dir: &std::path::Path,
) -> Option<(SyncSender<ToRecorder>, PathBuf)> {
    let path = unused_path(dir, &info.call_id);
    let recording = match Recording::create(&path, info.sample_rate, &info.legs) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(call_id = %info.call_id, error = %e, "call not recorded");
            return None;
        }
    };
    let (tx, rx) = sync_channel(RECORDER_QUEUE);
    let call_id = info.call_id.clone();
    let spawned = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || record(recording, rx, call_id));
    if let Err(e) = spawned {
        tracing::error!(call_id = %info.call_id, error = %e, "cannot start the recorder thread");
        return None;
    }
    Some((tx, path))
}

/// The recorder thread: writes until every sender is gone, then finishes the file.
fn record(mut recording: Recording, rx: Receiver<ToRecorder>, call_id: String) {
    let mut failed = false;
    for msg in rx {
        let result = match msg {
            ToRecorder::Audio {
                leg,
                start_sample,
                samples,
            } => recording.write(leg, start_sample, &samples),
            ToRecorder::Silence {
                leg,
                start_ms,
                end_ms,
            } => recording.silence(leg, start_ms, end_ms),
        };
        if let Err(e) = result
            && !failed
        {
            // Logged once: the recording stops, the call goes on.
            tracing::error!(%call_id, error = %e, "recording stopped");
            failed = true;
        }
    }
    match recording.finish() {
        Ok(info) => {
            tracing::info!(%call_id, duration_ms = info.duration_ms, path = %info.path.display(), "recording finished")
        }
        Err(e) => tracing::error!(%call_id, error = %e, "recording not finished cleanly"),
    }
}
