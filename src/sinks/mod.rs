//! Where a call's events go once the pipeline has made them: the one egress step (`egress`:
//! redact, silence the recording, store, show), the durable store (`store`), each call's
//! recorder thread (`recorder`), the live hub that fans events out to screens (`hub`), and the
//! outgoing webhook (`webhook`). The daemon's live calls and `analyze --store` both leave
//! through `egress`.
//!
//! | module     | what it does |
//! |------------|--------------|
//! | `webhook`  | transfer prompts and decisions POSTed to a phone system or CRM (`[webhook]`) |
//! | `store`    | the SQLite call store: writes, reads, search, exports, recordings, retention (`[store]`) |
//! | `hub`      | live state and fan-out to screens, the `/ws` protocol, access tokens (`[hub]`) |
//! | `recorder` | a call's recording, written on its own thread from a bounded queue |
//! | `egress`   | the one way out of a call: redact, silence, commit, show |
//!
//! Imports run up this table only: `egress` uses the others, `recorder` writes through
//! `store::recording`, `hub` uses `webhook`, and `store` and `webhook` use nothing here.

pub mod egress;
pub mod hub;
pub mod recorder;
pub mod store;
pub mod webhook;
