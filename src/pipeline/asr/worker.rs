//! Whisper transcription workers: whisper.cpp runs on dedicated OS threads, never on the async
//! runtime, over one shared, once-loaded model; each job gets a fresh `WhisperState`.
//!
//! Callers queue an utterance (16 kHz samples with its call-relative start) and get the answer
//! on a oneshot channel, which works from plain threads (`blocking_recv`) and from async tasks
//! alike. This module does not segment audio, and keeps no per-call state: a leg's language
//! choice lives with the caller (`LegLanguage`).
//!
//! # Scheduling
//!
//! Many live calls share one pool, so the queue is not a plain FIFO. A free worker takes:
//!
//! 1. every final (a whole utterance) before any partial (the audio so far of an utterance
//!    still being spoken): finals are what the detectors act on, a partial is an early look;
//! 2. within a kind, jobs of riskier calls first (escalate, then watch, then calm), and within
//!    a level the customer's words before the agent's (prompts come from the customer). The
//!    call's level is read at pick time, so a call that escalates while its jobs wait moves
//!    ahead;
//! 3. then the longest-waiting first.
//!
//! # Overload
//!
//! [`AsrPool::enqueue`] never waits, since async tasks call it: when the pool is behind, work
//! is refused or dropped, every accepted job still gets exactly one answer, and each outcome
//! is counted in [`AsrStats`]:
//!
//! - a final is refused with `QueueFull` once `asr.max_queued_utterances` finals are waiting
//!   (`finals_refused`). [`AsrPool::submit`], for plain threads, waits for room instead;
//! - a partial is refused with `Shed` while any final waits or every worker is busy
//!   (`partials_shed`): partials use spare capacity only, since a started partial would delay
//!   the finals that arrive behind it;
//! - each call leg keeps at most one queued partial: a newer partial or the leg's final covers
//!   its audio and replaces it, the old one answered `Superseded` (`partials_superseded`);
//! - a partial that has waited over [`PARTIAL_MAX_WAIT`] is answered `Shed` instead of run
//!   (`partials_shed`);
//! - behind (as many finals waiting as there are workers), a calm call's final is decoded
//!   greedily rather than with the beam (`finals_degraded`), unless the policy is off
//!   (`asr.shed_finals_after_ms = 0`);
//! - past capacity, finals of live calls are shed by worth so that the lag of the rest stays
//!   bounded instead of growing without end: a calm call's agent final that has waited over
//!   `asr.shed_finals_after_ms` is answered `Shed` (`finals_shed`), its customer's after twice
//!   that, a watched call's after three and four times that, an escalating call's never.
//!   Offline jobs are never shed, nor a call's words while it is alone in the queue (a burst
//!   faster than real time competes with nobody). The raised-voice detector does not go through this queue at
//!   all, so loud calls still rise to `watch` and out of the shedding;
//! - a refused job leaves the queue as it was.
//!
//! Dropping the pool refuses new work with `Closed`, answers queued partials `Shed`, and waits
//! for the workers to finish every queued final, so a draining daemon loses no utterance it
//! accepted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::domain::alert::Level;
use crate::domain::leg::{Leg, PIPELINE_RATE};
use crate::pipeline::asr::AsrConfig;
use crate::pipeline::asr::model::ggml::{self, ModelError, ModelInfo};
use crate::pipeline::asr::text::{PhantomFilter, collapse_loops, strip_prompt_echo, tidy};

/// whisper.cpp ignores input shorter than 100 mel frames (1 s): pad up to a little more.
const MIN_SAMPLES: usize = PIPELINE_RATE as usize * 105 / 100;
/// whisper.cpp's full encoder window: 1500 frames, 30 s.
const FULL_AUDIO_CTX: usize = 1500;

/// Errors from loading the model or running it.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("whisper could not load {path}: {message}")]
    Load { path: String, message: String },
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("transcription queue is full")]
    QueueFull,
    #[error("a newer partial replaced this one")]
    Superseded,
    #[error("skipped: transcription is behind")]
    Shed,
    #[error("transcription workers have stopped")]
    Closed,
    #[error("no audio to transcribe")]
    Empty,
    /// Remote transcription (a cluster): no Whisper node answered in time, or the message
    /// bus is unreachable.
    #[error("transcription unavailable: {0}")]
    Unavailable(String),
}

/// Which language to transcribe a job in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LangRequest {
    /// A Whisper language code, e.g. `en` or `zh`.
    Fixed(String),
    /// Detect the language, choosing among these codes only.
    Detect(Vec<String>),
}

/// One utterance to transcribe.
#[derive(Debug, Clone)]
pub struct AsrJob {
    pub leg: Leg,
    /// Call-relative time of the first sample.
    pub start_ms: u64,
    /// Mono samples at 16 kHz.
    pub samples: Vec<f32>,
    pub lang: LangRequest,
}

/// A piece of text with call-relative times.
#[derive(Debug, Clone, PartialEq)]
pub struct AsrSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// What a job produced.
#[derive(Debug, Clone)]
pub struct AsrOutput {
    /// The language the text is in (fixed, or detected for this job).
    pub lang: String,
    /// Set when this job detected its language, with the winning probability.
    pub detected: Option<f32>,
    pub segments: Vec<AsrSegment>,
    /// Segments dropped as phantom text or non-speech.
    pub dropped: usize,
    /// Wall time spent in whisper.cpp for this job.
    pub compute_ms: u64,
}

/// Settings the workers need, resolved from the config.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub workers: usize,
    pub threads: usize,
    /// The most finals that may wait for a worker.
    pub queue: usize,
    /// How long a calm live call's final may wait before it is shed; 0 = never.
    pub shed_finals_after_ms: u64,
    pub beam_size: u32,
    pub no_speech_threshold: f32,
    pub zh_prompt: String,
    pub phantoms: PhantomFilter,
}

impl WorkerSettings {
    pub fn from_config(cfg: &AsrConfig) -> Self {
        let (workers, threads) = cfg.threads();
        Self {
            workers,
            threads,
            queue: cfg.max_queued_utterances,
            shed_finals_after_ms: u64::from(cfg.shed_finals_after_ms),
            beam_size: cfg.beam_size,
            no_speech_threshold: cfg.no_speech_threshold,
            zh_prompt: cfg.zh_prompt.clone(),
            phantoms: PhantomFilter::new(&cfg.phantom_phrases),
        }
    }
}

/// A loaded model, validated before whisper.cpp sees it (whisper.cpp aborts the process on
/// some malformed files, so a bad file must be caught here).
pub struct Model {
    pub info: ModelInfo,
    ctx: WhisperContext,
}

impl Model {
    pub fn load(path: &Path) -> Result<Arc<Model>, AsrError> {
        let info = ggml::validate(path)?;
        whisper_rs::install_logging_hooks();
        let path_str = path.to_str().ok_or_else(|| AsrError::Load {
            path: path.display().to_string(),
            message: "path is not valid UTF-8".into(),
        })?;
        let ctx = WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
            .map_err(|e| AsrError::Load {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Arc::new(Model { info, ctx }))
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }
}

type Reply = oneshot::Sender<Result<AsrOutput, AsrError>>;

/// What a job's transcript is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A whole utterance: the text the detectors act on.
    Final,
    /// The audio so far of an utterance still being spoken: an early look, worth less than
    /// any final and worthless once the speaker has said more.
    Partial,
}

/// A live call's risk level as the queue sees it: the call sets it as its risk changes, the
/// scheduler reads it when it orders or sheds jobs, so a call that escalates while its jobs
/// wait moves ahead. Clones share the level.
#[derive(Debug, Clone, Default)]
pub struct CallRisk(Arc<AtomicU8>);

impl CallRisk {
    pub fn set(&self, level: Level) {
        // A hint read at pick time: no other memory depends on it.
        self.0.store(level as u8, Ordering::Relaxed);
    }

    /// 0 calm, 1 watch, 2 escalate.
    pub fn rank(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Who a job is for, which orders it in the queue.
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub call_id: Arc<str>,
    pub kind: JobKind,
    pub risk: CallRisk,
    /// A live call's job, which may be shed or degraded past capacity; offline jobs never are.
    pub live: bool,
}

impl JobMeta {
    /// A live call's job.
    pub fn new(call_id: impl Into<Arc<str>>, kind: JobKind, risk: CallRisk) -> Self {
        Self {
            call_id: call_id.into(),
            kind,
            risk,
            live: true,
        }
    }

    /// A final outside any live call (offline analysis): calm, never shed, no partials to
    /// replace.
    pub fn offline() -> Self {
        Self {
            live: false,
            ..Self::new("", JobKind::Final, CallRisk::default())
        }
    }
}

/// What a job's words are worth to detection, which orders the queue and decides what goes
/// first past capacity: the call's risk first, then the leg, since the customer's words are
/// what transfer prompts come from (the agent's matter for QA, later). 0 a calm call's agent,
/// 1 its customer (or a mixed leg), 2 and 3 the same on a watched call, 4 and 5 escalating.
fn worth(meta: &JobMeta, leg: Leg) -> u8 {
    meta.risk.rank().min(2) * 2 + u8::from(leg != Leg::Agent)
}

/// How long a live final of this worth may wait before it is shed: the calm agent's
/// allowance, and one more allowance per step of worth; an escalating call's never.
fn shed_after(worth: u8, calm: Duration) -> Option<Duration> {
    (worth < 4).then(|| calm * (u32::from(worth) + 1))
}

/// How long a partial may wait for a worker. By then the speaker has said more, so its text
/// is out of date and a newer partial or the final is on the way.
pub const PARTIAL_MAX_WAIT: Duration = Duration::from_millis(1500);

/// The pool's queue and counters at one moment, for `/metrics`. Counters run from the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsrStats {
    pub queued_finals: usize,
    pub queued_partials: usize,
    pub busy_workers: usize,
    pub workers: usize,
    /// How long the oldest queued final has waited (0 when none): the transcription lag.
    pub oldest_wait_ms: u64,
    /// How long each final that ran had waited in the queue, summed (with `finals_done` this
    /// gives the mean wait).
    pub final_wait_ms: u64,
    /// Jobs transcribed without error, by kind.
    pub finals_done: u64,
    pub partials_done: u64,
    /// Finals refused with `QueueFull`.
    pub finals_refused: u64,
    /// Partials refused because transcription is behind, or dropped after waiting too long.
    pub partials_shed: u64,
    /// Finals of live calls shed past capacity (lowest risk first), after waiting too long.
    pub finals_shed: u64,
    /// Finals of calm live calls decoded greedily, not with the beam, because transcription
    /// was behind.
    pub finals_degraded: u64,
    /// Finals that found the pool idle and ran with every worker's threads.
    pub finals_boosted: u64,
    /// Running partials stopped because a final arrived.
    pub partials_aborted: u64,
    /// Queued partials replaced by a newer partial or the final of the same leg.
    pub partials_superseded: u64,
    /// Jobs that ran and ended in an error.
    pub failed: u64,
    /// Audio given to whisper.cpp, over every job that ran.
    pub audio_ms: u64,
    /// Worker wall time over the same jobs.
    pub compute_ms: u64,
}

impl AsrStats {
    /// Worker time per second of audio. Workers run side by side, so the pool keeps up while
    /// this stays below the number of workers.
    pub fn real_time_factor(&self) -> f64 {
        if self.audio_ms == 0 {
            return 0.0;
        }
        self.compute_ms as f64 / self.audio_ms as f64
    }
}

/// A queued job.
struct Task {
    job: AsrJob,
    meta: JobMeta,
    reply: Reply,
    enqueued: Instant,
    /// Breaks ties between equal enqueue times, keeping FIFO exact.
    seq: u64,
    /// Decode greedily rather than with the beam: set at pick time when transcription is
    /// behind (see `Scheduler::pop`).
    greedy: bool,
    /// whisper.cpp threads for this job, set at pick time.
    threads: usize,
    /// Raised to stop a running partial: whisper.cpp polls it between graph nodes.
    abort: Arc<AtomicBool>,
}

impl Task {
    fn same_leg(&self, call_id: &str, leg: Leg) -> bool {
        self.job.leg == leg && &*self.meta.call_id == call_id
    }
}

/// The ordering and bounding policy, without threads or Whisper: the pool holds it under a
/// mutex and passes the time in.
struct Scheduler {
    finals: Vec<Task>,
    partials: Vec<Task>,
    max_finals: usize,
    /// How long a calm live call's final may wait before it is shed (zero: never).
    shed_after: Duration,
    workers: usize,
    busy: usize,
    /// whisper.cpp threads each worker runs a job with.
    threads: usize,
    /// Threads the running jobs hold; never more than `workers * threads`, so the machine is
    /// never oversubscribed (ggml's threads spin at their barriers, and a spinning thread
    /// that waits for a descheduled one wastes its whole time slice).
    threads_used: usize,
    /// Whether a final that finds the pool idle may take every worker's threads.
    boost: bool,
    /// The partials being transcribed, by `seq`, with their abort flags.
    running_partials: Vec<(u64, Arc<AtomicBool>)>,
    /// How many of them have been told to stop and have not yet.
    aborting: usize,
    next_seq: u64,
    closed: bool,
    stats: AsrStats,
}

impl Scheduler {
    fn new(max_finals: usize, workers: usize, shed_after: Duration) -> Self {
        Self {
            finals: Vec::new(),
            partials: Vec::new(),
            max_finals: max_finals.max(1),
            shed_after,
            workers: workers.max(1),
            busy: 0,
            threads: 1,
            threads_used: 0,
            boost: false,
            running_partials: Vec::new(),
            aborting: 0,
            next_seq: 0,
            closed: false,
            stats: AsrStats::default(),
        }
    }

    /// Lets a final that finds the pool idle, with nothing else waiting, run with every
    /// worker's threads: a lone call's words come back sooner, and while the pool is busy each
    /// job keeps `threads`.
    fn with_boost(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.boost = self.workers > 1;
        self
    }

    /// Every thread the pool may run at once.
    fn thread_budget(&self) -> usize {
        self.workers * self.threads
    }

    fn finals_full(&self) -> bool {
        self.finals.len() >= self.max_finals
    }

    /// Queues a job, or says why not; a refused job leaves the queue as it was.
    fn push(
        &mut self,
        job: AsrJob,
        meta: JobMeta,
        reply: Reply,
        now: Instant,
    ) -> Result<(), AsrError> {
        if self.closed {
            return Err(AsrError::Closed);
        }
        self.drop_stale(now);
        match meta.kind {
            JobKind::Final if self.finals_full() => {
                self.stats.finals_refused += 1;
                return Err(AsrError::QueueFull);
            }
            // A partial runs only on spare capacity: with a final waiting, or every worker
            // busy, it would start late and then hold up the finals that arrive behind it
            // (a started job cannot be interrupted). Whole utterances are what detection needs.
            JobKind::Partial
                if !self.finals.is_empty()
                    || self.busy >= self.workers
                    || (self.boost && self.threads_used >= self.thread_budget()) =>
            {
                self.stats.partials_shed += 1;
                return Err(AsrError::Shed);
            }
            _ => {}
        }
        // Both a newer partial and the final cover all the audio of the queued partial.
        self.supersede_partial(&meta.call_id, job.leg);
        let seq = self.next_seq;
        self.next_seq += 1;
        let task = Task {
            job,
            meta,
            reply,
            enqueued: now,
            seq,
            greedy: false,
            threads: 1,
            abort: Arc::new(AtomicBool::new(false)),
        };
        if task.meta.kind == JobKind::Final {
            self.abort_running_partials();
        }
        match task.meta.kind {
            JobKind::Final => self.finals.push(task),
            JobKind::Partial => self.partials.push(task),
        }
        Ok(())
    }

    /// A final has arrived: the partials being transcribed stop, so that the final gets
    /// their worker (and, with the pool otherwise idle, every thread) at once. A partial is an
    /// early look; a final is what detection acts on.
    fn abort_running_partials(&mut self) {
        for (_, flag) in &self.running_partials {
            if !flag.swap(true, Ordering::Relaxed) {
                self.aborting += 1;
                self.stats.partials_aborted += 1;
            }
        }
    }

    /// A running partial has ended, answered or aborted.
    fn partial_ended(&mut self, seq: u64) {
        if let Some(i) = self.running_partials.iter().position(|(s, _)| *s == seq) {
            let (_, flag) = self.running_partials.swap_remove(i);
            if flag.load(Ordering::Relaxed) {
                self.aborting = self.aborting.saturating_sub(1);
            }
        }
    }

    fn supersede_partial(&mut self, call_id: &str, leg: Leg) {
        if let Some(i) = self.partials.iter().position(|t| t.same_leg(call_id, leg)) {
            let old = self.partials.swap_remove(i);
            self.stats.partials_superseded += 1;
            let _ = old.reply.send(Err(AsrError::Superseded));
        }
    }

    /// Sheds what has waited too long: partials past [`PARTIAL_MAX_WAIT`], live finals past
    /// their risk's allowance.
    fn drop_stale(&mut self, now: Instant) {
        let (stale, fresh) = std::mem::take(&mut self.partials)
            .into_iter()
            .partition(|t| now.saturating_duration_since(t.enqueued) > PARTIAL_MAX_WAIT);
        self.partials = fresh;
        self.shed_all(stale);
        let calm = self.shed_after;
        // Shedding a call's words protects the other calls' lag. A call alone in the queue
        // (a burst: audio arriving faster than real time, as after a network stall) competes
        // with nobody, so it keeps every word and merely runs late.
        let first = self.finals.first().map(|t| &t.meta.call_id);
        let alone = self.finals.iter().all(|t| Some(&t.meta.call_id) == first);
        if calm.is_zero() || alone {
            return;
        }
        let (overdue, keep): (Vec<Task>, Vec<Task>) =
            std::mem::take(&mut self.finals).into_iter().partition(|t| {
                t.meta.live
                    && shed_after(worth(&t.meta, t.job.leg), calm)
                        .is_some_and(|limit| now.saturating_duration_since(t.enqueued) > limit)
            });
        self.finals = keep;
        for t in overdue {
            self.stats.finals_shed += 1;
            let _ = t.reply.send(Err(AsrError::Shed));
        }
    }

    fn shed_all(&mut self, tasks: Vec<Task>) {
        for t in tasks {
            self.stats.partials_shed += 1;
            let _ = t.reply.send(Err(AsrError::Shed));
        }
    }

    /// The next job for a free worker, which counts as busy until `finish`; none while a
    /// boosted job holds every thread.
    fn pop(&mut self, now: Instant) -> Option<Task> {
        self.drop_stale(now);
        if self.boost && self.threads_used >= self.thread_budget() {
            return None;
        }
        let mut task = take_next(&mut self.finals).or_else(|| take_next(&mut self.partials))?;
        task.threads = self.threads;
        if task.meta.kind == JobKind::Final {
            let waited = now.saturating_duration_since(task.enqueued);
            self.stats.final_wait_ms += waited.as_millis() as u64;
            // Behind: as many finals still waiting as there are workers. A calm call's words
            // are then decoded greedily, which is cheaper and nearly as good, so that the
            // queue drains before anything has to be shed.
            if task.meta.live
                && !self.shed_after.is_zero()
                && task.meta.risk.rank() == 0
                && self.finals.len() >= self.workers
            {
                task.greedy = true;
                self.stats.finals_degraded += 1;
            }
            // Partials being aborted stop within milliseconds: they do not count as busy.
            if self.boost && self.busy <= self.aborting && self.finals.is_empty() {
                task.threads = self.thread_budget();
                self.stats.finals_boosted += 1;
            }
        }
        if task.meta.kind == JobKind::Partial {
            self.running_partials
                .push((task.seq, Arc::clone(&task.abort)));
        }
        self.threads_used += task.threads;
        self.busy += 1;
        Some(task)
    }

    /// A job is done; `ok` is `None` for a partial that was aborted (counted when aborted).
    fn finish(
        &mut self,
        kind: JobKind,
        ok: impl Into<Option<bool>>,
        audio_ms: u64,
        compute_ms: u64,
        threads: usize,
    ) {
        self.busy = self.busy.saturating_sub(1);
        self.threads_used = self.threads_used.saturating_sub(threads);
        let Some(ok) = ok.into() else {
            return;
        };
        let s = &mut self.stats;
        match (ok, kind) {
            (false, _) => s.failed += 1,
            (true, JobKind::Final) => s.finals_done += 1,
            (true, JobKind::Partial) => s.partials_done += 1,
        }
        s.audio_ms += audio_ms;
        s.compute_ms += compute_ms;
    }

    /// Refuses new work; queued finals are still handed out, queued partials are shed now
    /// since nobody will act on an early look during shutdown.
    fn close(&mut self) {
        self.closed = true;
        let partials = std::mem::take(&mut self.partials);
        self.shed_all(partials);
    }

    fn stats(&self, now: Instant) -> AsrStats {
        let oldest = self.finals.iter().map(|t| t.enqueued).min();
        AsrStats {
            queued_finals: self.finals.len(),
            queued_partials: self.partials.len(),
            busy_workers: self.busy,
            workers: self.workers,
            oldest_wait_ms: oldest
                .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
            ..self.stats.clone()
        }
    }
}

/// Removes the job to run next from one kind's queue: the most worth first (riskier calls,
/// then customers before agents), then the oldest. A scan rather than a heap because a
/// call's level can change while its jobs wait.
fn take_next(queue: &mut Vec<Task>) -> Option<Task> {
    let i = queue
        .iter()
        .enumerate()
        .min_by_key(|(_, t)| {
            (
                std::cmp::Reverse(worth(&t.meta, t.job.leg)),
                t.enqueued,
                t.seq,
            )
        })?
        .0;
    Some(queue.swap_remove(i))
}

/// What the pool's handle and its workers share.
struct Shared {
    sched: Mutex<Scheduler>,
    /// Workers wait here for a job or for shutdown.
    work: Condvar,
    /// `submit` waits here for room among the queued finals.
    room: Condvar,
}

impl Shared {
    fn new(sched: Scheduler) -> Self {
        Self {
            sched: Mutex::new(sched),
            work: Condvar::new(),
            room: Condvar::new(),
        }
    }

    /// The scheduler is left consistent between its calls, none of which panic midway, so a
    /// worker that panicked elsewhere while holding the lock leaves nothing to repair.
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, job: AsrJob, meta: JobMeta) -> Result<AsrReceiver, AsrError> {
        let (reply, rx) = oneshot::channel();
        self.lock().push(job, meta, reply, Instant::now())?;
        self.work.notify_one();
        Ok(rx)
    }

    fn submit(&self, job: AsrJob) -> Result<AsrReceiver, AsrError> {
        let (reply, rx) = oneshot::channel();
        let mut sched = self.lock();
        while sched.finals_full() && !sched.closed {
            sched = self
                .room
                .wait(sched)
                .unwrap_or_else(PoisonError::into_inner);
        }
        sched.push(job, JobMeta::offline(), reply, Instant::now())?;
        drop(sched);
        self.work.notify_one();
        Ok(rx)
    }

    /// The next job, waiting for one; `None` once closed with no final left to run.
    fn next_task(&self) -> Option<Task> {
        let mut sched = self.lock();
        loop {
            if let Some(task) = sched.pop(Instant::now()) {
                drop(sched);
                if task.meta.kind == JobKind::Final {
                    self.room.notify_one();
                }
                return Some(task);
            }
            // Closing sheds the partials, so an empty pop here means no final is left.
            if sched.closed {
                return None;
            }
            sched = self
                .work
                .wait(sched)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A worker's loop after start-up: runs jobs until shutdown has drained the finals.
    fn serve(
        &self,
        mut run: impl FnMut(AsrJob, bool, usize, Option<&AtomicBool>) -> Result<AsrOutput, AsrError>,
    ) {
        while let Some(Task {
            job,
            meta,
            reply,
            greedy,
            threads,
            abort,
            seq,
            ..
        }) = self.next_task()
        {
            let audio_ms = job.samples.len() as u64 * 1000 / PIPELINE_RATE as u64;
            let started = Instant::now();
            let partial = meta.kind == JobKind::Partial;
            let result = run(job, greedy, threads, partial.then_some(&*abort));
            let result = match result {
                Err(_) if abort.load(Ordering::Relaxed) => Err(AsrError::Superseded),
                r => r,
            };
            let aborted = matches!(result, Err(AsrError::Superseded));
            let compute_ms = started.elapsed().as_millis() as u64;
            // Counted before answering, so a caller that reads the stats after its answer
            // sees its own job.
            {
                let mut sched = self.lock();
                if partial {
                    sched.partial_ended(seq);
                }
                let ok = (!aborted).then_some(result.is_ok());
                sched.finish(meta.kind, ok, audio_ms, compute_ms, threads);
            }
            if threads > 1 {
                // Other workers may be waiting for the threads this job held.
                self.work.notify_all();
            }
            // The caller may have gone away (a call ended); its answer is simply not needed.
            let _ = reply.send(result);
        }
    }

    fn close(&self) {
        self.lock().close();
        self.work.notify_all();
        self.room.notify_all();
    }
}

/// Where a job's answer arrives.
pub type AsrReceiver = oneshot::Receiver<Result<AsrOutput, AsrError>>;

/// Where live calls send their utterances: the local [`AsrPool`], or Whisper workers on other
/// machines (`cluster`). Either way `enqueue` never waits, and every accepted job gets exactly
/// one answer.
pub trait Transcriber: Send + Sync {
    /// Queues a job without waiting; see [`AsrPool::enqueue`].
    fn enqueue(&self, job: AsrJob, meta: JobMeta) -> Result<AsrReceiver, AsrError>;
    /// The queue and counters now, for `/metrics`.
    fn stats(&self) -> AsrStats;
}

impl Transcriber for AsrPool {
    fn enqueue(&self, job: AsrJob, meta: JobMeta) -> Result<AsrReceiver, AsrError> {
        AsrPool::enqueue(self, job, meta)
    }

    fn stats(&self) -> AsrStats {
        AsrPool::stats(self)
    }
}

/// A fixed set of transcription threads sharing one model, fed by the scheduler.
pub struct AsrPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    model: Arc<Model>,
}

impl AsrPool {
    /// Starts the workers; each creates its Whisper state before this returns.
    pub fn start(model: Arc<Model>, settings: WorkerSettings) -> Result<Self, AsrError> {
        let workers = settings.workers.max(1);
        let shared = Arc::new(Shared::new(
            Scheduler::new(
                settings.queue,
                workers,
                Duration::from_millis(settings.shed_finals_after_ms),
            )
            .with_boost(settings.threads),
        ));
        let settings = Arc::new(settings);
        let mut pool = Self {
            shared,
            handles: Vec::new(),
            model,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), AsrError>>();
        for i in 0..workers {
            let model = Arc::clone(&pool.model);
            let shared = Arc::clone(&pool.shared);
            let settings = Arc::clone(&settings);
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || worker_main(model, shared, settings, ready));
            match spawned {
                Ok(handle) => pool.handles.push(handle),
                Err(e) => {
                    pool.shutdown();
                    return Err(AsrError::Whisper(format!(
                        "cannot start worker thread: {e}"
                    )));
                }
            }
        }
        drop(ready_tx);
        for _ in 0..pool.handles.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    pool.shutdown();
                    return Err(AsrError::Closed);
                }
            }
        }
        Ok(pool)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Queues a job without ever waiting (safe from async tasks); see the module doc for
    /// when it is refused. Every accepted job gets exactly one answer on the receiver.
    pub fn enqueue(&self, job: AsrJob, meta: JobMeta) -> Result<AsrReceiver, AsrError> {
        self.shared.enqueue(job, meta)
    }

    /// Queues a final, waiting while the final queue is full. Call from a plain thread.
    pub fn submit(&self, job: AsrJob) -> Result<AsrReceiver, AsrError> {
        self.shared.submit(job)
    }

    /// Queues a final or says `QueueFull`, without waiting.
    pub fn try_submit(&self, job: AsrJob) -> Result<AsrReceiver, AsrError> {
        self.enqueue(job, JobMeta::offline())
    }

    /// Transcribes one final and waits for it (plain threads only, not async tasks).
    pub fn transcribe_blocking(&self, job: AsrJob) -> Result<AsrOutput, AsrError> {
        self.submit(job)?
            .blocking_recv()
            .map_err(|_| AsrError::Closed)?
    }

    pub fn stats(&self) -> AsrStats {
        self.shared.lock().stats(Instant::now())
    }

    fn shutdown(&mut self) {
        self.shared.close();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for AsrPool {
    /// Waits for the workers to transcribe every queued final, so a draining daemon loses
    /// no utterance it accepted.
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    model: Arc<Model>,
    settings: Arc<WorkerSettings>,
    /// Decoding parameters per language and strategy (beam or greedy), built once:
    /// whisper-rs leaks the C strings it makes for the language and prompt, so building them
    /// per job would leak per utterance.
    params: Vec<(String, bool, FullParams<'static, 'static>)>,
}

fn worker_main(
    model: Arc<Model>,
    shared: Arc<Shared>,
    settings: Arc<WorkerSettings>,
    ready: std::sync::mpsc::Sender<Result<(), AsrError>>,
) {
    let mut worker = Worker {
        model,
        settings,
        params: Vec::new(),
    };
    // Fail at start rather than on the first call if a state cannot be made at all.
    if let Err(e) = worker.fresh_state() {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    shared.serve(|job, greedy, threads, abort| worker.run(job, greedy, threads, abort));
}

impl Worker {
    /// A new Whisper state for one job. whisper.cpp keeps a random generator in each state
    /// for its temperature fallback, so a reused state makes the text of an utterance depend
    /// on the utterances decoded before it; a fresh one (about 20 ms) makes the same audio
    /// always give the same text.
    fn fresh_state(&self) -> Result<WhisperState, AsrError> {
        self.model
            .ctx
            .create_state()
            .map_err(|e| AsrError::Whisper(format!("cannot create a whisper state: {e}")))
    }

    fn params_for(&mut self, lang: &str, greedy: bool) -> FullParams<'static, 'static> {
        let greedy = greedy || self.settings.beam_size <= 1;
        if let Some((_, _, p)) = self
            .params
            .iter()
            .find(|(l, g, _)| l == lang && *g == greedy)
        {
            return p.clone();
        }
        let strategy = if !greedy {
            SamplingStrategy::BeamSearch {
                beam_size: self.settings.beam_size as i32,
                // whisper.cpp ignores patience; -1 is its "unset".
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 2 }
        };
        let mut p = FullParams::new(strategy);
        p.set_language(Some(leak_str(lang)));
        p.set_translate(false);
        // Each utterance stands alone: carrying text over lets one hallucination seed the next.
        p.set_no_context(true);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(self.settings.no_speech_threshold);
        if greedy && self.settings.beam_size > 1 {
            // The degraded decode (transcription is behind): no retries at higher
            // temperatures either. Each retry decodes the utterance again; on the corpus
            // they change English words not at all and Chinese a little.
            p.set_temperature_inc(0.0);
        }
        if lang == "zh" && !self.settings.zh_prompt.is_empty() {
            p.set_initial_prompt(&self.settings.zh_prompt);
        }
        self.params.push((lang.to_owned(), greedy, p.clone()));
        p
    }

    fn detect(
        &mut self,
        samples: &[f32],
        allowed: &[String],
        threads: usize,
    ) -> Result<(String, f32), AsrError> {
        if !self.model.is_multilingual() {
            return Ok(("en".into(), 1.0));
        }
        // A fresh state encodes the full 30 s window; language detection needs no speed-up
        // from a short context and runs once per leg.
        let mut state = self.fresh_state()?;
        state
            .pcm_to_mel(samples, threads)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        let (_, probs) = state
            .lang_detect(0, threads)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        let best = allowed
            .iter()
            .filter_map(|code| {
                let id = whisper_rs::get_lang_id(code)?;
                Some((code.clone(), *probs.get(id as usize)?))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        best.ok_or_else(|| AsrError::Whisper("no allowed language to detect".into()))
    }

    /// Transcribes one job with `threads` threads; `greedy` overrides the beam
    /// (transcription is behind); `abort`, once raised, stops whisper.cpp early.
    fn run(
        &mut self,
        job: AsrJob,
        greedy: bool,
        threads: usize,
        abort: Option<&AtomicBool>,
    ) -> Result<AsrOutput, AsrError> {
        if job.samples.is_empty() {
            return Err(AsrError::Empty);
        }
        let started = Instant::now();
        let real_len = job.samples.len();
        let mut samples = job.samples;
        if samples.len() < MIN_SAMPLES {
            samples.resize(MIN_SAMPLES, 0.0);
        }
        let (lang, detected) = match &job.lang {
            LangRequest::Fixed(l) => (l.clone(), None),
            LangRequest::Detect(allowed) => {
                let (l, p) = self.detect(&samples, allowed, threads)?;
                (l, Some(p))
            }
        };
        let mut params = self.params_for(&lang, greedy);
        params.set_n_threads(threads as i32);
        if let Some(flag) = abort {
            // SAFETY: the callback only reads the flag, which the caller keeps alive (in the
            // task's Arc) until this job's `full` below has returned; params live no longer.
            unsafe {
                params.set_abort_callback(Some(abort_when_raised));
                params.set_abort_callback_user_data(
                    flag as *const AtomicBool as *mut std::ffi::c_void,
                );
            }
        }
        params.set_audio_ctx(audio_ctx_for(samples.len()) as i32);
        let mut state = self.fresh_state()?;
        state
            .full(params, &samples)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;

        let real_ms = (real_len as u64 * 1000) / PIPELINE_RATE as u64;
        let mut segments = Vec::new();
        let mut dropped = 0;
        for seg in state.as_iter() {
            let text = match seg.to_str_lossy() {
                Ok(t) if lang == "zh" => collapse_loops(&strip_prompt_echo(
                    &tidy(&t, &lang),
                    &self.settings.zh_prompt,
                )),
                Ok(t) => collapse_loops(&tidy(&t, &lang)),
                Err(_) => {
                    dropped += 1;
                    continue;
                }
            };
            if seg.no_speech_probability() > self.settings.no_speech_threshold
                || self.settings.phantoms.is_phantom(&text)
            {
                dropped += 1;
                continue;
            }
            // whisper.cpp times are in 10 ms units from the start of the (padded) input.
            let t0 = (seg.start_timestamp().max(0) as u64 * 10).min(real_ms);
            let t1 = (seg.end_timestamp().max(0) as u64 * 10).clamp(t0, real_ms);
            segments.push(AsrSegment {
                start_ms: job.start_ms + t0,
                end_ms: job.start_ms + t1,
                text,
            });
        }
        Ok(AsrOutput {
            lang,
            detected,
            segments,
            dropped,
            compute_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// whisper.cpp's abort callback: true once the job's flag (its user data) is raised.
unsafe extern "C" fn abort_when_raised(user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `Worker::run` passes a pointer to an `AtomicBool` that outlives the call.
    let flag = unsafe { &*(user_data as *const AtomicBool) };
    flag.load(Ordering::Relaxed)
}

/// The encoder context for an input of `n` samples: about twice its length in encoder frames
/// (50 a second). Exactly its length makes whisper.cpp loop or ramble; the full 1500 frames
/// costs 5-6x more on short utterances for the same text.
pub fn audio_ctx_for(n: usize) -> usize {
    let frames = (n * 50).div_ceil(PIPELINE_RATE as usize);
    (frames * 2).clamp(128, FULL_AUDIO_CTX)
}

/// whisper-rs keeps the language as a `&'a str` it converts on use; the few language codes a
/// worker ever sees are leaked once each (params are cached per language).
fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The language state of one leg: fixed, or detected once on the first long-enough utterance
/// and then kept.
#[derive(Debug, Clone, PartialEq)]
pub enum LegLanguage {
    Fixed(String),
    Pending { allowed: Vec<String>, min_ms: u64 },
}

impl LegLanguage {
    pub fn new(setting: crate::pipeline::asr::LanguageSetting, cfg: &AsrConfig) -> Self {
        match setting.code() {
            Some(code) => LegLanguage::Fixed(code.to_owned()),
            None => LegLanguage::Pending {
                allowed: cfg.detect_languages.clone(),
                min_ms: cfg.detect_min_ms as u64,
            },
        }
    }

    /// What to ask for an utterance of `duration_ms`.
    pub fn request(&self) -> LangRequest {
        match self {
            LegLanguage::Fixed(l) => LangRequest::Fixed(l.clone()),
            LegLanguage::Pending { allowed, .. } => LangRequest::Detect(allowed.clone()),
        }
    }

    /// Records a job's result: a detection on a long-enough utterance fixes the leg.
    pub fn observe(&mut self, duration_ms: u64, out: &AsrOutput) {
        if let LegLanguage::Pending { min_ms, .. } = self
            && out.detected.is_some()
            && duration_ms >= *min_ms
        {
            *self = LegLanguage::Fixed(out.lang.clone());
        }
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, LegLanguage::Fixed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::asr::LanguageSetting;

    #[test]
    fn audio_ctx_is_twice_the_length_within_bounds() {
        assert_eq!(audio_ctx_for(16_000 * 3), 300);
        assert_eq!(audio_ctx_for(16_000), 128);
        assert_eq!(audio_ctx_for(16_000 * 29), 1500);
    }

    fn output(lang: &str, detected: Option<f32>) -> AsrOutput {
        AsrOutput {
            lang: lang.into(),
            detected,
            segments: vec![],
            dropped: 0,
            compute_ms: 0,
        }
    }

    #[test]
    fn leg_language_is_kept_after_one_long_detection() {
        let mut l = LegLanguage::new(LanguageSetting::Auto, &AsrConfig::default());
        assert!(matches!(l.request(), LangRequest::Detect(ref a) if a == &["en", "zh"]));
        // A short utterance's detection is used for it alone.
        l.observe(800, &output("zh", Some(0.6)));
        assert!(!l.is_fixed());
        l.observe(2500, &output("en", Some(0.9)));
        assert_eq!(l, LegLanguage::Fixed("en".into()));
        assert_eq!(l.request(), LangRequest::Fixed("en".into()));
    }

    #[test]
    fn fixed_language_never_detects() {
        let l = LegLanguage::new(LanguageSetting::Zh, &AsrConfig::default());
        assert_eq!(l.request(), LangRequest::Fixed("zh".into()));
    }

    // ---- scheduler: ordering and bounding, no threads, no Whisper ----

    fn job(leg: Leg, id: u64) -> AsrJob {
        AsrJob {
            leg,
            start_ms: id,
            samples: vec![0.0; 160],
            lang: LangRequest::Fixed("en".into()),
        }
    }

    fn meta(call: &str, kind: JobKind) -> JobMeta {
        JobMeta::new(call, kind, CallRisk::default())
    }

    fn push(
        s: &mut Scheduler,
        call: &str,
        leg: Leg,
        kind: JobKind,
        id: u64,
        at: Instant,
    ) -> Result<AsrReceiver, AsrError> {
        push_meta(s, meta(call, kind), leg, id, at)
    }

    fn push_meta(
        s: &mut Scheduler,
        m: JobMeta,
        leg: Leg,
        id: u64,
        at: Instant,
    ) -> Result<AsrReceiver, AsrError> {
        let (reply, rx) = oneshot::channel();
        s.push(job(leg, id), m, reply, at)?;
        Ok(rx)
    }

    /// Pops everything, returning the job ids in pick order.
    fn drain(s: &mut Scheduler, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| s.pop(now).map(|t| t.job.start_ms)).collect()
    }

    fn answered(rx: &mut AsrReceiver) -> Option<String> {
        rx.try_recv().ok().map(|r| match r {
            Ok(_) => "ok".into(),
            Err(e) => format!("{e:?}"),
        })
    }

    const NO_SHED: Duration = Duration::ZERO;
    const C: Leg = Leg::Customer;
    const A: Leg = Leg::Agent;
    use JobKind::{Final, Partial};

    #[test]
    fn finals_are_first_in_first_out() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        for (i, call) in ["a", "b", "a", "c"].into_iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64 * 10);
            push(&mut s, call, C, Final, i as u64, at).unwrap();
        }
        // Equal times fall back on arrival order.
        push(&mut s, "d", C, Final, 4, t0 + Duration::from_millis(30)).unwrap();
        assert_eq!(drain(&mut s, t0), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn finals_go_before_partials() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        // Partials queued on spare capacity, then finals arriving behind them.
        push(&mut s, "a", C, Partial, 0, t0).unwrap();
        push(&mut s, "c", A, Partial, 2, t0 + Duration::from_millis(1)).unwrap();
        push(&mut s, "b", C, Final, 1, t0 + Duration::from_millis(5)).unwrap();
        push(&mut s, "c", C, Final, 3, t0 + Duration::from_millis(7)).unwrap();
        assert_eq!(drain(&mut s, t0 + Duration::from_millis(8)), [1, 3, 0, 2]);
    }

    #[test]
    fn riskier_calls_go_first_even_when_they_rise_while_queued() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        let calm = meta("calm", Final);
        let hot = meta("hot", Final);
        push_meta(&mut s, calm.clone(), C, 0, t0).unwrap();
        push_meta(&mut s, hot.clone(), C, 1, t0 + Duration::from_millis(1)).unwrap();
        push_meta(&mut s, calm.clone(), A, 2, t0 + Duration::from_millis(2)).unwrap();
        push_meta(&mut s, hot.clone(), A, 3, t0 + Duration::from_millis(3)).unwrap();
        assert_eq!(s.pop(t0).map(|t| t.job.start_ms), Some(0));
        // The call escalates after its jobs were queued.
        hot.risk.set(Level::Escalate);
        assert_eq!(drain(&mut s, t0), [1, 3, 2]);

        // Urgency orders partials among themselves too, but never ahead of a final.
        for _ in 0..3 {
            s.finish(Final, true, 1000, 100, 1);
        }
        let hot_partial = JobMeta::new("hot", Partial, hot.risk.clone());
        push(&mut s, "calm", C, Partial, 10, t0).unwrap();
        push_meta(&mut s, hot_partial, C, 11, t0 + Duration::from_millis(1)).unwrap();
        push_meta(&mut s, calm, A, 12, t0 + Duration::from_millis(2)).unwrap();
        assert_eq!(drain(&mut s, t0), [12, 11, 10]);

        // Watch sits between: escalate, then watch, then calm, each oldest first.
        let warm = meta("warm", Final);
        warm.risk.set(Level::Watch);
        push(&mut s, "calm", C, Final, 20, t0).unwrap();
        push_meta(&mut s, warm.clone(), C, 21, t0 + Duration::from_millis(1)).unwrap();
        push_meta(&mut s, hot.clone(), C, 22, t0 + Duration::from_millis(2)).unwrap();
        push_meta(&mut s, warm, A, 23, t0 + Duration::from_millis(3)).unwrap();
        assert_eq!(drain(&mut s, t0), [22, 21, 23, 20]);
    }

    #[test]
    fn past_capacity_finals_are_shed_lowest_worth_first() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Scheduler::new(64, 2, ms(3000));
        let (calm, warm, hot) = (meta("calm", Final), meta("warm", Final), meta("hot", Final));
        warm.risk.set(Level::Watch);
        hot.risk.set(Level::Escalate);
        let mut agent_rx = push_meta(&mut s, calm.clone(), A, 0, t0).unwrap();
        let mut calm_rx = push_meta(&mut s, calm.clone(), C, 1, t0).unwrap();
        let mut warm_rx = push_meta(&mut s, warm.clone(), A, 2, t0).unwrap();
        let mut warm_c_rx = push_meta(&mut s, warm.clone(), C, 3, t0).unwrap();
        let mut hot_rx = push_meta(&mut s, hot.clone(), A, 4, t0).unwrap();
        let mut offline_rx = push_meta(&mut s, JobMeta::offline(), A, 5, t0).unwrap();

        // A calm call's agent: at its allowance it still waits; just past it, it is shed.
        assert_eq!(s.stats(t0 + ms(3000)).finals_shed, 0);
        push(&mut s, "other", C, Final, 6, t0 + ms(3001)).unwrap();
        assert_eq!(answered(&mut agent_rx).as_deref(), Some("Shed"));
        assert_eq!(answered(&mut calm_rx), None);
        assert_eq!(s.stats(t0 + ms(3001)).finals_shed, 1);

        // The calm customer goes after twice the allowance, the watched agent and customer
        // after three and four times; escalating calls and offline jobs never.
        let shed = |s: &mut Scheduler, at: u64| {
            push(s, "probe", A, Final, 99, t0 + ms(at)).unwrap();
            s.stats(t0 + ms(at)).finals_shed
        };
        assert_eq!(shed(&mut s, 6001), 2);
        assert_eq!(answered(&mut calm_rx).as_deref(), Some("Shed"));
        // The probe queued at 6 s is exactly at its allowance: it stays.
        assert_eq!(shed(&mut s, 9001), 3, "the warm agent");
        assert_eq!(answered(&mut warm_rx).as_deref(), Some("Shed"));
        assert_eq!(answered(&mut warm_c_rx), None);
        // Past 12 s: the warm customer, the first probe and the customer queued at 3 s go.
        let left = drain(&mut s, t0 + ms(12_001));
        assert_eq!(answered(&mut warm_c_rx).as_deref(), Some("Shed"));
        // Left, by worth then age: the escalating call's, the offline job, the last probe.
        assert_eq!(left, [4, 5, 99]);
        assert_eq!(
            answered(&mut hot_rx),
            None,
            "popped, not answered by the scheduler"
        );
        assert_eq!(answered(&mut offline_rx), None);
        let stats = s.stats(t0 + ms(12_001));
        assert_eq!((stats.finals_shed, stats.queued_finals), (6, 0));

        // A call that rises to watch while its final waits gets the longer allowance.
        let mut rx = push_meta(&mut s, calm.clone(), A, 7, t0 + ms(13_000)).unwrap();
        push(&mut s, "other", C, Final, 8, t0 + ms(13_000)).unwrap();
        calm.risk.set(Level::Watch);
        assert_eq!(drain(&mut s, t0 + ms(21_000)), [7]);
        assert_eq!(answered(&mut rx), None);
        assert_eq!(
            s.stats(t0 + ms(21_000)).finals_shed,
            7,
            "the other call's customer"
        );

        // A call alone in the queue (a burst faster than real time) keeps every word,
        // however late; once another call queues, its overdue words go.
        let mut rx = push_meta(&mut s, calm.clone(), A, 9, t0 + ms(22_000)).unwrap();
        push_meta(&mut s, calm.clone(), C, 10, t0 + ms(22_000)).unwrap();
        push_meta(&mut s, calm.clone(), C, 11, t0 + ms(60_000)).unwrap();
        assert_eq!(s.stats(t0 + ms(60_000)).finals_shed, 7);
        assert_eq!(answered(&mut rx), None);
        push(&mut s, "late", C, Final, 12, t0 + ms(60_000)).unwrap();
        assert_eq!(drain(&mut s, t0 + ms(60_000)), [11, 12]);
        assert_eq!(s.stats(t0 + ms(60_000)).finals_shed, 9);
        assert_eq!(answered(&mut rx).as_deref(), Some("Shed"));

        // Zero turns shedding off.
        let mut never = Scheduler::new(64, 2, NO_SHED);
        push(&mut never, "calm", C, Final, 7, t0).unwrap();
        assert_eq!(drain(&mut never, t0 + ms(600_000)), [7]);
    }

    #[test]
    fn behind_calm_finals_decode_greedily_risky_and_offline_ones_keep_the_beam() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 2, Duration::from_secs(60));
        let hot = meta("hot", Final);
        hot.risk.set(Level::Escalate);
        push_meta(&mut s, hot, C, 0, t0).unwrap();
        for id in 1..=3 {
            push(&mut s, "calm", C, Final, id, t0).unwrap();
        }
        push_meta(&mut s, JobMeta::offline(), A, 4, t0).unwrap();
        push(&mut s, "calm", A, Final, 5, t0).unwrap();
        // (id, greedy) as picked, with the finals still waiting after each pick.
        let picks: Vec<(u64, bool)> = std::iter::from_fn(|| s.pop(t0))
            .map(|t| (t.job.start_ms, t.greedy))
            .collect();
        // Behind the calm picks 4, 3 and 2 finals still wait (two workers' worth or more);
        // the offline job is never degraded; behind the last, none: the beam again.
        assert_eq!(
            picks,
            [
                (0, false),
                (1, true),
                (2, true),
                (3, true),
                (4, false),
                (5, false)
            ]
        );
        assert_eq!(s.stats(t0).finals_degraded, 3);

        // With the overload policy off, nothing is degraded either.
        let mut off = Scheduler::new(64, 2, NO_SHED);
        for id in 0..4 {
            push(&mut off, "calm", C, Final, id, t0).unwrap();
        }
        assert!(std::iter::from_fn(|| off.pop(t0)).all(|t| !t.greedy));
    }

    #[test]
    fn a_final_alone_takes_every_thread_and_nothing_starts_beside_it() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 2, NO_SHED).with_boost(1);
        push(&mut s, "a", C, Final, 0, t0).unwrap();
        let lone = s.pop(t0).unwrap();
        assert_eq!(
            lone.threads, 2,
            "an idle pool gives a lone final both threads"
        );
        // While it runs: a partial is shed, a final waits even though a worker is free.
        assert!(matches!(
            push(&mut s, "b", C, Partial, 1, t0),
            Err(AsrError::Shed)
        ));
        push(&mut s, "b", C, Final, 2, t0).unwrap();
        push(&mut s, "c", C, Final, 3, t0).unwrap();
        assert!(s.pop(t0).is_none(), "the boosted job holds every thread");
        s.finish(Final, true, 1000, 100, lone.threads);
        // Two waiting: each gets its own thread, side by side.
        let (first, second) = (s.pop(t0).unwrap(), s.pop(t0).unwrap());
        assert_eq!((first.threads, second.threads), (1, 1));
        s.finish(Final, true, 1000, 100, 1);
        // A final arriving while another job runs is not boosted either.
        push(&mut s, "d", C, Final, 4, t0).unwrap();
        assert_eq!(s.pop(t0).unwrap().threads, 1);
        assert_eq!(s.stats(t0).finals_boosted, 1);
        // A final aborts a running partial and, the pool otherwise idle, takes every thread.
        let mut s = Scheduler::new(64, 2, NO_SHED).with_boost(1);
        push(&mut s, "a", C, Partial, 10, t0).unwrap();
        let running = s.pop(t0).unwrap();
        assert!(!running.abort.load(Ordering::Relaxed));
        push(&mut s, "b", A, Final, 11, t0).unwrap();
        assert!(running.abort.load(Ordering::Relaxed), "told to stop");
        let final_ = s.pop(t0).unwrap();
        assert_eq!((final_.job.start_ms, final_.threads), (11, 2));
        s.partial_ended(running.seq);
        s.finish(Partial, None, 1000, 10, running.threads);
        let st = s.stats(t0);
        assert_eq!(
            (st.partials_aborted, st.partials_done, st.failed),
            (1, 0, 0)
        );
        // Another final aborts nothing more and waits for the boosted one's threads.
        push(&mut s, "c", C, Final, 12, t0).unwrap();
        assert!(s.pop(t0).is_none());
        assert_eq!(s.stats(t0).partials_aborted, 1);

        // A single worker has nothing to lend.
        let mut one = Scheduler::new(64, 1, NO_SHED).with_boost(2);
        push(&mut one, "a", C, Final, 0, t0).unwrap();
        assert_eq!(one.pop(t0).unwrap().threads, 2);
        assert_eq!(one.stats(t0).finals_boosted, 0);
    }

    #[test]
    fn newer_partial_replaces_the_older_of_the_same_leg() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        let mut old = push(&mut s, "a", C, Partial, 0, t0).unwrap();
        let mut other_leg = push(&mut s, "a", A, Partial, 1, t0).unwrap();
        let mut other_call = push(&mut s, "b", C, Partial, 2, t0).unwrap();
        let mut new = push(&mut s, "a", C, Partial, 3, t0).unwrap();
        assert_eq!(answered(&mut old).as_deref(), Some("Superseded"));
        assert_eq!(s.stats(t0).queued_partials, 3);
        assert_eq!(s.stats(t0).partials_superseded, 1);
        let mut left = drain(&mut s, t0);
        left.sort();
        assert_eq!(left, [1, 2, 3]);
        for rx in [&mut other_leg, &mut other_call, &mut new] {
            // Handed out, not answered by the scheduler.
            assert_eq!(answered(rx), None);
        }
    }

    #[test]
    fn final_supersedes_the_queued_partial_of_its_leg() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        let mut partial = push(&mut s, "a", C, Partial, 0, t0).unwrap();
        let mut kept = push(&mut s, "a", A, Partial, 1, t0).unwrap();
        push(&mut s, "a", C, Final, 2, t0).unwrap();
        assert_eq!(answered(&mut partial).as_deref(), Some("Superseded"));
        assert_eq!(answered(&mut kept), None);
        assert_eq!(drain(&mut s, t0), [2, 1]);
    }

    #[test]
    fn final_bound_refuses_with_queue_full_and_changes_nothing() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, 8, NO_SHED);
        let mut partial = push(&mut s, "a", C, Partial, 0, t0).unwrap();
        push(&mut s, "a", A, Final, 1, t0).unwrap();
        push(&mut s, "b", A, Final, 2, t0).unwrap();
        let refused = push(&mut s, "a", C, Final, 3, t0);
        assert!(matches!(refused, Err(AsrError::QueueFull)));
        // The refused final did not displace its leg's partial.
        assert_eq!(answered(&mut partial), None);
        let st = s.stats(t0);
        assert_eq!((st.queued_finals, st.finals_refused), (2, 1));
        // A started final frees its place.
        assert!(s.pop(t0).is_some());
        push(&mut s, "a", C, Final, 4, t0).unwrap();
    }

    #[test]
    fn partials_run_on_spare_capacity_only() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 2, NO_SHED);
        push(&mut s, "b", C, Partial, 1, t0).unwrap();
        push(&mut s, "a", C, Final, 0, t0).unwrap();
        // A final is waiting: no new partial.
        let mut shed = push(&mut s, "c", C, Partial, 3, t0).unwrap_err();
        assert!(matches!(shed, AsrError::Shed));
        // A newer partial that is shed leaves the older one of its leg queued.
        shed = push(&mut s, "b", C, Partial, 4, t0).unwrap_err();
        assert!(matches!(shed, AsrError::Shed));
        let st = s.stats(t0);
        assert_eq!((st.queued_partials, st.partials_shed), (1, 2));
        assert_eq!(st.partials_superseded, 0);
        // The final starts; one worker is free and nothing waits: a partial is welcome.
        assert_eq!(s.pop(t0).map(|t| t.job.start_ms), Some(0));
        push(&mut s, "c", C, Partial, 5, t0).unwrap();
        // Both workers busy: no partial, even with nothing queued behind them.
        assert_eq!(s.pop(t0).map(|t| t.job.start_ms), Some(1));
        assert!(matches!(
            push(&mut s, "d", C, Partial, 6, t0),
            Err(AsrError::Shed)
        ));
        s.finish(Final, true, 1000, 100, 1);
        push(&mut s, "d", C, Partial, 7, t0).unwrap();
    }

    #[test]
    fn stale_partials_are_dropped_when_a_worker_picks() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        push(&mut s, "a", C, Partial, 0, t0).unwrap();
        let mut fresh = push(&mut s, "b", C, Partial, 1, t0 + Duration::from_millis(600)).unwrap();
        // Having waited exactly the limit is still fine.
        assert_eq!(
            s.pop(t0 + PARTIAL_MAX_WAIT).map(|t| t.job.start_ms),
            Some(0)
        );
        let mut stale = push(&mut s, "a", C, Partial, 2, t0).unwrap();
        let later = t0 + PARTIAL_MAX_WAIT + Duration::from_millis(1);
        assert_eq!(drain(&mut s, later), [1]);
        assert_eq!(answered(&mut stale).as_deref(), Some("Shed"));
        assert_eq!(answered(&mut fresh), None);
        assert_eq!(s.stats(later).partials_shed, 1);
    }

    #[test]
    fn stats_track_the_queue_and_outcomes() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 3, NO_SHED);
        push(&mut s, "b", C, Partial, 2, t0 + Duration::from_millis(100)).unwrap();
        push(&mut s, "a", C, Final, 0, t0).unwrap();
        push(&mut s, "a", A, Final, 1, t0 + Duration::from_millis(100)).unwrap();
        let now = t0 + Duration::from_millis(250);
        let st = s.stats(now);
        assert_eq!(
            (st.queued_finals, st.queued_partials, st.oldest_wait_ms),
            (2, 1, 250)
        );
        let first = s.pop(now).unwrap();
        assert_eq!(s.stats(now).oldest_wait_ms, 150);
        assert_eq!(s.stats(now).busy_workers, 1);
        s.finish(first.meta.kind, true, 2000, 500, 1);
        let second = s.pop(now).unwrap();
        s.finish(second.meta.kind, false, 1000, 100, 1);
        let third = s.pop(now).unwrap();
        s.finish(third.meta.kind, true, 1000, 400, 1);
        let st = s.stats(now);
        assert_eq!(
            st,
            AsrStats {
                workers: 3,
                // The two finals had waited 250 and 150 ms when picked.
                final_wait_ms: 400,
                finals_done: 1,
                partials_done: 1,
                failed: 1,
                audio_ms: 4000,
                compute_ms: 1000,
                ..AsrStats::default()
            }
        );
        assert_eq!(st.real_time_factor(), 0.25);
    }

    #[test]
    fn closing_refuses_new_work_sheds_partials_and_keeps_finals() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(64, 4, NO_SHED);
        let mut partial = push(&mut s, "b", C, Partial, 1, t0).unwrap();
        push(&mut s, "a", C, Final, 0, t0).unwrap();
        s.close();
        assert_eq!(answered(&mut partial).as_deref(), Some("Shed"));
        assert!(matches!(
            push(&mut s, "a", A, Final, 2, t0),
            Err(AsrError::Closed)
        ));
        assert_eq!(drain(&mut s, t0), [0]);
    }

    // ---- the pool's threads over the scheduler, with a stand-in for Whisper ----

    fn fake_run(
        job: AsrJob,
        _greedy: bool,
        _threads: usize,
        _abort: Option<&AtomicBool>,
    ) -> Result<AsrOutput, AsrError> {
        std::thread::sleep(Duration::from_millis(20));
        let mut out = output("en", None);
        out.segments.push(AsrSegment {
            start_ms: job.start_ms,
            end_ms: job.start_ms,
            text: String::new(),
        });
        Ok(out)
    }

    fn spawn_workers(shared: &Arc<Shared>, n: usize) -> Vec<JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let shared = Arc::clone(shared);
                std::thread::spawn(move || shared.serve(fake_run))
            })
            .collect()
    }

    #[test]
    fn shutdown_finishes_queued_finals_and_sheds_partials() {
        // Jobs are queued before any worker runs, so all are still waiting at close.
        let shared = Arc::new(Shared::new(Scheduler::new(64, 2, NO_SHED)));
        let finals: Vec<_> = (0..6)
            .map(|i| shared.enqueue(job(C, i), meta("a", Final)).unwrap())
            .collect();
        let partial = shared.enqueue(job(A, 99), meta("a", Partial));
        assert!(
            matches!(partial, Err(AsrError::Shed)),
            "6 finals > 2 workers"
        );
        let partial = shared.enqueue(job(A, 99), meta("b", Partial)).unwrap_err();
        assert!(matches!(partial, AsrError::Shed));
        shared.close();
        assert!(matches!(
            shared.enqueue(job(C, 7), meta("a", Final)),
            Err(AsrError::Closed)
        ));
        assert!(matches!(shared.submit(job(C, 8)), Err(AsrError::Closed)));
        for h in spawn_workers(&shared, 2) {
            h.join().unwrap();
        }
        for (i, rx) in finals.into_iter().enumerate() {
            let out = rx.blocking_recv().unwrap().unwrap();
            assert_eq!(out.segments[0].start_ms, i as u64);
        }
        let st = shared.lock().stats(Instant::now());
        assert_eq!(
            (st.finals_done, st.queued_finals, st.busy_workers),
            (6, 0, 0)
        );
    }

    #[test]
    fn closing_answers_queued_partials_shed() {
        let shared = Arc::new(Shared::new(Scheduler::new(64, 2, NO_SHED)));
        let rx = shared.enqueue(job(C, 0), meta("a", Partial)).unwrap();
        shared.close();
        assert!(matches!(rx.blocking_recv(), Ok(Err(AsrError::Shed))));
    }

    #[test]
    fn submit_waits_for_room_while_enqueue_refuses() {
        let shared = Arc::new(Shared::new(Scheduler::new(2, 1, NO_SHED)));
        let queued: Vec<_> = (0..2).map(|i| shared.submit(job(C, i)).unwrap()).collect();
        assert!(matches!(
            shared.enqueue(job(C, 2), JobMeta::offline()),
            Err(AsrError::QueueFull)
        ));
        let workers = spawn_workers(&shared, 1);
        // Blocks until the worker takes a final, then gets in behind the others.
        let last: Vec<_> = (2..6).map(|i| shared.submit(job(C, i)).unwrap()).collect();
        for (i, rx) in queued.into_iter().chain(last).enumerate() {
            let out = rx.blocking_recv().unwrap().unwrap();
            assert_eq!(out.segments[0].start_ms, i as u64);
        }
        let st = shared.lock().stats(Instant::now());
        assert_eq!((st.finals_done, st.finals_refused), (6, 1));
        assert!(st.compute_ms >= 6 * 20);
        shared.close();
        for h in workers {
            h.join().unwrap();
        }
    }
}
