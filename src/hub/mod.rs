//! The supervisor and agent side of the daemon: access tokens and roles (`auth`) and the
//! websocket server (`server`).

pub mod auth;
pub mod server;
