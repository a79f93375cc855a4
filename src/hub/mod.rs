//! The supervisor and agent side of the daemon: access tokens and roles (`auth`), the `/ws`
//! protocol's messages (`protocol`), the live state and fan-out to screens (`state`), the HTTP
//! and websocket server (`server`), the review API for stored calls (`api`), the web screens (`ui`)
//! and the outgoing webhook (`webhook`).

pub mod api;
pub mod auth;
pub mod protocol;
pub mod server;
pub mod state;
pub mod ui;
pub mod webhook;
