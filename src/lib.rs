//! callguard: listens to customer-service calls, transcribes them locally with Whisper, spots
//! a raised voice, repeated complaints and threats, and prompts a supervisor to take over.
//!
//! Layout (data flows one way, top to bottom):
//!
//! | module       | what it does |
//! |--------------|--------------|
//! | [`config`]   | the TOML pipeline settings: parsed, validated, documented |
//! | [`source`]   | live audio sources: phone-system protocols as pure session state machines |
//! | [`audio`]    | the one audio chunk type, WAV and G.711 decoding, resampling to 16 kHz |
//! | [`segment`]  | voice activity -> utterances, per leg |
//! | [`asr`]      | Whisper: model files (convert, install, validate) and transcription workers |
//! | [`detect`]   | pure detectors: raised voice (energy), lexicon, repeated complaints |
//! | [`risk`]     | pure per-call risk engine and transfer-prompt rules |
//! | [`monitor`]  | one call's text-side detectors and risk engine, wired together (pure) |
//! | [`event`]    | the event enum shared by `analyze`, the websockets and, later, the store |
//! | [`redact`]   | pure PII redaction of transcript text (cards, phones, ID numbers, e-mail, digit runs) before it is stored or streamed |
//! | [`live`]     | one live call as an async task: source events in, events out as audio arrives |
//! | [`analyze`]  | the offline pipeline: a recorded call in, ordered events out |
//! | [`hub`]      | supervisor/agent side: tokens and roles, `/ws` protocol, live state and fan-out, HTTP server, review API (`/api`), web screens, webhook |
//! | [`store`]    | the durable call store: SQLite (WAL) history, full-text search, exports, retention |
//! | [`calls`]    | `calls list`, `show`, `export`: the call store from a terminal; `analyze --store` |
//! | [`metrics`]  | `/metrics`: counters in the Prometheus text format |
//! | [`eval`]     | `eval`: scenario calls against expectations; precision, recall, time-to-alert |
//! | [`watch`]    | `watch`: a terminal screen for the live daemon (a `/ws` client) |
//! | [`app`]      | `serve`: wires the stages, owns shutdown (cancellation token, task tracker) |
//! | [`cli`]      | command-line parsing and the subcommands; `main.rs` only calls it |
//! | [`clock`]    | wall-clock Unix milliseconds, read only at the edges |

pub mod analyze;
pub mod app;
pub mod asr;
pub mod audio;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod detect;
pub mod eval;
pub mod event;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod redact;
pub mod risk;
pub mod segment;
pub mod source;
pub mod store;
pub mod watch;
