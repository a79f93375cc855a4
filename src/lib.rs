//! callguard: listens to customer-service calls, transcribes them locally with Whisper, spots
//! a raised voice, repeated complaints and threats, and prompts a supervisor to take over.
//!
//! Data flows one way: **source -> resample -> segment -> (signals, transcribe) -> risk ->
//! events -> (store, screens)**. The modules are layers along that flow, and each imports only
//! from the rows above its own in this table (its own row included): a module never reaches
//! down the flow. The table is the rule: `layers` (a test) reads it and every `crate::` path
//! in `src/`, and fails on an import of a row below.
//!
//! | layer | module | what it does |
//! |-------|--------|--------------|
//! | domain   | `domain`               | the shared vocabulary: legs and the one audio chunk, call info and source events, signals, alerts and their lifecycle, the `Event` enum, roles, the clock |
//! | pipeline | `pipeline::audio`      | WAV and G.711 decoding, resampling to 16 kHz, frame DSP, legs of a recording |
//! | pipeline | `pipeline::segment`    | voice activity -> utterances, per leg |
//! | pipeline | `pipeline::detect`     | pure detectors: raised voice, lexicon, repeated complaints, turn-taking, speaking rate |
//! | pipeline | `pipeline::risk`       | the pure per-call risk engine and transfer-prompt rules |
//! | pipeline | `pipeline::assess`     | one call's text-side detectors and risk engine, wired together |
//! | pipeline | `pipeline::redact`     | pure PII redaction of events |
//! | pipeline | `pipeline::asr::model` | Whisper model files: catalogue, ggml format, conversion, installation |
//! | pipeline | `pipeline::asr`        | the Whisper workers and the cleaning of their text |
//! | pipeline | `pipeline::config`     | the pipeline stages' settings, gathered |
//! | pipeline | `pipeline::call`       | one live call as an async task: source events in, events out |
//! | pipeline | `pipeline::offline`    | a recorded call in, its ordered events out |
//! | ingest   | `ingest`               | one module per source behind one session trait, with the websocket and TCP glue |
//! | sinks    | `sinks::webhook`       | prompts and decisions POSTed to a phone system or CRM |
//! | sinks    | `sinks::store`         | the SQLite call store, its reads, exports and recordings |
//! | sinks    | `sinks::hub`           | live state and fan-out to screens, the `/ws` protocol, access tokens |
//! | sinks    | `sinks::recorder`      | a call's recording on its own thread |
//! | sinks    | `sinks::egress`        | the one way out of a call: redact, silence, store, show |
//! | cluster  | `cluster`              | NATS JetStream between processes: the connection, the wire formats, the edge's remote Whisper queue, the asr role, calls' events from edges to hubs |
//! | http     | `http`                 | the router: `/ws`, the review API, the screens, `/metrics` |
//! | config   | `config`               | the TOML file: each stage's section, gathered and validated |
//! | daemon   | `daemon`               | `serve`: wiring, hosting calls, housekeeping, shutdown |
//! | cli      | `cli`                  | one file per subcommand; printing lives here; `main.rs` only calls it |

pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod pipeline;
pub mod sinks;

#[cfg(test)]
mod layers;
