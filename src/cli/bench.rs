//! `callguard bench live`: the load harness. It starts a daemon (this binary's `serve` on port
//! 0, in a fresh data folder) or targets a running one (`--url`), keeps N two-party calls from
//! the scenario corpus going at once through a real ingest at real-time pace, watches them all
//! on one supervisor websocket, and reports what a call center cares about: how long after the
//! words their final (and partial) transcript reached the screen, how long after the trigger
//! words the transfer prompt did, whether every expected prompt came, and what the daemon spent
//! (CPU cores, memory) and shed (from its `/metrics`).
//!
//! Load model: N call slots, started evenly over the first `--stagger` seconds so that the
//! calls' utterances do not all end together; each slot plays scenario after scenario, a new
//! call as soon as the last hung up, until `--duration` has passed. Times are wall-clock
//! instants of this process: a call's origin is the moment its first audio frame was sent, so
//! a transcript line ending at `end_ms` of call audio was spoken at origin + `end_ms`.
//!
//! It measures, it does not assert: figures are for the README and for choosing settings.
//! The goal check (`--sweep`) only says which N met the lag goal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::domain::access::Role;
use crate::pipeline::audio::g711::{f32_to_i16, i16_to_ulaw};
use crate::pipeline::audio::wav::read_wav;
use crate::sinks::hub::auth::TokenStore;

/// Samples per 20 ms frame at 8 kHz: what Twilio and a phone-band audio fork send.
const FRAME: usize = 160;
const FRAME_MS: u64 = 20;

/// Which ingest the calls come through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchIngest {
    /// Twilio Media Streams: JSON text frames, base64 mu-law, one frame per track.
    Twilio,
    /// FreeSWITCH mod_audio_fork / jambonz: binary stereo L16.
    Audiofork,
}

#[derive(Debug, clap::Args)]
pub struct BenchLiveArgs {
    /// Concurrent calls.
    #[arg(long, default_value_t = 8, conflicts_with = "sweep")]
    pub calls: usize,
    /// Run at each of these call counts in turn (e.g. 1,4,8,16,32), a fresh daemon for each,
    /// and report the largest that met the goal.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<usize>,
    /// Seconds of load per run; calls under way at the end finish before the figures close.
    #[arg(long, default_value_t = 90)]
    pub duration: u64,
    /// Seconds over which the call slots start.
    #[arg(long, default_value_t = 20)]
    pub stagger: u64,
    /// Ingest protocol.
    #[arg(long, value_enum, default_value = "twilio")]
    pub ingest: BenchIngest,
    /// Folder of scenario calls (NAME.wav with NAME.expect.toml), searched one level deep.
    #[arg(long, default_value = "tests/scenarios")]
    pub scenarios: PathBuf,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Do not tell the daemon each call's language (the phone system's queue usually knows
    /// it); the daemon then detects it.
    #[arg(long)]
    pub no_lang: bool,
    /// Model file for the daemon this starts (passed to `serve --model`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Config file for the daemon this starts (passed to `serve --config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A running daemon instead (http://HOST:PORT); then --ingest-token and --token are needed
    /// and daemon CPU and memory are not measured.
    #[arg(long, requires_all = ["ingest_token", "token"])]
    pub url: Option<String>,
    /// Ingest token for --url.
    #[arg(long)]
    pub ingest_token: Option<String>,
    /// Supervisor token for --url (or for --watch-url).
    #[arg(long)]
    pub token: Option<String>,
    /// Watch the calls on another process than the one they are sent to (http://HOST:PORT):
    /// a cluster hub, so that the lags include the hop from the edge to the hub.
    #[arg(long, requires = "url")]
    pub watch_url: Option<String>,
    /// Goal: final-transcript lag p95 at most this (seconds).
    #[arg(long, default_value_t = 2.5)]
    pub goal_final_p95: f64,
    /// Goal: words-to-prompt p95 at most this (seconds).
    #[arg(long, default_value_t = 2.5)]
    pub goal_prompt_p95: f64,
    /// Also print each run as one JSON line (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// One scenario call, ready to stream.
struct Scenario {
    name: String,
    lang: Option<String>,
    /// When the words that justify a prompt were said (ms of call audio); `None` for a calm
    /// call, which should get no prompt.
    said_by_ms: Option<u64>,
    /// Per 20 ms frame: customer and agent, 8 kHz.
    customer: Vec<f32>,
    agent: Vec<f32>,
}

impl Scenario {
    fn frames(&self) -> usize {
        self.customer.len().min(self.agent.len()) / FRAME
    }
}

fn load_scenarios(dir: &Path, only: Option<&str>) -> Result<Vec<Scenario>> {
    let mut expects = Vec::new();
    for entry in walk(dir)? {
        if entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".expect.toml"))
        {
            expects.push(entry);
        }
    }
    expects.sort();
    let mut out = Vec::new();
    for path in expects {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name = file.trim_end_matches(".expect.toml").to_owned();
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let expect: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let wav = path.with_file_name(format!("{name}.wav"));
        let audio = read_wav(&wav).with_context(|| format!("reading {}", wav.display()))?;
        if audio.sample_rate != 8000 || audio.channels.len() != 2 {
            bail!(
                "{}: the harness streams 8 kHz stereo calls (customer left, agent right)",
                wav.display()
            );
        }
        let alert = expect.get("alert").and_then(|v| v.as_bool()) == Some(true);
        let said_by_ms = expect
            .get("said_by_ms")
            .and_then(|v| v.as_integer())
            .and_then(|v| u64::try_from(v).ok());
        let mut channels = audio.channels.into_iter();
        let (Some(customer), Some(agent)) = (channels.next(), channels.next()) else {
            bail!("{}: expected two channels", wav.display());
        };
        out.push(Scenario {
            name,
            lang: expect
                .get("lang")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            said_by_ms: if alert {
                Some(said_by_ms.unwrap_or(0))
            } else {
                None
            },
            customer,
            agent,
        });
    }
    if out.is_empty() {
        bail!(
            "no scenario calls (NAME.wav + NAME.expect.toml) in {}: run `make fixtures`",
            dir.display()
        );
    }
    Ok(out)
}

/// Files in `dir` and its direct subfolders.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let read = |d: &Path| -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect())
    };
    for p in read(dir)? {
        if p.is_dir() {
            files.extend(read(&p)?);
        } else {
            files.push(p);
        }
    }
    Ok(files)
}

/// The address of an http://HOST:PORT URL.
fn resolve(url: &str) -> Result<SocketAddr> {
    let hostport = url
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .with_context(|| format!("{url} is not http://HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("{url} resolves to no address"))
}

/// A daemon under load: one this harness started, or one it was pointed at.
struct Target {
    addr: SocketAddr,
    ingest_token: String,
    token: String,
    child: Option<std::process::Child>,
    data_dir: Option<PathBuf>,
}

impl Target {
    fn spawn(args: &BenchLiveArgs) -> Result<Target> {
        use std::io::BufRead as _;
        let data_dir = std::env::temp_dir().join(format!(
            "callguard-bench-{}-{}",
            std::process::id(),
            crate::domain::clock::unix_ms()
        ));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut store = TokenStore::open(&data_dir).context("creating the bench's tokens")?;
        let ingest_token = store.create("bench-ingest", Role::Ingest, None, 0)?;
        let token = store.create("bench-screen", Role::Supervisor, None, 0)?;
        let exe = std::env::current_exe().context("finding this program")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(m) = &args.model {
            cmd.arg("--model").arg(m);
        }
        if let Some(c) = &args.config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().context("starting `callguard serve`")?;
        let stderr = child.stderr.take().context("the daemon's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the daemon's stderr to its end (a full pipe would stall the daemon): the
        // address line goes back, warnings and errors are echoed.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("serving on http://") || line.contains("error") {
                    let _ = tx.send(line.clone());
                }
                // Warnings under overload come per utterance; /metrics counts them.
                if line.contains("ERROR") {
                    eprintln!("  daemon: {line}");
                }
            }
        });
        let mut target = Target {
            addr: "127.0.0.1:0".parse()?,
            ingest_token,
            token,
            child: Some(child),
            data_dir: Some(data_dir),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow!("the daemon did not start within 60 s"))?;
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("the daemon failed to start: {line}"))?;
        target.addr = addr
            .parse()
            .with_context(|| format!("reading the daemon's address from {line:?}"))?;
        Ok(target)
    }

    fn remote(args: &BenchLiveArgs, url: &str) -> Result<Target> {
        let addr = resolve(url)?;
        Ok(Target {
            addr,
            ingest_token: args.ingest_token.clone().unwrap_or_default(),
            token: args.token.clone().unwrap_or_default(),
            child: None,
            data_dir: None,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets it drain; a bench daemon that will not stop is killed.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// CPU time (s) and resident memory (current, peak; bytes) of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here), in clock
    // ticks: USER_HZ, 100 on every Linux this runs on.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((
        ticks as f64 / 100.0,
        kb("VmRSS:") * 1024,
        kb("VmHWM:") * 1024,
    ))
}

/// What the harness knows about one call it placed.
struct Placed {
    origin: Instant,
    said_by_ms: Option<u64>,
    prompt_after: Option<f64>,
    ended: bool,
}

#[derive(Default)]
struct Observed {
    calls: HashMap<String, Placed>,
    final_lags: Vec<f64>,
    partial_lags: Vec<f64>,
    /// Prompts on calm calls.
    false_prompts: usize,
}

type Shared = Arc<Mutex<Observed>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The supervisor screen: every message, timed on arrival.
async fn watch(target_addr: SocketAddr, token: String, seen: Shared) -> Result<()> {
    let mut req = format!("ws://{target_addr}/ws").into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("connecting the supervisor screen")?;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg.context("the supervisor screen's connection")? else {
            continue;
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let call = v["call_id"].as_str().unwrap_or_default();
        let mut o = lock(&seen);
        let Some(placed) = o.calls.get(call) else {
            continue;
        };
        let since = |ms: u64| -> f64 {
            let spoken = placed.origin + Duration::from_millis(ms);
            now.saturating_duration_since(spoken).as_secs_f64()
        };
        match v["type"].as_str().unwrap_or_default() {
            "transcript" => {
                let lag = since(v["end_ms"].as_u64().unwrap_or(0));
                if v["final"].as_bool().unwrap_or(true) {
                    o.final_lags.push(lag);
                } else {
                    o.partial_lags.push(lag);
                }
            }
            "alert" => match (placed.said_by_ms, placed.prompt_after) {
                (Some(ms), None) => {
                    let lag = since(ms);
                    if let Some(p) = o.calls.get_mut(call) {
                        p.prompt_after = Some(lag);
                    }
                }
                (None, _) => o.false_prompts += 1,
                _ => {}
            },
            "summary" => {
                if let Some(p) = o.calls.get_mut(call) {
                    p.ended = true;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One call through the ingest at real-time pace.
async fn place_call(
    target: (SocketAddr, String),
    ingest: BenchIngest,
    sc: &Scenario,
    call_id: String,
    send_lang: bool,
    seen: &Shared,
) -> Result<()> {
    let (addr, ingest_token) = target;
    let lang = if send_lang { sc.lang.clone() } else { None };
    let url = match ingest {
        BenchIngest::Twilio => format!("ws://{addr}/ingest/twilio"),
        BenchIngest::Audiofork => format!("ws://{addr}/ingest/audiofork?token={ingest_token}"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("call {call_id}: connecting the ingest"))?;
    let stream = format!("MZ{call_id}");
    let first = match ingest {
        BenchIngest::Twilio => {
            let mut params = json!({"token": ingest_token, "agent": "bench"});
            if let Some(l) = &lang {
                params["lang"] = json!(l);
            }
            json!({
                "event": "start", "sequenceNumber": "1", "streamSid": stream,
                "start": {
                    "accountSid": "ACbench", "streamSid": stream, "callSid": call_id,
                    "tracks": ["inbound", "outbound"], "customParameters": params,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                }
            })
        }
        BenchIngest::Audiofork => {
            let mut meta = json!({"callSid": call_id, "sampleRate": 8000, "mixType": "stereo",
                                  "agent": "bench"});
            if let Some(l) = &lang {
                meta["lang"] = json!(l);
            }
            meta
        }
    };
    ws.send(Message::text(first.to_string())).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pace = tokio::time::interval(Duration::from_millis(FRAME_MS));
    pace.tick().await;
    lock(seen).calls.insert(
        call_id.clone(),
        Placed {
            origin: Instant::now(),
            said_by_ms: sc.said_by_ms,
            prompt_after: None,
            ended: false,
        },
    );
    for i in 0..sc.frames() {
        let span = i * FRAME..(i + 1) * FRAME;
        match ingest {
            BenchIngest::Twilio => {
                for (track, ch) in [("inbound", &sc.customer), ("outbound", &sc.agent)] {
                    let payload: Vec<u8> = ch[span.clone()]
                        .iter()
                        .map(|&x| i16_to_ulaw(f32_to_i16(x)))
                        .collect();
                    let msg = json!({
                        "event": "media", "sequenceNumber": (i * 2 + 2).to_string(),
                        "streamSid": stream,
                        "media": {"track": track, "chunk": (i + 1).to_string(),
                                  "timestamp": (i as u64 * FRAME_MS).to_string(),
                                  "payload": b64.encode(&payload)}
                    });
                    ws.send(Message::text(msg.to_string())).await?;
                }
            }
            BenchIngest::Audiofork => {
                let mut pcm = Vec::with_capacity(FRAME * 4);
                for (c, a) in sc.customer[span.clone()].iter().zip(&sc.agent[span]) {
                    pcm.extend_from_slice(&f32_to_i16(*c).to_le_bytes());
                    pcm.extend_from_slice(&f32_to_i16(*a).to_le_bytes());
                }
                ws.send(Message::binary(pcm)).await?;
            }
        }
        pace.tick().await;
    }
    if ingest == BenchIngest::Twilio {
        let stop = json!({"event": "stop", "sequenceNumber": "999999", "streamSid": stream,
                          "stop": {"accountSid": "ACbench", "callSid": call_id}});
        ws.send(Message::text(stop.to_string())).await?;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The daemon's `/metrics`, as name -> value (labels kept in the name).
async fn metrics(addr: SocketAddr) -> Result<HashMap<String, f64>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// Quantiles of a sample (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            n: v.len(),
            p50: at(0.5),
            p95: at(0.95),
            max: v[v.len() - 1],
        }
    }

    fn show(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!("{:.1} / {:.1} / {:.1} s", self.p50, self.p95, self.max)
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub calls: usize,
    pub placed: usize,
    pub final_lag: Spread,
    pub partial_lag: Spread,
    pub prompt_lag: Spread,
    pub prompts_expected: usize,
    pub prompts_received: usize,
    pub false_prompts: usize,
    pub unfinished_calls: usize,
    pub cpu_cores: Option<f64>,
    pub rss_peak_mb: Option<f64>,
    pub metrics: HashMap<String, f64>,
}

impl RunReport {
    fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(0.0)
    }

    fn meets(&self, args: &BenchLiveArgs) -> bool {
        self.final_lag.n > 0
            && self.final_lag.p95 <= args.goal_final_p95
            && (self.prompt_lag.n == 0 || self.prompt_lag.p95 <= args.goal_prompt_p95)
            && self.prompts_received == self.prompts_expected
            && self.unfinished_calls == 0
    }

    fn to_json(&self) -> Value {
        let s = |x: &Spread| json!({"n": x.n, "p50": x.p50, "p95": x.p95, "max": x.max});
        json!({
            "calls": self.calls, "placed": self.placed,
            "final_lag_s": s(&self.final_lag), "partial_lag_s": s(&self.partial_lag),
            "prompt_lag_s": s(&self.prompt_lag),
            "prompts_expected": self.prompts_expected, "prompts_received": self.prompts_received,
            "false_prompts": self.false_prompts, "unfinished_calls": self.unfinished_calls,
            "cpu_cores": self.cpu_cores, "rss_peak_mb": self.rss_peak_mb,
            "partials_shed": self.metric("callguard_asr_partials_shed_total"),
            "finals_shed": self.metric("callguard_asr_utterances_shed_total"),
            "finals_refused": self.metric("callguard_asr_utterances_dropped_total"),
            "finals_degraded": self.metric("callguard_asr_utterances_degraded_total"),
            "finals_boosted": self.metric("callguard_asr_utterances_boosted_total"),
            "partials_aborted": self.metric("callguard_asr_partials_aborted_total"),
            "calls_refused": self.metric("callguard_calls_refused_total"),
            "asr_real_time_factor": self.metric("callguard_asr_real_time_factor"),
        })
    }
}

async fn run_once(
    args: &BenchLiveArgs,
    calls: usize,
    scenarios: &Arc<Vec<Scenario>>,
) -> Result<RunReport> {
    let target = match &args.url {
        Some(url) => Target::remote(args, url)?,
        None => tokio::task::block_in_place(|| Target::spawn(args))?,
    };
    let seen: Shared = Arc::default();
    let watched = match &args.watch_url {
        Some(url) => resolve(url)?,
        None => target.addr,
    };
    let screen = tokio::spawn(watch(watched, target.token.clone(), Arc::clone(&seen)));
    // The screen's snapshot arrives before any call starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let usage_start = target.pid().and_then(proc_usage);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let stagger = Duration::from_secs(args.stagger).as_secs_f64() / calls.max(1) as f64;
    let run_tag = format!("{:x}", crate::domain::clock::unix_ms() % 0xffff_ffff);
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..calls {
        let scenarios = Arc::clone(scenarios);
        let seen = Arc::clone(&seen);
        let to = (target.addr, target.ingest_token.clone());
        let ingest = args.ingest;
        let send_lang = !args.no_lang;
        let tag = run_tag.clone();
        slots.spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(stagger * slot as f64)).await;
            let mut k = 0;
            let mut errors = Vec::new();
            while Instant::now() < until {
                // Slots walk the corpus from different places, so every scenario is in play.
                let sc = &scenarios[(slot + k * 7) % scenarios.len()];
                let id = format!("bench-{tag}-{slot}-{k}-{}", sc.name);
                if let Err(e) = place_call(to.clone(), ingest, sc, id, send_lang, &seen).await {
                    errors.push(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                k += 1;
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(done) = slots.join_next().await {
        errors.extend(done.unwrap_or_default());
    }
    let streamed = Instant::now();
    let usage_end = target.pid().and_then(proc_usage);
    // The last calls' final utterances and summaries: wait for them, but not for ever.
    let drain_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain_until && lock(&seen).calls.values().any(|c| !c.ended) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = metrics(target.addr).await.unwrap_or_default();
    screen.abort();
    if !errors.is_empty() {
        eprintln!(
            "  {} call(s) failed to stream; first: {}",
            errors.len(),
            errors[0]
        );
    }
    let cpu = match (usage_start, usage_end) {
        (Some(a), Some(b)) => Some((b.0 - a.0) / streamed.duration_since(started).as_secs_f64()),
        _ => None,
    };
    let rss_peak = usage_end.map(|u| u.2 as f64 / 1e6);
    let o = lock(&seen);
    let expected: Vec<&Placed> = o
        .calls
        .values()
        .filter(|c| c.said_by_ms.is_some())
        .collect();
    let prompt_lags: Vec<f64> = expected.iter().filter_map(|c| c.prompt_after).collect();
    let report = RunReport {
        calls,
        placed: o.calls.len(),
        final_lag: Spread::of(&o.final_lags),
        partial_lag: Spread::of(&o.partial_lags),
        prompt_lag: Spread::of(&prompt_lags),
        prompts_expected: expected.len(),
        prompts_received: prompt_lags.len(),
        false_prompts: o.false_prompts,
        unfinished_calls: o.calls.values().filter(|c| !c.ended).count(),
        cpu_cores: cpu,
        rss_peak_mb: rss_peak,
        metrics,
    };
    drop(o);
    tokio::task::block_in_place(|| drop(target));
    Ok(report)
}

fn header() -> String {
    format!(
        "{:>5} {:>6} {:>22} {:>22} {:>7} {:>22} {:>5} {:>6} {:>9} {:>8} {:>7}",
        "calls",
        "finals",
        "final lag p50/p95/max",
        "partial p50/p95/max",
        "prompts",
        "words->prompt",
        "cpu",
        "rss MB",
        "partials",
        "finals",
        "refused"
    ) + &format!(
        "\n{:>5} {:>6} {:>22} {:>22} {:>7} {:>22} {:>5} {:>6} {:>9} {:>8} {:>7}",
        "", "", "", "", "got/exp", "p50/p95/max", "cores", "peak", "shed", "shed", "calls"
    )
}

fn row(r: &RunReport) -> String {
    let opt = |x: Option<f64>, digits: usize| x.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    format!(
        "{:>5} {:>6} {:>22} {:>22} {:>7} {:>22} {:>5} {:>6} {:>9} {:>8} {:>7}",
        r.calls,
        r.final_lag.n,
        r.final_lag.show(),
        r.partial_lag.show(),
        format!("{}/{}", r.prompts_received, r.prompts_expected),
        r.prompt_lag.show(),
        opt(r.cpu_cores, 2),
        opt(r.rss_peak_mb, 0),
        r.metric("callguard_asr_partials_shed_total"),
        r.metric("callguard_asr_utterances_shed_total")
            + r.metric("callguard_asr_utterances_dropped_total"),
        r.metric("callguard_calls_refused_total"),
    )
}

pub(super) fn run(args: BenchLiveArgs) -> Result<()> {
    let scenarios = Arc::new(load_scenarios(&args.scenarios, args.only.as_deref())?);
    let counts = if args.sweep.is_empty() {
        vec![args.calls]
    } else {
        args.sweep.clone()
    };
    if counts.iter().any(|&n| n == 0 || n > 1000) {
        bail!("call counts must be 1..1000");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "== bench live: {} scenario calls, {:?} ingest, {} s per run, {} cores here{}",
        scenarios.len(),
        args.ingest,
        args.duration,
        cores,
        args.model
            .as_ref()
            .map(|m| format!(", model {}", m.display()))
            .unwrap_or_default()
    );
    println!("{}", header());
    let mut best = None;
    for &n in &counts {
        // Ctrl-C or SIGTERM drops the run, and with it the daemon it started.
        let report = runtime.block_on(async {
            tokio::select! {
                r = run_once(&args, n, &scenarios) => r,
                _ = super::wait_for_signal() => Err(anyhow!("interrupted")),
            }
        })?;
        println!("{}", row(&report));
        if args.json {
            println!("{}", report.to_json());
        }
        if report.false_prompts > 0 || report.unfinished_calls > 0 {
            println!(
                "      ({} prompt(s) on calm calls, {} call(s) without a summary)",
                report.false_prompts, report.unfinished_calls
            );
        }
        if report.meets(&args) {
            best = Some(n);
        }
    }
    if counts.len() > 1 {
        match best {
            Some(n) => println!(
                "capacity: {n} call(s) (the largest run with final lag p95 <= {} s, prompt p95 <= {} s, no prompt lost)",
                args.goal_final_p95, args.goal_prompt_p95
            ),
            None => println!("capacity: no run met the goal"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_uses_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Spread::of(&v);
        assert_eq!((s.n, s.p50, s.p95, s.max), (20, 10.0, 19.0, 20.0));
        let one = Spread::of(&[3.5]);
        assert_eq!((one.p50, one.p95, one.max), (3.5, 3.5, 3.5));
        assert_eq!(Spread::of(&[]).n, 0);
    }

    #[test]
    fn reads_cpu_and_memory_of_this_process() {
        let (cpu, rss, peak) = proc_usage(std::process::id()).expect("/proc is readable");
        assert!(cpu >= 0.0);
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
    }
}
