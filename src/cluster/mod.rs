//! Several callguard processes as one, over NATS JetStream (`docs/cluster.md` has the subjects,
//! streams, formats and settings). This module is the transport only: the connection with its
//! credentials, the streams, the edge's remote Whisper queue ([`remote::RemoteAsr`]), the
//! asr role's worker loop ([`node::run_asr_node`]), and calls' events from edges to hubs with
//! the hub's store-once loop and the edges' liveness ([`events`]). What a call does with its
//! transcripts is the pipeline's business, and which roles run is the daemon's.
//!
//! Without `[cluster] nats` (or `--nats`) none of this runs: one process, nothing to connect.

pub mod events;
pub mod node;
pub mod remote;
pub mod wire;

use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

/// The JetStream stream holding utterances waiting for a Whisper node (a work queue: each is
/// taken by one node, and removed once that node acks it).
pub const UTTERANCE_STREAM: &str = "CALLGUARD_UTTERANCES";
/// Finals go to `callguard.utt.final.<rank>` (0 calm, 1 watch, 2 escalate): one durable
/// consumer per rank, so that asr nodes take the riskiest calls' words first.
pub const FINAL_SUBJECT: &str = "callguard.utt.final";
/// Partials are plain NATS messages to a queue group: worthless once late, never stored.
pub const PARTIAL_SUBJECT: &str = "callguard.utt.partial";
/// The queue group every asr node's partial subscription joins.
pub const ASR_GROUP: &str = "callguard-asr";
/// Answers go to `callguard.asr.reply.<edge node>`, stored in [`REPLY_STREAM`] so that an
/// answer published while its edge is reconnecting waits for it instead of vanishing.
pub const REPLY_PREFIX: &str = "callguard.asr.reply";
/// The JetStream stream holding answers until their edge has read them.
pub const REPLY_STREAM: &str = "CALLGUARD_REPLIES";

/// The consumer (shared by every asr node) for finals of one rank.
pub fn final_consumer(rank: u8) -> String {
    format!("asr-final-{rank}")
}

/// Which parts of callguard a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process; with NATS, its Whisper workers also serve other edges.
    All,
    /// Ingest, segmentation, detection, risk, screens and the store; utterances go to the
    /// asr nodes over NATS.
    Edge,
    /// Whisper workers only, taking utterances from NATS.
    Asr,
    /// Screens (`/ws`), the API, `/metrics` and the store, for every edge's calls, fed from
    /// the event stream; no ingest, no model.
    Hub,
}

/// The cluster section (`[cluster]`). Credentials may instead come from the environment
/// (`CALLGUARD_NATS_USER`, `CALLGUARD_NATS_PASSWORD`, `CALLGUARD_NATS_TOKEN`,
/// `CALLGUARD_NATS_NKEY`), which wins;
/// they are never logged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://10.0.0.5:4222`; empty = no cluster (one process).
    pub nats: String,
    /// NATS user name and password; both empty = none.
    pub user: String,
    pub password: String,
    /// NATS token; empty = none.
    pub token: String,
    /// NATS NKey seed (`SU...`, the user's private seed from `nk -gen user`); empty = none.
    /// Wins over the token and the user/password.
    pub nkey: String,
    /// ms an asr node may hold an utterance without word before JetStream gives it to another
    /// node (1000..600000). Nodes at work say so every third of this, so only a dead node's
    /// utterances move.
    pub ack_wait_ms: u64,
    /// ms an edge waits for a final's transcript before giving up on it (5000..3600000): the
    /// bound on how long a call's words may wait when no asr node is running.
    pub final_timeout_ms: u64,
    /// ms an edge waits for a partial (500..60000); a late partial is worthless.
    pub partial_timeout_ms: u64,
    /// ms without an edge's heartbeat (sent every 2 s) before a hub marks its calls
    /// `lost_edge` (3000..600000).
    pub edge_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: String::new(),
            user: String::new(),
            password: String::new(),
            token: String::new(),
            nkey: String::new(),
            ack_wait_ms: 15_000,
            final_timeout_ms: 120_000,
            partial_timeout_ms: 3_000,
            edge_timeout_ms: 10_000,
        }
    }
}

/// Passwords and tokens are never printed.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nats", &self.nats)
            .field("user", &self.user)
            .field("password", &(!self.password.is_empty()).then_some("<set>"))
            .field("token", &(!self.token.is_empty()).then_some("<set>"))
            .field("nkey", &(!self.nkey.is_empty()).then_some("<set>"))
            .field("ack_wait_ms", &self.ack_wait_ms)
            .field("final_timeout_ms", &self.final_timeout_ms)
            .field("partial_timeout_ms", &self.partial_timeout_ms)
            .field("edge_timeout_ms", &self.edge_timeout_ms)
            .finish()
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.nats.is_empty()
            && !self.nats.starts_with("nats://")
            && !self.nats.starts_with("tls://")
        {
            return Err(format!(
                "cluster.nats must be a nats:// or tls:// URL, not {:?}",
                self.nats
            ));
        }
        if !self.nkey.is_empty() && !self.nkey.starts_with("SU") {
            // Never echo it: it is a private key.
            return Err("cluster.nkey must be a user seed (it starts with SU)".into());
        }
        if self.user.is_empty() != self.password.is_empty() {
            return Err("cluster.user and cluster.password go together".into());
        }
        let within = |v: u64, lo: u64, hi: u64, name: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("cluster.{name} must be {lo}..{hi}, not {v}"))
            }
        };
        within(self.ack_wait_ms, 1000, 600_000, "ack_wait_ms")?;
        within(self.final_timeout_ms, 5000, 3_600_000, "final_timeout_ms")?;
        within(self.partial_timeout_ms, 500, 60_000, "partial_timeout_ms")?;
        within(self.edge_timeout_ms, 3000, 600_000, "edge_timeout_ms")?;
        Ok(())
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }
}

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS JetStream {what}: {message} (is the server started with JetStream, -js?)")]
    JetStream { what: &'static str, message: String },
    #[error("cannot subscribe to NATS subject {subject}: {message}")]
    Subscribe { subject: String, message: String },
}

/// Subscribes to `subject` (plain NATS; a `group` makes it a queue subscription).
pub async fn subscribe(
    client: &async_nats::Client,
    subject: String,
    group: Option<&str>,
) -> Result<async_nats::Subscriber, ClusterError> {
    let subscribed = match group {
        Some(g) => client.queue_subscribe(subject.clone(), g.to_owned()).await,
        None => client.subscribe(subject.clone()).await,
    };
    subscribed.map_err(|e| ClusterError::Subscribe {
        subject,
        message: e.to_string(),
    })
}

fn env_or(name: &str, configured: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| configured.to_owned())
}

/// Connects as `node`. The client reconnects by itself for as long as the process runs,
/// buffering what is published meanwhile (bounded by the client).
pub async fn connect(cfg: &ClusterConfig, node: &str) -> Result<async_nats::Client, ClusterError> {
    let user = env_or("CALLGUARD_NATS_USER", &cfg.user);
    let password = env_or("CALLGUARD_NATS_PASSWORD", &cfg.password);
    let token = env_or("CALLGUARD_NATS_TOKEN", &cfg.token);
    let nkey = env_or("CALLGUARD_NATS_NKEY", &cfg.nkey);
    let mut opts = if !nkey.is_empty() {
        async_nats::ConnectOptions::with_nkey(nkey)
    } else if !token.is_empty() {
        async_nats::ConnectOptions::with_token(token)
    } else if !user.is_empty() {
        async_nats::ConnectOptions::with_user_and_password(user, password)
    } else {
        async_nats::ConnectOptions::new()
    };
    let url = cfg.nats.clone();
    opts = opts
        .name(format!("callguard-{node}"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            tracing::info!(%event, "nats");
        });
    opts.connect(url.as_str())
        .await
        .map_err(|e| ClusterError::Connect {
            url: url.clone(),
            message: e.to_string(),
        })
}

/// Creates (or finds) the utterance stream and its consumers; any node may call it, in any
/// order, as often as it likes.
pub async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
) -> Result<jetstream::stream::Stream, ClusterError> {
    let err = |what| move |e: String| ClusterError::JetStream { what, message: e };
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: UTTERANCE_STREAM.into(),
            subjects: vec![format!("{FINAL_SUBJECT}.*")],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            // An utterance nobody took in 10 minutes belongs to a call long over.
            max_age: Duration::from_secs(600),
            // Republishing after a lost acknowledgement stores the utterance once.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| err("stream")(e.to_string()))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: REPLY_STREAM.into(),
        subjects: vec![format!("{REPLY_PREFIX}.*")],
        storage: jetstream::stream::StorageType::File,
        // Read within seconds by a live edge; kept a while for one reconnecting.
        max_age: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .map_err(|e| err("reply stream")(e.to_string()))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: events::EVENT_STREAM.into(),
        subjects: vec!["callguard.evt.>".into()],
        storage: jetstream::stream::StorageType::File,
        // A hub down for less than a day catches up on everything it missed.
        max_age: Duration::from_secs(24 * 3600),
        // An event republished after a lost acknowledgement, or a prompt decided on two
        // screens at once, is stored once.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| err("event stream")(e.to_string()))?;
    for rank in 0..3u8 {
        let name = final_consumer(rank);
        stream
            .get_or_create_consumer(
                &name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{FINAL_SUBJECT}.{rank}"),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait(),
                    // An utterance that kills its worker every time is not retried forever.
                    max_deliver: 5,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err("consumer")(e.to_string()))?;
    }
    Ok(stream)
}

/// A name for this process when none is given: host and process id.
pub fn default_node_name(role: Role) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let role = match role {
        Role::All => "all",
        Role::Edge => "edge",
        Role::Asr => "asr",
        Role::Hub => "hub",
    };
    format!("{role}-{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_and_secrets_never_printed() {
        assert_eq!(ClusterConfig::default().validate(), Ok(()));
        let c = ClusterConfig {
            nats: "http://x".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("nats://"));
        let c = ClusterConfig {
            nats: "nats://x:4222".into(),
            user: "u".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("go together"));
        let c = ClusterConfig {
            ack_wait_ms: 10,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("ack_wait_ms"));
        let c = ClusterConfig {
            nats: "nats://x:4222".into(),
            user: "u".into(),
            password: "hunter2".into(),
            token: "s3cret".into(),
            nkey: "SUAPRIVATESEED".into(),
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("s3cret")
                && !shown.contains("PRIVATESEED"),
            "{shown}"
        );
    }
}
