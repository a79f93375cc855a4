//! The shared vocabulary: what every stage of callguard talks about, and nothing that does work.
//! Pure data types with their serde forms and small helpers; no I/O (but the wall clock in
//! `clock`), no channels, no settings. Everything else imports from here; this imports nothing
//! else of the crate.
//!
//! | module   | what it holds |
//! |----------|---------------|
//! | `leg`    | call legs, the one [`leg::AudioChunk`] type, the pipeline's sample rate |
//! | `call`   | a call as its source announces it, source events, how calls end, refusals |
//! | `signal` | what detectors find: signal kinds, quotes, raised-voice figures |
//! | `alert`  | risk levels, transfer prompts (alerts) and their lifecycle, QA flags, summaries |
//! | `event`  | the [`event::Event`] enum: everything the pipeline tells the outside world |
//! | `access` | roles, principals, actions and [`access::can`], the one rule of who may do what |
//! | `clock`  | wall-clock Unix milliseconds, and dates read and written in UTC |

pub mod access;
pub mod alert;
pub mod call;
pub mod clock;
pub mod event;
pub mod leg;
pub mod signal;
