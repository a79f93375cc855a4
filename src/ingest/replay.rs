//! File replay: a recorded call played as if it were live, in 20 ms frames at real-time pace,
//! for the demo and for tests of the daemon. Stereo files follow the configured leg map; mono
//! is one mixed leg. [`Replay::play`] only produces `SourceEvent`s on a channel; [`spawn`] plays
//! recordings as calls hosted by a [`CallHost`], once or in a loop (the demo).
//!
//! Reading a recording ([`Replay::open`]) is blocking file work: the daemon does it off the
//! async runtime.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use crate::domain::leg::{AudioChunk, Leg};
use crate::ingest::{CallHost, HostedCall};
use crate::pipeline::audio::split_legs;
use crate::pipeline::audio::wav::{DecodedAudio, WavError, read_wav};

/// A recording ready to be replayed.
#[derive(Debug, Clone)]
pub struct Replay {
    pub info: CallInfo,
    legs: Vec<(Leg, Vec<f32>)>,
    frame: usize,
}

/// Frame length of the replay, as phone systems send (20 ms).
pub const FRAME_MS: u64 = 20;

impl Replay {
    /// Reads a recording; `call_id` names the replayed call.
    pub fn open(path: &Path, call_id: &str, stereo_legs: [Leg; 2]) -> Result<Self, WavError> {
        Ok(Self::from_audio(read_wav(path)?, call_id, stereo_legs))
    }

    pub fn from_audio(audio: DecodedAudio, call_id: &str, stereo_legs: [Leg; 2]) -> Self {
        let rate = audio.sample_rate;
        let legs = split_legs(audio, stereo_legs);
        Self {
            info: CallInfo {
                call_id: call_id.to_owned(),
                source: SourceKind::Replay,
                legs: legs.iter().map(|(l, _)| *l).collect(),
                sample_rate: rate,
                lang: None,
                agent: None,
                metadata: serde_json::Value::Null,
            },
            frame: (rate as u64 * FRAME_MS / 1000) as usize,
            legs,
        }
    }

    /// The recording's length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let n = self.legs.first().map_or(0, |(_, s)| s.len()) as u64;
        n * 1000 / self.info.sample_rate.max(1) as u64
    }

    /// Sends the call's audio frame by frame, one frame every 20 ms of wall time (`speed` 1.0;
    /// 2.0 plays twice as fast), then `Ended(Hangup)`. Stops early, without an end event, when
    /// the receiver goes away.
    pub async fn play(&self, tx: mpsc::Sender<SourceEvent>, speed: f64) {
        let period = Duration::from_secs_f64(FRAME_MS as f64 / 1000.0 / speed.max(0.01));
        let mut ticker = tokio::time::interval(period);
        // A late tick (a busy machine) is not made up with a burst: real phones do not burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let frames = self
            .legs
            .first()
            .map_or(0, |(_, s)| s.len().div_ceil(self.frame.max(1)));
        for i in 0..frames {
            ticker.tick().await;
            for (leg, samples) in &self.legs {
                let start = i * self.frame;
                let end = (start + self.frame).min(samples.len());
                let event = SourceEvent::Audio(AudioChunk {
                    leg: *leg,
                    start_sample: start as u64,
                    samples: samples[start..end].to_vec(),
                });
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(SourceEvent::Ended(EndReason::Hangup)).await;
    }
}

/// Plays each recording as a hosted call at `speed` until it ends or `stop`; with `looping`,
/// again and again, each round a new call (`<id>-1`, `<id>-2`, ...). Each player is a tracked
/// task.
pub fn spawn(
    replays: Vec<Replay>,
    host: &Arc<dyn CallHost>,
    looping: bool,
    speed: f64,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    for replay in replays {
        let (host, stop, inner) = (Arc::clone(host), stop.clone(), tracker.clone());
        tracker.spawn(async move {
            let mut round = 0u32;
            loop {
                let mut r = replay.clone();
                if round > 0 {
                    r.info.call_id = format!("{}-{round}", replay.info.call_id);
                }
                let call = inner.spawn(play_as_call(r, Arc::clone(&host), speed, stop.clone()));
                let _ = call.await;
                round += 1;
                if !looping || stop.is_cancelled() {
                    break;
                }
            }
        });
    }
}

/// One replayed call: the player feeds the hosted call until it ends or `stop`.
async fn play_as_call(
    replay: Replay,
    host: Arc<dyn CallHost>,
    speed: f64,
    stop: CancellationToken,
) {
    let Ok(HostedCall { input, done }) = host.host(replay.info.clone()) else {
        return;
    };
    tokio::select! {
        _ = replay.play(input.clone(), speed) => {}
        _ = stop.cancelled() => {
            let _ = input.send(SourceEvent::Ended(EndReason::Disconnected)).await;
        }
    }
    drop(input);
    let _ = done.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::audio::wav::SampleFormat;

    fn audio(rate: u32, seconds: f32, channels: usize) -> DecodedAudio {
        let n = (rate as f32 * seconds) as usize;
        DecodedAudio {
            sample_rate: rate,
            channels: (0..channels).map(|c| vec![c as f32 * 0.1; n]).collect(),
            format: SampleFormat::MuLaw,
            truncated: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn plays_frames_at_real_time_pace_then_hangs_up() {
        let r = Replay::from_audio(audio(8000, 1.0, 2), "c1", [Leg::Customer, Leg::Agent]);
        assert_eq!(r.info.legs, vec![Leg::Customer, Leg::Agent]);
        assert_eq!(r.duration_ms(), 1000);
        let (tx, mut rx) = mpsc::channel(8);
        let started = tokio::time::Instant::now();
        let player = tokio::spawn(async move { r.play(tx, 1.0).await });
        let mut frames = 0;
        let mut agent_samples = 0;
        let mut ended = false;
        while let Some(e) = rx.recv().await {
            match e {
                SourceEvent::Audio(AudioChunk {
                    leg: Leg::Agent,
                    samples,
                    start_sample,
                }) => {
                    assert_eq!(start_sample, agent_samples);
                    assert!(samples.iter().all(|&s| s == 0.1));
                    agent_samples += samples.len() as u64;
                    frames += 1;
                }
                SourceEvent::Audio(AudioChunk { .. }) => {}
                SourceEvent::Ended(EndReason::Hangup) => ended = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        player.await.unwrap();
        assert!(ended);
        assert_eq!((frames, agent_samples), (50, 8000));
        // 50 frames, the first at once: 49 periods of 20 ms of (paused, auto-advanced) time.
        assert_eq!(started.elapsed(), Duration::from_millis(980));
    }

    #[tokio::test(start_paused = true)]
    async fn mono_is_one_mixed_leg_and_a_gone_receiver_stops_it() {
        let r = Replay::from_audio(audio(16_000, 0.5, 1), "c2", [Leg::Customer, Leg::Agent]);
        assert_eq!(r.info.legs, vec![Leg::Mixed]);
        let (tx, mut rx) = mpsc::channel(1);
        let player = tokio::spawn(async move { r.play(tx, 1.0).await });
        assert!(matches!(
            rx.recv().await,
            Some(SourceEvent::Audio(AudioChunk {
                leg: Leg::Mixed,
                ..
            }))
        ));
        drop(rx);
        // The player notices and returns instead of playing on.
        player.await.unwrap();
    }
}
