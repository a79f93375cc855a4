//! The store on a thread of its own, for async callers. [`StoreWriter::start`] moves a
//! [`Store`] onto a dedicated thread fed by a bounded channel and returns a [`StoreHandle`]
//! (cheap to clone) to send it writes.
//!
//! Awaiting a handle's method waits for room in the channel, not for the write: that is the
//! backpressure, so a call task that awaits `record` before broadcasting an event never gets
//! ahead of the store by more than the channel's capacity. The thread takes whatever is queued
//! (up to [`MAX_BATCH`]) and writes it in one transaction, each write in a savepoint: a write
//! that fails (an event for an unknown call) is logged, counted and rolled back alone, and the
//! writer goes on. A batch whose commit fails is tried once more, then logged and counted as
//! lost. [`StoreHandle::flush`] returns once everything sent before it is committed;
//! [`StoreHandle::add_note`] and [`StoreHandle::sweep`] return their results. When the last
//! handle is dropped the thread writes what is queued and ends; join its handle to wait.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::domain::alert::AlertStatus;
use crate::domain::call::{CallInfo, EndReason};
use crate::domain::event::Event;
use crate::sinks::store::db::Write;
use crate::sinks::store::{CallKey, NoteId, Store, StoreError, SweepReport};

/// Writes that may wait in the channel by default.
pub const DEFAULT_QUEUE: usize = 1024;
/// The most writes in one transaction.
pub const MAX_BATCH: usize = 256;

/// Counters of the writer thread (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct WriterStats {
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

impl WriterStats {
    /// Writes committed.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Writes refused or lost (each logged).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Transactions committed or tried.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// An owned write.
#[derive(Debug)]
enum Op {
    /// The inner write unless one with this id was applied before (at this time).
    Once(String, u64, Box<Op>),
    CallStarted(CallInfo, u64),
    Event(Event),
    AlertDecided(AlertStatus),
    CallEnded(String, EndReason, u64),
    CallResumed(String),
    SetRecording(String, PathBuf),
    AddNote(CallKey, String, String, u64),
    MarkAudioDeleted(CallKey),
    DeleteCall(CallKey),
}

impl Op {
    /// The write; a `Once` gives its inner write (see [`Op::wrap`]).
    fn as_write(&self) -> Write<'_> {
        match self {
            Op::Once(_, _, inner) => inner.as_write(),
            Op::CallStarted(info, t) => Write::CallStarted(info, *t),
            Op::Event(e) => Write::Event(e),
            Op::AlertDecided(s) => Write::AlertDecided(s),
            Op::CallEnded(id, r, t) => Write::CallEnded(id, r, *t),
            Op::CallResumed(id) => Write::CallResumed(id),
            Op::SetRecording(id, p) => Write::SetRecording(id, p),
            Op::AddNote(id, a, t, now) => Write::AddNote(*id, a, t, *now),
            Op::MarkAudioDeleted(id) => Write::MarkAudioDeleted(*id),
            Op::DeleteCall(id) => Write::DeleteCall(*id),
        }
    }

    /// `inner` (this op's [`Op::as_write`]) wrapped for a `Once`.
    fn wrap<'a>(&'a self, inner: &'a Write<'a>) -> Write<'a> {
        match self {
            Op::Once(id, now, _) => Write::Once(id, *now, inner),
            _ => *inner,
        }
    }

    /// For logs: what it was and for which call.
    fn describe(&self) -> String {
        match self {
            Op::Once(id, _, inner) => format!("{} (cluster message {id})", inner.describe()),
            Op::CallStarted(info, _) => format!("call_started {}", info.call_id),
            Op::Event(e) => {
                let kind = match e {
                    Event::Transcript(_) => "transcript",
                    Event::Signal(_) => "signal",
                    Event::Risk(_) => "risk",
                    Event::Alert(_) => "alert",
                    Event::QaFlag(_) => "qa_flag",
                    Event::Summary(_) => "summary",
                };
                format!("{kind} event of {}", e.call_id())
            }
            Op::AlertDecided(s) => format!("alert status {} of {}", s.alert_id, s.call_id),
            Op::CallEnded(id, _, _) => format!("call_ended {id}"),
            Op::CallResumed(id) => format!("call_resumed {id}"),
            Op::SetRecording(id, _) => format!("recording of {id}"),
            Op::AddNote(id, _, _, _) => format!("note on call #{id}"),
            Op::MarkAudioDeleted(id) => format!("audio deleted of call #{id}"),
            Op::DeleteCall(id) => format!("deleting call #{id}"),
        }
    }
}

type Reply = oneshot::Sender<Result<i64, StoreError>>;

// Nearly every message is a write: boxing it to shrink the rare ones would cost an allocation
// per event.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Write(Op, Option<Reply>),
    Sweep {
        now_unix_ms: u64,
        transcript_days: u32,
        audio_days: u32,
        reply: oneshot::Sender<Result<SweepReport, StoreError>>,
    },
    Flush(oneshot::Sender<()>),
}

/// A write that arrives as a cluster message (a hub storing what edges publish): stored at
/// most once per message id, whatever JetStream redelivers.
#[derive(Debug)]
pub enum Replicated {
    CallStarted(CallInfo, u64),
    Event(Event),
    AlertDecided(AlertStatus),
    CallEnded(String, EndReason, u64),
    SetRecording(String, PathBuf),
}

/// Starts the writer thread.
pub struct StoreWriter;

impl StoreWriter {
    /// Moves `store` onto a new thread with a channel of [`DEFAULT_QUEUE`] writes.
    pub fn start(store: Store) -> Result<(StoreHandle, JoinHandle<()>), StoreError> {
        Self::start_with_queue(store, DEFAULT_QUEUE)
    }

    /// The same with a channel of `queue` writes (at least 1).
    pub fn start_with_queue(
        store: Store,
        queue: usize,
    ) -> Result<(StoreHandle, JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let path = store.path().to_owned();
        let thread_stats = Arc::clone(&stats);
        let join = std::thread::Builder::new()
            .name("callguard-store".into())
            .spawn(move || run(store, rx, &thread_stats))
            .map_err(|source| StoreError::Io {
                path,
                what: "cannot start the writer thread",
                source,
            })?;
        Ok((StoreHandle { tx, stats }, join))
    }
}

/// Sends writes to the writer thread. Every method fails with [`StoreError::Closed`] only
/// when the thread has stopped.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Write(op, _) => write!(f, "Write({})", op.describe()),
            Msg::Sweep { .. } => f.write_str("Sweep"),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl StoreHandle {
    async fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.tx.send(msg).await.map_err(|_| StoreError::Closed)
    }

    async fn write(&self, op: Op) -> Result<(), StoreError> {
        self.send(Msg::Write(op, None)).await
    }

    async fn write_and_wait(&self, op: Op) -> Result<i64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Write(op, Some(reply))).await?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Queues a call's start.
    pub async fn call_started(
        &self,
        info: CallInfo,
        started_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(Op::CallStarted(info, started_unix_ms)).await
    }

    /// Stores a call's start and waits until it is committed: the stored call's id.
    pub async fn call_started_committed(
        &self,
        info: CallInfo,
        started_unix_ms: u64,
    ) -> Result<CallKey, StoreError> {
        self.write_and_wait(Op::CallStarted(info, started_unix_ms))
            .await
    }

    /// Queues an event; partial transcripts are dropped here.
    pub async fn record(&self, event: Event) -> Result<(), StoreError> {
        if let Event::Transcript(t) = &event
            && !t.is_final
        {
            return Ok(());
        }
        self.write(Op::Event(event)).await
    }

    /// Writes an event and waits until it is committed: what the daemon calls before it
    /// broadcasts, so that whatever a screen has seen survives a crash. Partial transcripts
    /// are dropped here, at once.
    pub async fn record_committed(&self, event: Event) -> Result<(), StoreError> {
        if let Event::Transcript(t) = &event
            && !t.is_final
        {
            return Ok(());
        }
        self.write_and_wait(Op::Event(event)).await.map(|_| ())
    }

    /// Stores a cluster message's write unless a message with this id was stored before, and
    /// waits until it is committed: `Ok(true)` stored now, `Ok(false)` stored before (a
    /// redelivery; nothing changed). Partial transcripts are not stored (`Ok(false)`).
    pub async fn apply_once(
        &self,
        id: String,
        now_unix_ms: u64,
        write: Replicated,
    ) -> Result<bool, StoreError> {
        let op = match write {
            Replicated::CallStarted(info, t) => Op::CallStarted(info, t),
            Replicated::Event(Event::Transcript(t)) if !t.is_final => return Ok(false),
            Replicated::Event(e) => Op::Event(e),
            Replicated::AlertDecided(s) => Op::AlertDecided(s),
            Replicated::CallEnded(id, r, t) => Op::CallEnded(id, r, t),
            Replicated::SetRecording(id, p) => Op::SetRecording(id, p),
        };
        match self
            .write_and_wait(Op::Once(id, now_unix_ms, Box::new(op)))
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyApplied(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Queues an alert's new status (accepted, dismissed, escalated).
    pub async fn alert_decided(&self, status: AlertStatus) -> Result<(), StoreError> {
        self.write(Op::AlertDecided(status)).await
    }

    /// Queues a call's end.
    pub async fn call_ended(
        &self,
        call_id: String,
        reason: EndReason,
        ended_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(Op::CallEnded(call_id, reason, ended_unix_ms))
            .await
    }

    /// Queues that a call ended as `lost_edge` is live after all.
    pub async fn call_resumed(&self, call_id: String) -> Result<(), StoreError> {
        self.write(Op::CallResumed(call_id)).await
    }

    /// Queues where a call's recording is.
    pub async fn set_recording(&self, call_id: String, path: PathBuf) -> Result<(), StoreError> {
        self.write(Op::SetRecording(call_id, path)).await
    }

    /// Queues that a recording file was deleted.
    pub async fn mark_audio_deleted(&self, id: CallKey) -> Result<(), StoreError> {
        self.write(Op::MarkAudioDeleted(id)).await
    }

    /// Adds a QA note and waits until it is committed.
    pub async fn add_note(
        &self,
        id: CallKey,
        author: String,
        text: String,
        now_unix_ms: u64,
    ) -> Result<NoteId, StoreError> {
        self.write_and_wait(Op::AddNote(id, author, text, now_unix_ms))
            .await
    }

    /// Deletes an ended call's stored contents and waits until that is committed (see
    /// [`Store::delete_call`]).
    pub async fn delete_call(&self, id: CallKey) -> Result<(), StoreError> {
        self.write_and_wait(Op::DeleteCall(id)).await.map(drop)
    }

    /// Runs the retention sweep after everything queued before it (see [`Store::sweep`]).
    pub async fn sweep(
        &self,
        now_unix_ms: u64,
        transcript_days: u32,
        audio_days: u32,
    ) -> Result<SweepReport, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Sweep {
            now_unix_ms,
            transcript_days,
            audio_days,
            reply,
        })
        .await?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Waits until everything sent before it is committed (or failed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Flush(reply)).await?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }
}

fn run(mut store: Store, mut rx: mpsc::Receiver<Msg>, stats: &WriterStats) {
    let mut batch: Vec<Msg> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        process(&mut store, &mut batch, stats);
    }
    tracing::debug!(
        written = stats.written(),
        failed = stats.failed(),
        "call store writer stopped"
    );
}

fn process(store: &mut Store, batch: &mut Vec<Msg>, stats: &WriterStats) {
    let mut ops: Vec<(Op, Option<Reply>)> = Vec::with_capacity(batch.len());
    let mut flushes = Vec::new();
    for msg in batch.drain(..) {
        match msg {
            Msg::Write(op, reply) => ops.push((op, reply)),
            Msg::Flush(reply) => flushes.push(reply),
            Msg::Sweep {
                now_unix_ms,
                transcript_days,
                audio_days,
                reply,
            } => {
                commit(store, &mut ops, stats);
                let result = store.sweep(now_unix_ms, transcript_days, audio_days);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "call store: retention sweep failed");
                }
                let _ = reply.send(result);
            }
        }
    }
    commit(store, &mut ops, stats);
    for reply in flushes {
        let _ = reply.send(());
    }
}

fn commit(store: &mut Store, ops: &mut Vec<(Op, Option<Reply>)>, stats: &WriterStats) {
    if ops.is_empty() {
        return;
    }
    let mut attempt = 0;
    let (results, committed) = loop {
        attempt += 1;
        let inner: Vec<Write<'_>> = ops.iter().map(|(op, _)| op.as_write()).collect();
        let writes: Vec<Write<'_>> = ops
            .iter()
            .zip(&inner)
            .map(|((op, _), w)| op.wrap(w))
            .collect();
        let (results, committed) = store.apply(&writes);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match committed {
            Err(e) if attempt < 2 => {
                tracing::warn!(error = %e, writes = ops.len(), "call store: batch failed, retrying");
            }
            committed => break (results, committed),
        }
    };
    match committed {
        Ok(()) => {
            let mut results = results.into_iter();
            for (op, reply) in ops.drain(..) {
                let result = results.next().unwrap_or(Err(StoreError::Closed));
                match &result {
                    Ok(_) => {
                        stats.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(StoreError::AlreadyApplied(id)) => {
                        tracing::debug!(%id, "cluster message stored before: skipped");
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(write = %op.describe(), error = %e, "call store: write refused");
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
        Err(e) => {
            stats.failed.fetch_add(ops.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, writes = ops.len(), "call store: batch lost");
            let why = e.to_string();
            for (_, reply) in ops.drain(..) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(StoreError::Lost(why.clone())));
                }
            }
        }
    }
}
