//! The supervisor and agent side of the daemon. Today: access tokens and roles (`auth`); the
//! websocket server and its protocol come with `callguard serve`.

pub mod auth;
