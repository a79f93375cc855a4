//! `callguard watch`: a terminal screen for the live daemon. It connects to `/ws` with a token
//! like any supervisor screen and prints what arrives: each call's transcript lines per leg,
//! the detectors' findings, transfer prompts with their suggested handling, and decisions on
//! them, prefixed by the call; or the raw protocol messages as JSON lines (`--format jsonl`).
//!
//! It only watches: accepting and dismissing prompts is for the supervisor's screen. It does
//! not reconnect; it exits with a clear message when the server closes or refuses it.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::cli::format::format_text;
use crate::domain::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0} is not a websocket URL (expected ws://HOST:PORT/ws)")]
    BadUrl(String),
    #[error("the server refused the token (HTTP {0}); create one with `callguard token create`")]
    Refused(u16),
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the connection to the server failed: {0}")]
    Lost(String),
    #[error("the server closed the connection: {0}")]
    Closed(String),
    #[error("cannot write to the terminal: {0}")]
    Output(#[from] std::io::Error),
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFormat {
    Text,
    Jsonl,
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub url: String,
    pub token: String,
    pub format: WatchFormat,
    /// Only these calls (all when empty).
    pub calls: Vec<String>,
    /// Print partial transcripts too (text format).
    pub partials: bool,
}

/// Watches until the server closes the connection or `stop` resolves.
pub async fn watch(
    opts: WatchOptions,
    out: &mut impl Write,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), WatchError> {
    let mut request = opts
        .url
        .as_str()
        .into_client_request()
        .map_err(|_| WatchError::BadUrl(opts.url.clone()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", opts.token))
        .map_err(|_| WatchError::Refused(401))?;
    request.headers_mut().insert("authorization", bearer);
    let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(c) => c,
        Err(tungstenite::Error::Http(resp)) => {
            return Err(WatchError::Refused(resp.status().as_u16()));
        }
        Err(e) => {
            return Err(WatchError::Connect {
                url: opts.url.clone(),
                message: e.to_string(),
            });
        }
    };
    if !opts.calls.is_empty() {
        let select = serde_json::json!({"type": "unsubscribe", "calls": "all"}).to_string();
        let only = serde_json::json!({"type": "subscribe", "calls": opts.calls}).to_string();
        for cmd in [select, only] {
            ws.send(Message::text(cmd))
                .await
                .map_err(|e| WatchError::Lost(e.to_string()))?;
        }
    }
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            _ = &mut stop => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} ({})", f.reason, u16::from(f.code)))
                    .unwrap_or_else(|| "no reason given".into());
                return Err(WatchError::Closed(why));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(WatchError::Lost(e.to_string())),
            None => return Err(WatchError::Closed("connection ended".into())),
        };
        match opts.format {
            WatchFormat::Jsonl => writeln!(out, "{}", text.as_str())?,
            WatchFormat::Text => {
                if let Some(lines) = render(text.as_str(), opts.partials) {
                    writeln!(out, "{lines}")?;
                }
            }
        }
        out.flush()?;
    }
}

/// One protocol message as terminal text; `None` for what a person need not see.
pub fn render(json: &str, partials: bool) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    let call = v["call_id"].as_str().unwrap_or_default().to_owned();
    let prefix = |body: String| -> String {
        body.lines()
            .map(|l| format!("[{call}] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match v["type"].as_str()? {
        "snapshot" => {
            let you = &v["you"];
            let calls = v["calls"].as_array().map(Vec::len).unwrap_or(0);
            Some(format!(
                "connected as {} ({}), protocol v{}: {calls} active call(s)",
                you["name"].as_str().unwrap_or("?"),
                you["role"].as_str().unwrap_or("?"),
                v["version"]
            ))
        }
        "call_started" => {
            let c = &v["call"];
            let mut line = format!(
                "== call started ({}, legs {})",
                c["source"].as_str().unwrap_or("?"),
                c["legs"]
                    .as_array()
                    .map(|l| l
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("+"))
                    .unwrap_or_default()
            );
            if let Some(agent) = c["agent"].as_str() {
                line.push_str(&format!(", agent {agent}"));
            }
            Some(prefix(line))
        }
        "call_ended" => Some(prefix("== call ended".into())),
        "alert_updated" => {
            let id = v["alert_id"].as_str().unwrap_or("?");
            let d = &v["decision"];
            let line = match v["state"].as_str()? {
                "accepted" => format!(
                    "!! {id} accepted by {} after {:.1} s: a supervisor is taking the call",
                    d["by"].as_str().unwrap_or("?"),
                    d["time_to_ack_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
                ),
                "dismissed" => format!(
                    "-- {id} dismissed by {}{}",
                    d["by"].as_str().unwrap_or("?"),
                    d["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                _ => format!(
                    "!! {id} UNANSWERED for {} s: re-sent to every supervisor",
                    v["open_for_s"]
                ),
            };
            Some(prefix(line))
        }
        "ack" | "pong" => None,
        "error" => Some(format!(
            "server: {} ({})",
            v["message"].as_str().unwrap_or("?"),
            v["code"].as_str().unwrap_or("?")
        )),
        _ => {
            let event: Event = serde_json::from_value(v.clone()).ok()?;
            if let Event::Transcript(t) = &event
                && !t.is_final
            {
                return partials
                    .then(|| prefix(format!("   ... {:<8} {}", t.leg.as_str(), t.text)));
            }
            format_text(&event).map(prefix)
        }
    }
}

/// `callguard watch`: the `/ws` client on a small runtime, until the server goes or Ctrl-C.
pub(super) fn run(args: super::WatchArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let opts = WatchOptions {
        url: args.url,
        token: args.token,
        format: match args.format {
            super::Format::Text => WatchFormat::Text,
            super::Format::Jsonl => WatchFormat::Jsonl,
        },
        calls: args.calls,
        partials: args.partials,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    runtime.block_on(watch(opts, &mut out, super::wait_for_signal()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_and_hub_messages_render_with_the_call() {
        let line = render(
            r#"{"type":"transcript","call_id":"c1","leg":"customer","start_ms":1000,"end_ms":2500,"at_ms":2500,"text":"I want a refund","lang":"en","final":true}"#,
            false,
        )
        .unwrap();
        assert!(line.starts_with("[c1] ["), "{line}");
        assert!(
            line.contains("customer") && line.contains("I want a refund"),
            "{line}"
        );

        let partial = r#"{"type":"transcript","call_id":"c1","leg":"agent","start_ms":0,"end_ms":900,"at_ms":900,"text":"Good mor","lang":"en","final":false}"#;
        assert_eq!(render(partial, false), None);
        assert!(render(partial, true).unwrap().contains("... agent"));

        let accepted = render(
            r#"{"type":"alert_updated","call_id":"c1","alert_id":"c1-a1","state":"accepted","escalated":false,"fired_unix_ms":1,"decision":{"by":"sue","role":"supervisor","at_unix_ms":4301,"time_to_ack_ms":4300},"open_for_s":4}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            accepted,
            "[c1] !! c1-a1 accepted by sue after 4.3 s: a supervisor is taking the call"
        );
        let snap = render(
            r#"{"type":"snapshot","version":2,"you":{"name":"sue","role":"supervisor"},"calls":[]}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            snap,
            "connected as sue (supervisor), protocol v2: 0 active call(s)"
        );
        assert_eq!(render(r#"{"type":"pong"}"#, false), None);
        assert_eq!(render("not json", false), None);
    }
}
