//! The daemon in-process for the `serve` tests: `callguard::daemon::run` on port 0 with a fresh
//! data folder, the real model and English, with the tokens a test asks for (or started again
//! on the address and data folder of one that stopped), plus the small
//! clients the tests share (a screen's websocket, a plain HTTP GET, reading a call to its end).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use callguard::config::Config;
use callguard::daemon::{ServeOptions, run};
use callguard::domain::access::Role;
use callguard::pipeline::asr::{AsrConfig, LanguageSetting};
use callguard::sinks::hub::auth::TokenStore;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The default pipeline with the real model.
pub fn config() -> Config {
    Config {
        asr: AsrConfig {
            model: super::model(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Port 0, English (the synthetic calls are), nothing else.
pub fn options() -> ServeOptions {
    ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        lang: Some(LanguageSetting::En),
        ..Default::default()
    }
}

pub struct Daemon {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    tokens: BTreeMap<String, String>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    data: PathBuf,
    /// The temporary data folder `start` made, removed once the daemon and any restart of it
    /// are gone; none for `start_at`, whose folder belongs to the caller.
    temp: Option<tempfile::TempDir>,
}

/// Starts the daemon with `tokens` (name, role, agent binding) made in a fresh data folder.
pub async fn start(
    cfg: Config,
    mut opts: ServeOptions,
    tokens: &[(&str, Role, Option<&str>)],
) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(data.path()).unwrap();
    let tokens = tokens
        .iter()
        .map(|(name, role, agent)| {
            let t = store
                .create(name, *role, agent.map(str::to_owned), 0)
                .unwrap();
            (name.to_string(), t)
        })
        .collect();
    opts.data_dir = data.path().to_owned();
    let mut d = start_at(cfg, opts, tokens).await;
    d.temp = Some(data);
    d
}

/// Starts the daemon on `opts.listen` with `opts.data_dir` as they are: no new folder and no
/// new tokens. `tokens` (name to secret) are the ones already in that folder's token file,
/// for `Daemon::token`.
pub async fn start_at(cfg: Config, opts: ServeOptions, tokens: BTreeMap<String, String>) -> Daemon {
    let data = opts.data_dir.clone();
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(run(cfg, opts, shutdown.clone(), Some(ready_tx)));
    let addr = match ready_rx.await {
        Ok(addr) => addr,
        Err(_) => panic!("the daemon did not start: {:?}", server.await),
    };
    Daemon {
        addr,
        shutdown,
        tokens,
        server,
        data,
        temp: None,
    }
}

/// A daemon that was stopped with its data folder kept, to be started again where it was.
pub struct Stopped {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    tokens: BTreeMap<String, String>,
    temp: Option<tempfile::TempDir>,
}

impl Stopped {
    /// A new daemon on the same address and data folder (its store, recordings and tokens),
    /// with `opts` for everything else.
    pub async fn restart(self, cfg: Config, mut opts: ServeOptions) -> Daemon {
        opts.listen = self.addr;
        opts.data_dir = self.data_dir;
        let mut d = start_at(cfg, opts, self.tokens).await;
        d.temp = self.temp;
        d
    }
}

impl Daemon {
    /// The daemon's data folder (store, recordings, tokens).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    pub fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }

    /// A screen on `/ws` with the named token.
    pub async fn screen(&self, name: &str) -> Ws {
        let url = format!("ws://{}/ws?token={}", self.addr, self.token(name));
        tokio_tungstenite::connect_async(url)
            .await
            .expect("screen connects")
            .0
    }

    pub async fn get(&self, path: &str) -> String {
        http_get(self.addr, path).await
    }

    /// Drains and stops the daemon; it must return Ok within a minute.
    pub async fn stop(self) {
        drop(self.stop_keeping_data().await);
    }

    /// Drains and stops the daemon like `stop`, keeping its data folder for `Stopped::restart`.
    pub async fn stop_keeping_data(self) -> Stopped {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.server)
            .await
            .expect("drained in time")
            .unwrap()
            .unwrap();
        Stopped {
            addr: self.addr,
            data_dir: self.data,
            tokens: self.tokens,
            temp: self.temp,
        }
    }
}

/// A plain HTTP GET over TCP (no HTTP client needed for one request).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Reads a screen until a call ends: every call started (by `call_started`, or already in the
/// snapshot), the types of everything seen, and the first alert.
pub async fn watch_call<S>(watcher: &mut S) -> (Vec<Value>, Vec<String>, Option<Value>)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut kinds = Vec::new();
    let mut started = Vec::new();
    let mut alert = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let next = tokio::time::timeout_at(deadline, watcher.next())
            .await
            .unwrap_or_else(|_| panic!("call did not end in time: {kinds:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("watcher socket ended: {next:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let kind = v["type"].as_str().unwrap().to_owned();
        if kind == "call_started" {
            started.push(v.clone());
        }
        // A screen's registration can trail its upgrade: a call that began in between is in
        // the snapshot instead of a `call_started`.
        if kind == "snapshot" {
            for c in v["calls"].as_array().into_iter().flatten() {
                started
                    .push(serde_json::json!({"call_id": c["call"]["call_id"], "call": c["call"]}));
            }
        }
        if kind == "alert" && alert.is_none() {
            alert = Some(v.clone());
        }
        kinds.push(kind.clone());
        if kind == "call_ended" {
            return (started, kinds, alert);
        }
    }
}

/// An HTTP response as the tests read it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh TCP connection (`Connection: close`), with a chunked
/// body decoded: a real client, small enough to see what goes over the wire.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// A phone call as Twilio Media Streams sends it to `/ingest/twilio`.
pub struct TwilioCall {
    /// The CallSid (the call's id in callguard).
    pub call: String,
    pub agent: String,
    /// Customer left, agent right, 8 kHz.
    pub wav: PathBuf,
    /// After the recording, silence is streamed until this file exists (at most two minutes),
    /// so a test can keep the call up until it has acted on it; `None` hangs up at once.
    pub hold: Option<PathBuf>,
}

/// Streams `c` with the ingest token in its parameters: one 20 ms mu-law frame per track at
/// real pace, then the `stop` message. `started` gets the instant the audio begins (the
/// words' wall-clock origin).
pub async fn twilio_stream(
    addr: SocketAddr,
    ingest: String,
    c: TwilioCall,
    started: Option<tokio::sync::oneshot::Sender<std::time::Instant>>,
) {
    use base64::Engine as _;
    use callguard::pipeline::audio::g711::{f32_to_i16, i16_to_ulaw};
    use futures_util::SinkExt;
    use serde_json::json;

    let stream = format!("MZ{}", c.call);
    let audio = callguard::pipeline::audio::wav::read_wav(&c.wav).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/twilio"))
        .await
        .unwrap();
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream,
        "start": {
            "accountSid": "AC1", "streamSid": stream, "callSid": c.call,
            "tracks": ["inbound", "outbound"],
            "customParameters": {"token": ingest, "agent": c.agent},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    });
    ws.send(Message::text(start.to_string())).await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let frames = audio.channels[0].len() / 160;
    let silence = vec![i16_to_ulaw(0); 160];
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut started = started;
    let held_from = std::time::Instant::now();
    let mut i = 0;
    loop {
        pace.tick().await;
        if let Some(tx) = started.take() {
            let _ = tx.send(std::time::Instant::now());
        }
        if i >= frames {
            let released = c.hold.as_ref().is_none_or(|h| h.exists());
            if released || held_from.elapsed() > Duration::from_secs(120) {
                break;
            }
        }
        for (track, ch) in [("inbound", 0), ("outbound", 1)] {
            let payload: Vec<u8> = if i < frames {
                audio.channels[ch][i * 160..(i + 1) * 160]
                    .iter()
                    .map(|&x| i16_to_ulaw(f32_to_i16(x)))
                    .collect()
            } else {
                silence.clone()
            };
            let msg = json!({
                "event": "media", "sequenceNumber": (i * 2 + 2).to_string(), "streamSid": stream,
                "media": {"track": track, "chunk": (i + 1).to_string(),
                          "timestamp": (i * 20).to_string(), "payload": b64.encode(&payload)}
            });
            ws.send(Message::text(msg.to_string())).await.unwrap();
        }
        i += 1;
    }
    ws.send(Message::text(
        json!({"event": "stop", "sequenceNumber": "999999", "streamSid": stream,
               "stop": {"accountSid": "AC1", "callSid": c.call}})
        .to_string(),
    ))
    .await
    .unwrap();
    let _ = ws.close(None).await;
}
