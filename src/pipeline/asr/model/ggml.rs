//! whisper.cpp's ggml model file format: writing it and checking it before whisper.cpp loads it.
//!
//! whisper.cpp trusts its model file: a wrong tensor dimension count or an unknown tensor type
//! makes it read out of bounds or abort the whole process, and a truncated download only shows
//! up as an obscure load failure. [`validate`] therefore walks the complete file (header, mel
//! filters, vocabulary, every tensor record) and compares every tensor with the set whisper.cpp
//! will ask for, so that problems are reported with an actionable message before whisper.cpp
//! sees the file. [`GgmlWriter`] writes the same format for the converter.
//!
//! This module does not look at tensor values (beyond their sizes) and does not load models.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// `ggml` in ASCII, read as a little-endian i32.
pub const MAGIC: u32 = 0x6767_6d6c;
/// Frequency bins of the mel filters whisper.cpp expects (Whisper's n_fft 400 / 2 + 1).
pub const MEL_BINS: usize = 201;
/// whisper.cpp stores the quantisation format version in ftype as `version * 1000 + ftype`.
const FTYPE_VERSION_FACTOR: i32 = 1000;
/// Real Whisper tokens are at most 128 bytes; anything far longer means a foreign file.
const MAX_TOKEN_LEN: i32 = 1024;
/// Longest tensor name whisper.cpp uses is ~40 bytes.
const MAX_NAME_LEN: i32 = 256;

/// The 11 hyperparameters at the start of a whisper.cpp model file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        Self {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// Whisper's multilingual vocabulary has 51865 tokens (51866 for large-v3); English-only
    /// models have 51864.
    pub fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The weight type implied by `ftype`, or why it is not one whisper.cpp can load.
    pub fn weight_type(&self) -> Result<TensorType, String> {
        if self.ftype < 0 {
            return Err(format!("ftype {} is negative", self.ftype));
        }
        let ft = self.ftype % FTYPE_VERSION_FACTOR;
        let ty = match ft {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            7 => TensorType::Q8_0,
            8 => TensorType::Q5_0,
            9 => TensorType::Q5_1,
            10 => TensorType::Q2K,
            11 => TensorType::Q3K,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            _ => {
                return Err(format!(
                    "ftype {} is not a weight type whisper.cpp loads",
                    self.ftype
                ));
            }
        };
        Ok(ty)
    }

    /// Checks the ranges a real Whisper model has, so a foreign file with the same magic (any
    /// other ggml model) is recognised here rather than by whisper.cpp.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("n_vocab", self.n_vocab, 1_000_000),
            ("n_audio_ctx", self.n_audio_ctx, 65_536),
            ("n_audio_state", self.n_audio_state, 16_384),
            ("n_audio_head", self.n_audio_head, 1_024),
            ("n_audio_layer", self.n_audio_layer, 256),
            ("n_text_ctx", self.n_text_ctx, 65_536),
            ("n_text_state", self.n_text_state, 16_384),
            ("n_text_head", self.n_text_head, 1_024),
            ("n_text_layer", self.n_text_layer, 256),
        ];
        for (name, value, max) in positive {
            if !(1..=max).contains(&value) {
                return Err(format!("{name} = {value}, expected 1..={max}"));
            }
        }
        if self.n_mels != 80 && self.n_mels != 128 {
            return Err(format!("n_mels = {}, expected 80 or 128", self.n_mels));
        }
        if self.n_audio_state % self.n_audio_head != 0 {
            return Err(format!(
                "n_audio_state {} is not a multiple of n_audio_head {}",
                self.n_audio_state, self.n_audio_head
            ));
        }
        if self.n_text_state % self.n_text_head != 0 {
            return Err(format!(
                "n_text_state {} is not a multiple of n_text_head {}",
                self.n_text_state, self.n_text_head
            ));
        }
        self.weight_type().map(|_| ())
    }

    /// Model size name guessed from the shape: "tiny", "base.en", "large-v3", ... or "custom".
    pub fn kind(&self) -> String {
        let size = match (self.n_audio_layer, self.n_audio_state) {
            (4, 384) => "tiny",
            (6, 512) => "base",
            (12, 768) => "small",
            (24, 1024) => "medium",
            // large-v3 moved to 128 mels; its turbo variant keeps only 4 decoder layers.
            (32, 1280) if self.n_mels == 128 && self.n_text_layer == 4 => "large-v3-turbo",
            (32, 1280) if self.n_mels == 128 => "large-v3",
            (32, 1280) => "large",
            _ => return "custom".to_owned(),
        };
        if self.multilingual() {
            size.to_owned()
        } else {
            format!("{size}.en")
        }
    }
}

/// ggml tensor element types that whisper.cpp model files use. The discriminant is the id
/// stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum TensorType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
}

impl TensorType {
    pub fn from_id(id: i32) -> Option<Self> {
        use TensorType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            _ => return None,
        })
    }

    pub fn id(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        use TensorType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q2K => "q2_k",
            Q3K => "q3_k",
            Q4K => "q4_k",
            Q5K => "q5_k",
            Q6K => "q6_k",
        }
    }

    /// (elements per block, bytes per block): quantised types store rows in fixed-size blocks.
    fn block(self) -> (u64, u64) {
        use TensorType::*;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
        }
    }

    /// Bytes of data for a tensor with this innermost (file-order first) dimension and element
    /// count, or `None` when rows do not split into whole blocks or the size overflows.
    pub fn data_size(self, innermost: u64, elements: u64) -> Option<u64> {
        let (per_block, bytes) = self.block();
        if !innermost.is_multiple_of(per_block) {
            return None;
        }
        (elements / per_block).checked_mul(bytes)
    }
}

/// How whisper.cpp types a tensor, which depends on the file's weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Biases, norms, conv biases, positional embeddings: always f32.
    AlwaysF32,
    /// Conv kernels: f32 in an all-f32 file, else f16 (they are never quantised).
    Conv,
    /// Matrices: the file's weight type.
    Matrix,
}

/// One tensor whisper.cpp expects, with its shape in row-major order (outermost first; the
/// file stores the reverse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: TensorType,
}

/// Every tensor whisper.cpp asks for, for these hparams (assumed to have passed
/// [`Hparams::check`]; nonsensical values give nonsensical but harmless specs).
pub fn expected_tensors(h: &Hparams) -> Vec<TensorSpec> {
    let wtype = h.weight_type().unwrap_or(TensorType::F16);
    let dim = |v: i32| usize::try_from(v).unwrap_or(0);
    let (a, t) = (dim(h.n_audio_state), dim(h.n_text_state));
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, role: Role| {
        let ty = match role {
            Role::AlwaysF32 => TensorType::F32,
            Role::Conv if wtype == TensorType::F32 => TensorType::F32,
            Role::Conv => TensorType::F16,
            Role::Matrix => wtype,
        };
        out.push(TensorSpec { name, shape, ty });
    };
    let vector = Role::AlwaysF32;

    add(
        "encoder.positional_embedding".into(),
        vec![dim(h.n_audio_ctx), a],
        vector,
    );
    add(
        "encoder.conv1.weight".into(),
        vec![a, dim(h.n_mels), 3],
        Role::Conv,
    );
    add("encoder.conv1.bias".into(), vec![a, 1], vector);
    add("encoder.conv2.weight".into(), vec![a, a, 3], Role::Conv);
    add("encoder.conv2.bias".into(), vec![a, 1], vector);
    add("encoder.ln_post.weight".into(), vec![a], vector);
    add("encoder.ln_post.bias".into(), vec![a], vector);

    // Layers shared by encoder and decoder blocks; the key projection has no bias in Whisper.
    let block = |add: &mut dyn FnMut(String, Vec<usize>, Role), p: &str, d: usize, attn: &str| {
        add(format!("{p}.{attn}_ln.weight"), vec![d], vector);
        add(format!("{p}.{attn}_ln.bias"), vec![d], vector);
        for proj in ["query", "key", "value", "out"] {
            add(
                format!("{p}.{attn}.{proj}.weight"),
                vec![d, d],
                Role::Matrix,
            );
            if proj != "key" {
                add(format!("{p}.{attn}.{proj}.bias"), vec![d], vector);
            }
        }
    };
    let mlp = |add: &mut dyn FnMut(String, Vec<usize>, Role), p: &str, d: usize| {
        add(format!("{p}.mlp_ln.weight"), vec![d], vector);
        add(format!("{p}.mlp_ln.bias"), vec![d], vector);
        add(format!("{p}.mlp.0.weight"), vec![4 * d, d], Role::Matrix);
        add(format!("{p}.mlp.0.bias"), vec![4 * d], vector);
        add(format!("{p}.mlp.2.weight"), vec![d, 4 * d], Role::Matrix);
        add(format!("{p}.mlp.2.bias"), vec![d], vector);
    };

    for i in 0..h.n_audio_layer.max(0) {
        let p = format!("encoder.blocks.{i}");
        block(&mut add, &p, a, "attn");
        mlp(&mut add, &p, a);
    }

    add(
        "decoder.positional_embedding".into(),
        vec![dim(h.n_text_ctx), t],
        vector,
    );
    add(
        "decoder.token_embedding.weight".into(),
        vec![dim(h.n_vocab), t],
        Role::Matrix,
    );
    add("decoder.ln.weight".into(), vec![t], vector);
    add("decoder.ln.bias".into(), vec![t], vector);
    for i in 0..h.n_text_layer.max(0) {
        let p = format!("decoder.blocks.{i}");
        block(&mut add, &p, t, "attn");
        block(&mut add, &p, t, "cross_attn");
        mlp(&mut add, &p, t);
    }
    out
}

/// A model file being written beside its final place, as `out` + `.tmp`: only a whole, synced
/// and validated file is renamed over `out`, and the temporary file is removed if anything
/// fails first, so `out` is always either as it was or a complete model.
pub struct PendingModel {
    tmp: PathBuf,
    out: PathBuf,
    committed: bool,
}

/// Why a [`PendingModel`] could not become the model: a file operation (on the path given), or
/// validation of what was written.
#[derive(Debug)]
pub enum CommitError {
    Write(PathBuf, std::io::Error),
    Invalid(ModelError),
}

/// The writer a [`PendingModel`] hands out.
pub type ModelWriter = GgmlWriter<std::io::BufWriter<File>>;

impl PendingModel {
    /// Creates `out`'s folder and the temporary file; an error names the path that failed.
    pub fn create(out: &Path) -> Result<(Self, ModelWriter), (PathBuf, std::io::Error)> {
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| (parent.to_owned(), e))?;
        }
        let file = File::create(&tmp).map_err(|e| (tmp.clone(), e))?;
        let w = GgmlWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let pending = Self {
            tmp,
            out: out.to_owned(),
            committed: false,
        };
        Ok((pending, w))
    }

    /// The temporary file, for errors met while writing it.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Flushes and syncs what `w` wrote, validates it, and renames it over `out`.
    pub fn commit(mut self, w: ModelWriter) -> Result<ModelInfo, CommitError> {
        let file = w
            .into_inner()
            .into_inner()
            .map_err(|e| CommitError::Write(self.tmp.clone(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| CommitError::Write(self.tmp.clone(), e))?;
        drop(file);
        let info = validate(&self.tmp).map_err(CommitError::Invalid)?;
        std::fs::rename(&self.tmp, &self.out)
            .map_err(|e| CommitError::Write(self.out.clone(), e))?;
        self.committed = true;
        Ok(ModelInfo {
            path: self.out.clone(),
            ..info
        })
    }
}

impl Drop for PendingModel {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whisper.cpp model file section by section: [`write_header`](Self::write_header),
/// [`write_mel_filters`](Self::write_mel_filters), [`write_vocab`](Self::write_vocab), then
/// one [`write_tensor`](Self::write_tensor) per tensor. The caller keeps that order.
pub struct GgmlWriter<W: Write> {
    w: W,
    written: u64,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

fn to_i32(v: usize, what: &str) -> std::io::Result<i32> {
    i32::try_from(v).map_err(|_| invalid(format!("{what} {v} does not fit the ggml format")))
}

impl<W: Write> GgmlWriter<W> {
    pub fn new(w: W) -> Self {
        Self { w, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn put_i32(&mut self, v: i32) -> std::io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    pub fn write_header(&mut self, h: &Hparams) -> std::io::Result<()> {
        self.put(&MAGIC.to_le_bytes())?;
        for v in h.to_array() {
            self.put_i32(v)?;
        }
        Ok(())
    }

    /// `filters` is row-major, `n_mels` rows of `n_bins` values.
    pub fn write_mel_filters(
        &mut self,
        n_mels: usize,
        n_bins: usize,
        filters: &[f32],
    ) -> std::io::Result<()> {
        if filters.len() != n_mels * n_bins {
            return Err(invalid(format!(
                "mel filters hold {} values, expected {n_mels} x {n_bins}",
                filters.len()
            )));
        }
        self.put_i32(to_i32(n_mels, "mel count")?)?;
        self.put_i32(to_i32(n_bins, "mel bin count")?)?;
        let mut buf = Vec::with_capacity(filters.len() * 4);
        for v in filters {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        self.put(&buf)
    }

    /// Ordinary tokens only: whisper.cpp creates the special tokens itself.
    pub fn write_vocab(&mut self, tokens: &[Vec<u8>]) -> std::io::Result<()> {
        self.put_i32(to_i32(tokens.len(), "token count")?)?;
        for t in tokens {
            self.put_i32(to_i32(t.len(), "token length")?)?;
            self.put(t)?;
        }
        Ok(())
    }

    /// `shape` is row-major (outermost first); `data` holds the elements already encoded as
    /// `ty`, little-endian.
    pub fn write_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        ty: TensorType,
        data: &[u8],
    ) -> std::io::Result<()> {
        let elements: u64 = shape.iter().map(|&d| d as u64).product();
        let innermost = shape.last().copied().unwrap_or(1) as u64;
        let expected = ty.data_size(innermost, elements);
        if shape.is_empty() || expected != Some(data.len() as u64) {
            return Err(invalid(format!(
                "tensor {name}: {} bytes of data do not fit shape {shape:?} as {}",
                data.len(),
                ty.name()
            )));
        }
        self.put_i32(to_i32(shape.len(), "dimension count")?)?;
        self.put_i32(to_i32(name.len(), "name length")?)?;
        self.put_i32(ty.id())?;
        for &d in shape.iter().rev() {
            self.put_i32(to_i32(d, "dimension")?)?;
        }
        self.put(name.as_bytes())?;
        self.put(data)
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// What [`validate`] learned about a model file that whisper.cpp can load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub hparams: Hparams,
    pub n_tensors: usize,
    pub multilingual: bool,
    /// Size guessed from the hparams: "base", "tiny.en", ... or "custom".
    pub kind: String,
}

/// Why a model file cannot be used. The Display text is one line that says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {} not found: {}", .path.display(), install_hint(.path))]
    Missing { path: PathBuf },
    #[error("model file {} is truncated ({detail}): {}", .path.display(), install_hint(.path))]
    Truncated { path: PathBuf, detail: String },
    #[error("{} is not a whisper.cpp ggml model file: {}", .path.display(), install_hint(.path))]
    NotGgml { path: PathBuf },
    #[error("model file {} has implausible hyperparameters ({reason}): {}", .path.display(), install_hint(.path))]
    BadHparams { path: PathBuf, reason: String },
    #[error("model file {} is damaged or not a Whisper model ({reason}): {}", .path.display(), install_hint(.path))]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot read model file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to get a working model in place of `path`, as one clause for an error message.
fn install_hint(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("ggml-"))
        .and_then(|n| n.strip_suffix(".bin"))
        .filter(|n| super::catalog::MODELS.iter().any(|m| m.name == *n))
        .unwrap_or("base");
    if name == "base" {
        "run `callguard model install base` (or `make model`)".to_owned()
    } else {
        format!("run `callguard model install {name}`")
    }
}

/// Reads a file front to back while keeping track of how much is left, so that every
/// shortfall is reported as truncation with the offset where it happened.
struct Walker<'p> {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'p Path,
}

impl Walker<'_> {
    fn io(&self, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: self.path.to_owned(),
            source,
        }
    }

    fn need(&self, n: u64, what: &str) -> Result<(), ModelError> {
        let left = self.len - self.pos;
        if n > left {
            return Err(ModelError::Truncated {
                path: self.path.to_owned(),
                detail: format!(
                    "{what} at byte {} needs {n} bytes, {left} left of {}",
                    self.pos, self.len
                ),
            });
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ModelError> {
        self.need(n, what)?;
        let mut buf = vec![0; n as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(buf)
    }

    fn i32(&mut self, what: &str) -> Result<i32, ModelError> {
        self.need(4, what)?;
        let mut buf = [0; 4];
        self.r.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += 4;
        Ok(i32::from_le_bytes(buf))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ModelError> {
        self.need(n, what)?;
        let offset = i64::try_from(n).map_err(|_| self.corrupt(format!("{what} is too large")))?;
        self.r.seek_relative(offset).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(())
    }

    fn corrupt(&self, reason: String) -> ModelError {
        ModelError::Corrupt {
            path: self.path.to_owned(),
            reason,
        }
    }
}

/// Checks that `path` is a complete whisper.cpp model file that whisper.cpp will accept: magic,
/// plausible hparams, mel filters, vocabulary, and exactly the tensors whisper.cpp expects
/// (names, shapes, types, sizes), ending exactly after the last tensor.
pub fn validate(path: &Path) -> Result<ModelInfo, ModelError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::Missing {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(ModelError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(ModelError::NotGgml {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut w = Walker {
        r: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        len: meta.len(),
        path,
    };

    // A file shorter than the magic is an interrupted write if what is there matches.
    let magic_bytes = MAGIC.to_le_bytes();
    let head_len = w.len.min(4);
    let head = w.bytes(head_len, "magic")?;
    if head[..] != magic_bytes[..head.len()] {
        return Err(ModelError::NotGgml {
            path: path.to_owned(),
        });
    }
    w.need(4 - head_len, "magic")?;

    let mut raw = [0i32; 11];
    for v in raw.iter_mut() {
        *v = w.i32("hyperparameters")?;
    }
    let hparams = Hparams::from_array(raw);
    hparams.check().map_err(|reason| ModelError::BadHparams {
        path: path.to_owned(),
        reason,
    })?;

    let n_mel = w.i32("mel filter header")?;
    let n_bins = w.i32("mel filter header")?;
    if n_mel != hparams.n_mels || n_bins as usize != MEL_BINS {
        return Err(w.corrupt(format!(
            "mel filters are {n_mel} x {n_bins}, expected {} x {MEL_BINS}",
            hparams.n_mels
        )));
    }
    w.skip(n_mel as u64 * MEL_BINS as u64 * 4, "mel filters")?;

    let n_tokens = w.i32("vocabulary size")?;
    if !(1..=hparams.n_vocab).contains(&n_tokens) {
        return Err(w.corrupt(format!(
            "vocabulary has {n_tokens} entries, expected 1..={}",
            hparams.n_vocab
        )));
    }
    for i in 0..n_tokens {
        let len = w.i32("token length")?;
        if !(0..=MAX_TOKEN_LEN).contains(&len) {
            return Err(w.corrupt(format!("token {i} claims {len} bytes")));
        }
        w.skip(len as u64, "token")?;
    }

    let mut expected: HashMap<String, TensorSpec> = expected_tensors(&hparams)
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let n_expected = expected.len();
    let mut n_tensors = 0usize;
    while w.pos < w.len {
        if expected.is_empty() {
            return Err(w.corrupt(format!("{} bytes after the last tensor", w.len - w.pos)));
        }
        let n_dims = w.i32("tensor header")?;
        let name_len = w.i32("tensor header")?;
        let type_id = w.i32("tensor header")?;
        if !(1..=4).contains(&n_dims) {
            return Err(w.corrupt(format!("tensor {n_tensors} has {n_dims} dimensions")));
        }
        if !(1..=MAX_NAME_LEN).contains(&name_len) {
            return Err(w.corrupt(format!("tensor {n_tensors} has a {name_len}-byte name")));
        }
        let ty = TensorType::from_id(type_id)
            .ok_or_else(|| w.corrupt(format!("tensor {n_tensors} has unknown type {type_id}")))?;
        let mut file_dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = w.i32("tensor dimensions")?;
            if d < 1 {
                return Err(w.corrupt(format!("tensor {n_tensors} has dimension {d}")));
            }
            file_dims.push(d as usize);
        }
        let name_raw = w.bytes(name_len as u64, "tensor name")?;
        let name = String::from_utf8(name_raw)
            .map_err(|_| w.corrupt(format!("tensor {n_tensors} has a name that is not UTF-8")))?;
        let shape: Vec<usize> = file_dims.iter().rev().copied().collect();
        let spec = expected.remove(&name).ok_or_else(|| {
            w.corrupt(format!(
                "unexpected tensor {name:?} (unknown to whisper.cpp, or repeated)"
            ))
        })?;
        if spec.shape != shape {
            return Err(w.corrupt(format!(
                "tensor {name} has shape {shape:?}, expected {:?}",
                spec.shape
            )));
        }
        if spec.ty != ty {
            return Err(w.corrupt(format!(
                "tensor {name} is {}, expected {}",
                ty.name(),
                spec.ty.name()
            )));
        }
        let elements = file_dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let size = elements
            .and_then(|e| ty.data_size(file_dims[0] as u64, e))
            .ok_or_else(|| {
                w.corrupt(format!(
                    "tensor {name} of shape {shape:?} cannot be stored as {}",
                    ty.name()
                ))
            })?;
        w.skip(size, &format!("data of tensor {name}"))?;
        n_tensors += 1;
    }

    if !expected.is_empty() {
        let mut missing: Vec<&String> = expected.keys().collect();
        missing.sort();
        return Err(ModelError::Truncated {
            path: path.to_owned(),
            detail: format!(
                "ends after {n_tensors} of {n_expected} tensors; missing e.g. {}",
                missing[0]
            ),
        });
    }

    Ok(ModelInfo {
        path: path.to_owned(),
        size_bytes: w.len,
        hparams,
        n_tensors,
        multilingual: hparams.multilingual(),
        kind: hparams.kind(),
    })
}

/// Every `*.bin` file in `models_dir`, sorted by path, with its validation result. A missing
/// or unreadable directory gives an empty list.
pub fn list(models_dir: &Path) -> Vec<(PathBuf, Result<ModelInfo, ModelError>)> {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let r = validate(&p);
            (p, r)
        })
        .collect()
}

/// Small, internally consistent hparams and a writer of matching model files for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn tiny_hparams() -> Hparams {
        Hparams {
            n_vocab: 6,
            n_audio_ctx: 4,
            n_audio_state: 8,
            n_audio_head: 2,
            n_audio_layer: 1,
            n_text_ctx: 3,
            n_text_state: 8,
            n_text_head: 2,
            n_text_layer: 2,
            n_mels: 80,
            ftype: 1,
        }
    }

    /// A complete model file with zero weights; the returned Vec holds each section's end
    /// offset (header, mel, vocab, then every tensor).
    pub fn write_model(path: &Path, h: &Hparams) -> Vec<u64> {
        let mut w = GgmlWriter::new(Vec::new());
        let mut ends = Vec::new();
        w.write_header(h).unwrap();
        ends.push(w.written());
        let mels = crate::pipeline::asr::model::mel::mel_filters(h.n_mels as usize, 400, 16000);
        w.write_mel_filters(h.n_mels as usize, MEL_BINS, &mels)
            .unwrap();
        ends.push(w.written());
        let tokens: Vec<Vec<u8>> = (0..h.n_vocab - 1)
            .map(|i| format!("t{i}").into_bytes())
            .collect();
        w.write_vocab(&tokens).unwrap();
        ends.push(w.written());
        for spec in expected_tensors(h) {
            let n: u64 = spec.shape.iter().map(|&d| d as u64).product();
            let inner = *spec.shape.last().unwrap() as u64;
            let size = spec.ty.data_size(inner, n).unwrap();
            w.write_tensor(&spec.name, &spec.shape, spec.ty, &vec![0; size as usize])
                .unwrap();
            ends.push(w.written());
        }
        std::fs::write(path, w.into_inner()).unwrap();
        ends
    }

    /// One tensor as stored: row-major shape, type and raw data.
    pub type Stored = (Vec<usize>, TensorType, Vec<u8>);

    /// The vocabulary and every tensor of a (valid) model file.
    pub fn read_model(path: &Path) -> (Vec<Vec<u8>>, HashMap<String, Stored>) {
        let b = std::fs::read(path).unwrap();
        let mut pos = 0usize;
        let i32_at = |pos: &mut usize| {
            let v = i32::from_le_bytes(b[*pos..*pos + 4].try_into().unwrap());
            *pos += 4;
            v
        };
        pos += 4 + 11 * 4;
        let n_mel = i32_at(&mut pos) as usize;
        let n_bins = i32_at(&mut pos) as usize;
        pos += n_mel * n_bins * 4;
        let n_tokens = i32_at(&mut pos);
        let mut vocab = Vec::new();
        for _ in 0..n_tokens {
            let len = i32_at(&mut pos) as usize;
            vocab.push(b[pos..pos + len].to_vec());
            pos += len;
        }
        let mut tensors = HashMap::new();
        while pos < b.len() {
            let n_dims = i32_at(&mut pos);
            let name_len = i32_at(&mut pos) as usize;
            let ty = TensorType::from_id(i32_at(&mut pos)).unwrap();
            let mut dims: Vec<usize> = (0..n_dims).map(|_| i32_at(&mut pos) as usize).collect();
            let name = String::from_utf8(b[pos..pos + name_len].to_vec()).unwrap();
            pos += name_len;
            let n: u64 = dims.iter().map(|&d| d as u64).product();
            let size = ty.data_size(dims[0] as u64, n).unwrap() as usize;
            dims.reverse();
            tensors.insert(name, (dims, ty, b[pos..pos + size].to_vec()));
            pos += size;
        }
        (vocab, tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn one_line(e: &ModelError) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    #[test]
    fn a_pending_model_replaces_the_old_one_only_when_whole_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/ggml-x.bin");
        let tmp = dir.path().join("sub/ggml-x.bin.tmp");
        let h = tiny_hparams();

        // A valid model written through it lands at `out`; the folder is made on the way.
        let good = dir.path().join("good.bin");
        write_model(&good, &h);
        let bytes = std::fs::read(&good).unwrap();
        let (pending, mut w) = PendingModel::create(&out).unwrap();
        assert!(tmp.exists());
        std::io::Write::write_all(&mut w.w, &bytes).unwrap();
        let info = pending.commit(w).unwrap();
        assert_eq!((info.path.as_path(), info.hparams), (out.as_path(), h));
        assert!(!tmp.exists());

        // A truncated one fails validation: the old model stays, the temporary file goes.
        let (pending, mut w) = PendingModel::create(&out).unwrap();
        std::io::Write::write_all(&mut w.w, &bytes[..bytes.len() / 2]).unwrap();
        let err = pending.commit(w).unwrap_err();
        assert!(matches!(err, CommitError::Invalid(_)), "{err:?}");
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&out).unwrap(), bytes);

        // Given up halfway (an error while writing): dropped, nothing is left behind.
        let (pending, _w) = PendingModel::create(&out).unwrap();
        drop(pending);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&out).unwrap(), bytes);

        // A folder that cannot be made is named in the error.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let (path, _) = PendingModel::create(&dir.path().join("file/m.bin"))
            .err()
            .unwrap();
        assert_eq!(path, dir.path().join("file"));
    }

    #[test]
    fn synthetic_model_validates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-test.bin");
        let h = tiny_hparams();
        let ends = write_model(&path, &h);
        let info = validate(&path).unwrap();
        assert_eq!(info.hparams, h);
        assert_eq!(info.n_tensors, expected_tensors(&h).len());
        assert_eq!(info.size_bytes, *ends.last().unwrap());
        assert_eq!(info.kind, "custom");
        assert!(!info.multilingual);
    }

    #[test]
    fn expected_tensor_count_matches_base() {
        // ggml-base.bin has 245 tensors: 7 + 6 x 15 encoder, 4 + 6 x 24 decoder.
        let h = Hparams {
            n_vocab: 51865,
            n_audio_ctx: 1500,
            n_audio_state: 512,
            n_audio_head: 8,
            n_audio_layer: 6,
            n_text_ctx: 448,
            n_text_state: 512,
            n_text_head: 8,
            n_text_layer: 6,
            n_mels: 80,
            ftype: 1,
        };
        let specs = expected_tensors(&h);
        assert_eq!(specs.len(), 245);
        assert_eq!(h.kind(), "base");
        let conv1 = specs
            .iter()
            .find(|s| s.name == "encoder.conv1.weight")
            .unwrap();
        assert_eq!(
            (conv1.shape.clone(), conv1.ty),
            (vec![512, 80, 3], TensorType::F16)
        );
        let bias = specs
            .iter()
            .find(|s| s.name == "encoder.conv1.bias")
            .unwrap();
        assert_eq!(
            (bias.shape.clone(), bias.ty),
            (vec![512, 1], TensorType::F32)
        );
        let q5 = Hparams { ftype: 2009, ..h };
        let specs = expected_tensors(&q5);
        let emb = specs
            .iter()
            .find(|s| s.name == "decoder.token_embedding.weight")
            .unwrap();
        assert_eq!(emb.ty, TensorType::Q5_1);
        let conv2 = specs
            .iter()
            .find(|s| s.name == "encoder.conv2.weight")
            .unwrap();
        assert_eq!(conv2.ty, TensorType::F16);
    }

    #[test]
    fn kinds() {
        let base = tiny_hparams();
        let h = |layers, state, vocab, mels, text_layers| Hparams {
            n_audio_layer: layers,
            n_audio_state: state,
            n_vocab: vocab,
            n_mels: mels,
            n_text_layer: text_layers,
            ..base
        };
        assert_eq!(h(4, 384, 51864, 80, 4).kind(), "tiny.en");
        assert_eq!(h(4, 384, 51865, 80, 4).kind(), "tiny");
        assert_eq!(h(12, 768, 51865, 80, 12).kind(), "small");
        assert_eq!(h(32, 1280, 51865, 80, 32).kind(), "large");
        assert_eq!(h(32, 1280, 51866, 128, 32).kind(), "large-v3");
        assert_eq!(h(32, 1280, 51866, 128, 4).kind(), "large-v3-turbo");
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-base.bin");
        let ends = write_model(&path, &tiny_hparams());
        let full = std::fs::read(&path).unwrap();
        let cut_path = dir.path().join("ggml-cut.bin");
        // Cut inside the magic, the header, every section boundary and inside tensor data.
        let mut cuts = vec![0, 2, 10];
        for &e in &ends[..ends.len() - 1] {
            cuts.extend([e, e + 3, e + 20]);
        }
        cuts.push(full.len() as u64 - 1);
        for cut in cuts {
            std::fs::write(&cut_path, &full[..cut as usize]).unwrap();
            match validate(&cut_path) {
                Err(e @ ModelError::Truncated { .. }) => {
                    let msg = one_line(&e);
                    assert!(msg.contains("callguard model install base"), "{msg}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn foreign_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-base.bin");
        // Deterministic pseudo-random bytes.
        let mut x = 0x1234_5678u32;
        let junk: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(&path, &junk).unwrap();
        let e = validate(&path).unwrap_err();
        assert!(matches!(e, ModelError::NotGgml { .. }), "{e:?}");
        assert!(one_line(&e).contains("callguard model install base"));

        std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
        assert!(matches!(validate(&path), Err(ModelError::NotGgml { .. })));

        let missing = dir.path().join("ggml-tiny.en.bin");
        let e = validate(&missing).unwrap_err();
        assert!(matches!(e, ModelError::Missing { .. }), "{e:?}");
        let msg = one_line(&e);
        assert!(
            msg.contains("not found") && msg.contains("callguard model install tiny.en"),
            "{msg}"
        );

        let e = validate(dir.path()).unwrap_err();
        assert!(matches!(e, ModelError::NotGgml { .. }), "{e:?}");
    }

    #[test]
    fn ggml_with_wrong_hparams_or_extra_bytes_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        // A different ggml model family: same magic, other header.
        write_model(&path, &tiny_hparams());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4 + 9 * 4..4 + 10 * 4].copy_from_slice(&768i32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            validate(&path),
            Err(ModelError::BadHparams { .. })
        ));

        write_model(&path, &tiny_hparams());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 7]);
        std::fs::write(&path, &bytes).unwrap();
        let e = validate(&path).unwrap_err();
        assert!(matches!(e, ModelError::Corrupt { .. }), "{e:?}");
        assert!(
            e.to_string().contains("7 bytes after the last tensor"),
            "{e}"
        );
    }

    #[test]
    fn wrong_tensor_type_or_shape_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let h = tiny_hparams();
        let mut w = GgmlWriter::new(Vec::new());
        w.write_header(&h).unwrap();
        let mels = crate::pipeline::asr::model::mel::mel_filters(80, 400, 16000);
        w.write_mel_filters(80, MEL_BINS, &mels).unwrap();
        w.write_vocab(&[b"a".to_vec()]).unwrap();
        // whisper.cpp creates conv biases as f32; an f16 one must be refused.
        w.write_tensor("encoder.conv1.bias", &[8, 1], TensorType::F16, &[0; 16])
            .unwrap();
        std::fs::write(&path, w.into_inner()).unwrap();
        let e = validate(&path).unwrap_err();
        assert!(e.to_string().contains("expected f32"), "{e}");

        let mut w = GgmlWriter::new(Vec::new());
        w.write_header(&h).unwrap();
        w.write_mel_filters(80, MEL_BINS, &mels).unwrap();
        w.write_vocab(&[b"a".to_vec()]).unwrap();
        w.write_tensor("encoder.conv1.bias", &[8], TensorType::F32, &[0; 32])
            .unwrap();
        std::fs::write(&path, w.into_inner()).unwrap();
        let e = validate(&path).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
    }

    #[test]
    fn writer_refuses_mismatched_data() {
        let mut w = GgmlWriter::new(Vec::new());
        assert!(
            w.write_tensor("x", &[2, 3], TensorType::F16, &[0; 10])
                .is_err()
        );
        assert!(
            w.write_tensor("x", &[2, 30], TensorType::Q8_0, &[0; 68])
                .is_err()
        );
        assert!(
            w.write_tensor("x", &[2, 32], TensorType::Q8_0, &[0; 68])
                .is_ok()
        );
        assert!(w.write_mel_filters(2, 3, &[0.0; 5]).is_err());
    }

    #[test]
    fn list_sorts_bin_files() {
        let dir = tempfile::tempdir().unwrap();
        write_model(&dir.path().join("ggml-b.bin"), &tiny_hparams());
        std::fs::write(dir.path().join("ggml-a.bin"), b"nope").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("ggml-c.bin.tmp"), b"x").unwrap();
        let l = list(dir.path());
        assert_eq!(l.len(), 2);
        assert!(l[0].0.ends_with("ggml-a.bin") && l[0].1.is_err());
        assert!(l[1].0.ends_with("ggml-b.bin") && l[1].1.is_ok());
        assert!(list(&dir.path().join("absent")).is_empty());
    }
}
