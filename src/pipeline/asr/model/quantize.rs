//! Quantisation of a float whisper.cpp model file into q8_0 or q5_0, the two "type 0" block
//! formats whisper.cpp's own `quantize` tool offers that keep Whisper's accuracy close to f16.
//!
//! [`quantize`] reads an f16 (or f32) ggml Whisper model that [`ggml::validate`] accepts and
//! writes a new file with the same header (only `ftype` changed), mel filters, vocabulary and
//! tensors in the same order. The tensors [`ggml::expected_tensors`] gives the file's weight
//! type (the 2-D matrices, which are also the ones whisper.cpp's quantizer picks) are encoded
//! in the requested block format; conv kernels become f16 (what whisper.cpp expects in any
//! non-f32 file) and everything else is copied byte for byte. The result is written through a
//! temporary file next to the output and only renamed into place once it validates.
//!
//! It does not re-quantise an already quantised model (that would compound the rounding
//! error), does not offer the k-quant or 4-bit formats, and does not load the result into
//! whisper.cpp.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::pipeline::asr::model::ggml::{
    self, CommitError, Hparams, ModelError, ModelInfo, PendingModel, TensorSpec, TensorType,
};

/// Values per block in both formats: rows are quantised independently in runs of 32.
pub const BLOCK_LEN: usize = 32;
/// ggml's quantisation format version, which whisper.cpp folds into `ftype` as
/// `version * 1000 + ftype` so that files from an older block layout are recognisable.
const GGML_QNT_VERSION: i32 = 2;
const FTYPE_VERSION_FACTOR: i32 = 1000;

/// The block formats [`quantize`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// 8-bit values with one f16 scale per block: 34 bytes per 32 values.
    Q8_0,
    /// 5-bit values with one f16 scale per block: 22 bytes per 32 values.
    Q5_0,
}

impl QuantType {
    /// Every type, in the order the command line lists them.
    pub const ALL: [QuantType; 2] = [QuantType::Q8_0, QuantType::Q5_0];

    /// The name used on the command line and in file names: `q8_0`, `q5_0`.
    pub fn name(self) -> &'static str {
        self.tensor_type().name()
    }

    /// The ggml tensor type of the quantised matrices.
    pub fn tensor_type(self) -> TensorType {
        match self {
            QuantType::Q8_0 => TensorType::Q8_0,
            QuantType::Q5_0 => TensorType::Q5_0,
        }
    }

    /// The `ftype` stored in the header of a file quantised to this type. ggml numbers file
    /// types (GGML_FTYPE_MOSTLY_*) separately from tensor types, hence 7 and 8 here while the
    /// tensors carry type ids 8 and 6; [`Hparams::weight_type`] maps them back.
    pub fn file_ftype(self) -> i32 {
        let mostly = match self {
            QuantType::Q8_0 => 7,
            QuantType::Q5_0 => 8,
        };
        GGML_QNT_VERSION * FTYPE_VERSION_FACTOR + mostly
    }

    /// Where `model install --quantize` puts the quantised copy of `model`:
    /// `ggml-base.bin` -> `ggml-base-q8_0.bin`.
    pub fn sibling_path(self, model: &Path) -> PathBuf {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        model.with_file_name(format!("{stem}-{}.bin", self.name()))
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantisation type name that is not one of [`QuantType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quantisation type {0:?}: expected q8_0 or q5_0")]
pub struct ParseQuantTypeError(String);

impl std::str::FromStr for QuantType {
    type Err = ParseQuantTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QuantType::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseQuantTypeError(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("cannot quantise: {0}")]
    Input(#[source] ModelError),
    #[error(
        "{} is already quantised ({}); quantise the f16 model instead, since quantising twice adds up the rounding error",
        .path.display(), .ty.name()
    )]
    AlreadyQuantized { path: PathBuf, ty: TensorType },
    #[error(
        "{}: tensor {tensor} has rows of {row_len} values, which do not split into blocks of {BLOCK_LEN}, so it cannot be stored as {to}",
        .path.display()
    )]
    RowLength {
        path: PathBuf,
        tensor: String,
        row_len: usize,
        to: QuantType,
    },
    #[error("the output {} is the input model; write the quantised model to another file", .path.display())]
    SameFile { path: PathBuf },
    #[error("{} changed while it was being quantised ({reason}); run the command again", .path.display())]
    Changed { path: PathBuf, reason: String },
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
    #[error("the quantised model failed validation: {0}")]
    Invalid(#[source] ModelError),
}

/// Quantises the float model `input` to `to`, writing `output`.
///
/// `output` is written as `output` + `.tmp`, validated, then renamed, so it is either left as
/// it was or replaced by a complete, validated model. Returns what validation found.
pub fn quantize(input: &Path, output: &Path, to: QuantType) -> Result<ModelInfo, QuantizeError> {
    // Validating first means the reader below can trust the layout, and a missing or damaged
    // input is reported with the same message `analyze` would give.
    let info = ggml::validate(input).map_err(QuantizeError::Input)?;
    let h_in = info.hparams;
    let from = h_in
        .weight_type()
        .map_err(|reason| QuantizeError::Changed {
            path: input.to_owned(),
            reason,
        })?;
    if !matches!(from, TensorType::F16 | TensorType::F32) {
        return Err(QuantizeError::AlreadyQuantized {
            path: input.to_owned(),
            ty: from,
        });
    }
    if same_file(input, output) {
        return Err(QuantizeError::SameFile {
            path: output.to_owned(),
        });
    }
    let h_out = Hparams {
        ftype: to.file_ftype(),
        ..h_in
    };
    let in_specs = by_name(ggml::expected_tensors(&h_in));
    let out_list = ggml::expected_tensors(&h_out);
    // Checked before anything is written: Whisper's dimensions are all multiples of 64, so this
    // only trips on custom shapes, and it should not do so halfway through a large file.
    if let Some(bad) = out_list
        .iter()
        .find(|s| s.ty == to.tensor_type() && !row_len(s).is_multiple_of(BLOCK_LEN))
    {
        return Err(QuantizeError::RowLength {
            path: input.to_owned(),
            tensor: bad.name.clone(),
            row_len: row_len(bad),
            to,
        });
    }
    let out_specs = by_name(out_list);

    let file = File::open(input).map_err(|source| QuantizeError::Read {
        path: input.to_owned(),
        source,
    })?;
    let mut r = Reader {
        r: BufReader::with_capacity(1 << 20, file),
        path: input,
    };

    let (pending, mut w) = PendingModel::create(output)
        .map_err(|(path, source)| QuantizeError::Write { path, source })?;
    let write_err = |source| QuantizeError::Write {
        path: pending.tmp().to_owned(),
        source,
    };

    // Header: re-read rather than taken from `info`, so a file swapped since validation is
    // noticed instead of silently mixed.
    let magic = r.i32()? as u32;
    let mut raw = [0i32; 11];
    for v in raw.iter_mut() {
        *v = r.i32()?;
    }
    let h_now = [
        h_in.n_vocab,
        h_in.n_audio_ctx,
        h_in.n_audio_state,
        h_in.n_audio_head,
        h_in.n_audio_layer,
        h_in.n_text_ctx,
        h_in.n_text_state,
        h_in.n_text_head,
        h_in.n_text_layer,
        h_in.n_mels,
        h_in.ftype,
    ];
    if magic != ggml::MAGIC || raw != h_now {
        return Err(r.changed("the header differs from the validated one".into()));
    }
    w.write_header(&h_out).map_err(write_err)?;

    let n_mel = r.count("mel filter count")?;
    let n_bins = r.count("mel bin count")?;
    let mel_bytes = r.bytes(n_mel * n_bins * 4)?;
    let mels: Vec<f32> = mel_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    w.write_mel_filters(n_mel, n_bins, &mels)
        .map_err(write_err)?;

    let n_tokens = r.count("token count")?;
    let mut tokens = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        let len = r.count("token length")?;
        tokens.push(r.bytes(len)?);
    }
    w.write_vocab(&tokens).map_err(write_err)?;

    for _ in 0..info.n_tensors {
        let n_dims = r.count("dimension count")?;
        let name_len = r.count("name length")?;
        let type_id = r.i32()?;
        let mut shape = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            shape.push(r.count("dimension")?);
        }
        // The file lists the innermost dimension first; specs are row-major.
        shape.reverse();
        let name = String::from_utf8(r.bytes(name_len)?)
            .map_err(|_| r.changed("a tensor name is not UTF-8".into()))?;
        let (Some(spec_in), Some(spec_out)) = (in_specs.get(&name), out_specs.get(&name)) else {
            return Err(r.changed(format!("unexpected tensor {name:?}")));
        };
        if spec_in.shape != shape || spec_in.ty.id() != type_id {
            return Err(r.changed(format!("tensor {name} has a different shape or type")));
        }
        let elements: u64 = shape.iter().map(|&d| d as u64).product();
        let size = spec_in
            .ty
            .data_size(row_len(spec_in) as u64, elements)
            .ok_or_else(|| r.changed(format!("tensor {name} has an impossible size")))?;
        let size = usize::try_from(size)
            .map_err(|_| r.changed(format!("tensor {name} is too large for memory")))?;
        let data = r.bytes(size)?;
        let encoded = recode(&data, spec_in.ty, spec_out.ty).ok_or_else(|| {
            r.changed(format!(
                "tensor {name} cannot become {}",
                spec_out.ty.name()
            ))
        })?;
        w.write_tensor(&name, &shape, spec_out.ty, &encoded)
            .map_err(write_err)?;
    }

    pending.commit(w).map_err(|e| match e {
        CommitError::Write(path, source) => QuantizeError::Write { path, source },
        CommitError::Invalid(e) => QuantizeError::Invalid(e),
    })
}

/// Whether `a` and `b` name the same existing file (so renaming onto `b` would replace `a`).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn by_name(specs: Vec<TensorSpec>) -> HashMap<String, TensorSpec> {
    specs.into_iter().map(|s| (s.name.clone(), s)).collect()
}

/// Values per row: the innermost (last row-major) dimension.
fn row_len(spec: &TensorSpec) -> usize {
    spec.shape.last().copied().unwrap_or(1)
}

/// Reads the already validated input front to back.
struct Reader<'p> {
    r: BufReader<File>,
    path: &'p Path,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, QuantizeError> {
        let mut buf = vec![0; n];
        self.r.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.changed("it is shorter than when it was validated".into())
            } else {
                QuantizeError::Read {
                    path: self.path.to_owned(),
                    source: e,
                }
            }
        })?;
        Ok(buf)
    }

    fn i32(&mut self) -> Result<i32, QuantizeError> {
        let b = self.bytes(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count or size field; validation already bounded them, so a negative one means the
    /// file is not the one that was validated.
    fn count(&mut self, what: &str) -> Result<usize, QuantizeError> {
        let v = self.i32()?;
        usize::try_from(v).map_err(|_| self.changed(format!("{what} is {v}")))
    }

    fn changed(&self, reason: String) -> QuantizeError {
        QuantizeError::Changed {
            path: self.path.to_owned(),
            reason,
        }
    }
}

/// `data` (little-endian `from`) encoded as `to`; borrowed when the type stays. `None` for a
/// pair this module does not convert (anything from a quantised type, or to one other than
/// q8_0/q5_0); whole rows are guaranteed by the caller's row-length check.
fn recode(data: &[u8], from: TensorType, to: TensorType) -> Option<Cow<'_, [u8]>> {
    if from == to {
        return Some(Cow::Borrowed(data));
    }
    let values: Vec<f32> = match from {
        TensorType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        TensorType::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        _ => return None,
    };
    let out = match to {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        TensorType::Q8_0 => encode_blocks(&values, Q8_0_BYTES, encode_q8_0),
        TensorType::Q5_0 => encode_blocks(&values, Q5_0_BYTES, encode_q5_0),
        _ => return None,
    };
    Some(Cow::Owned(out))
}

const Q8_0_BYTES: usize = 34;
const Q5_0_BYTES: usize = 22;

/// Encodes consecutive blocks of [`BLOCK_LEN`] values. Rows are independent in ggml, but since
/// every row holds whole blocks, a row-major tensor is simply a run of blocks.
fn encode_blocks(
    values: &[f32],
    block_bytes: usize,
    encode: fn(&[f32; BLOCK_LEN], &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK_LEN * block_bytes);
    for chunk in values.chunks_exact(BLOCK_LEN) {
        let mut block = [0f32; BLOCK_LEN];
        block.copy_from_slice(chunk);
        encode(&block, &mut out);
    }
    out
}

/// q8_0: f16 scale `d = amax / 127`, then 32 signed bytes `round(x / d)`.
fn encode_q8_0(x: &[f32; BLOCK_LEN], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    // Multiplying by the f32 reciprocal (not dividing by the f16-rounded scale) is what ggml's
    // reference quantizer does, so files match whisper.cpp's own output.
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
    for &v in x {
        // |v * id| <= 127 up to rounding; the saturating cast keeps a last-ulp overshoot in range.
        out.push(((v * id).round() as i8) as u8);
    }
}

/// q5_0: f16 scale `d = max / -16` from the value of largest magnitude (sign kept, so that
/// value lands exactly on -16, the end of the asymmetric range -16..=15), then the 32 values
/// as 5-bit `q = x / d + 16`: low nibbles packed two per byte (value j with value j + 16),
/// fifth bits gathered into a u32. Stored as d, qh, qs.
fn encode_q5_0(x: &[f32; BLOCK_LEN], out: &mut Vec<u8>) {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        // Strictly greater: on ties the first value wins, as in ggml.
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let half_len = BLOCK_LEN / 2;
    let mut qs = [0u8; BLOCK_LEN / 2];
    let mut qh = 0u32;
    for j in 0..half_len {
        // Adding 16.5 and truncating rounds to nearest, since `max` maps to -16 and the sum is
        // therefore at least about 0.5; 31 caps a value of the opposite sign as large as `max`.
        let q0 = ((x[j] * id + 16.5) as i8).clamp(0, 31) as u8;
        let q1 = ((x[j + half_len] * id + 16.5) as i8).clamp(0, 31) as u8;
        qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= u32::from((q0 >> 4) & 1) << j;
        qh |= u32::from((q1 >> 4) & 1) << (j + half_len);
    }
    out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::asr::model::ggml::testing::{read_model, tiny_hparams, write_model};

    fn f16_bits(v: f32) -> [u8; 2] {
        half::f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn q8(x: &[f32; 32]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_q8_0(x, &mut out);
        assert_eq!(out.len(), Q8_0_BYTES);
        out
    }

    fn q5(x: &[f32; 32]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_q5_0(x, &mut out);
        assert_eq!(out.len(), Q5_0_BYTES);
        out
    }

    /// Independent decoders, written from the format description (value = d * q, and
    /// d * (q - 16) with q's fifth bit taken from qh).
    fn dequant_q8_0(b: &[u8]) -> Vec<f32> {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        b[2..34].iter().map(|&q| d * f32::from(q as i8)).collect()
    }

    fn dequant_q5_0(b: &[u8]) -> Vec<f32> {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        (0..32)
            .map(|k| {
                let byte = b[6 + k % 16];
                let low = if k < 16 { byte & 0x0f } else { byte >> 4 };
                let q = low | (((qh >> k) & 1) as u8) << 4;
                d * (f32::from(q) - 16.0)
            })
            .collect()
    }

    /// Deterministic pseudo-random values in -scale..scale.
    fn noise(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    #[test]
    fn q8_0_blocks_by_hand() {
        // amax 127 gives d = 1, so q is x rounded (halves away from zero).
        let mut x = [0f32; 32];
        for (j, v) in x.iter_mut().enumerate() {
            *v = j as f32 - 16.0;
        }
        x[5] = 127.0;
        x[6] = 2.5;
        x[7] = -2.5;
        x[8] = 0.49;
        let mut want = vec![0x00, 0x3c];
        let q: Vec<i8> = (0..32)
            .map(|j| match j {
                5 => 127,
                6 => 3,
                7 => -3,
                8 => 0,
                _ => j - 16,
            })
            .collect();
        want.extend(q.iter().map(|&v| v as u8));
        assert_eq!(q8(&x), want);

        // One large negative value: amax 254, d = 2, the rest (3.0) become round(1.5) = 2.
        let mut x = [3f32; 32];
        x[3] = -254.0;
        let mut want = vec![0x00, 0x40];
        want.extend((0..32).map(|j| if j == 3 { (-127i8) as u8 } else { 2 }));
        assert_eq!(q8(&x), want);
        assert_eq!(dequant_q8_0(&want)[3], -254.0);

        // All zero: scale 0 and every quant 0, no division by zero.
        assert_eq!(q8(&[0.0; 32]), vec![0u8; 34]);
    }

    #[test]
    fn q5_0_blocks_by_hand() {
        // -16..15: max is -16 (the first of the largest magnitude), d = 1, q = x + 16 = j.
        let mut x = [0f32; 32];
        for (j, v) in x.iter_mut().enumerate() {
            *v = j as f32 - 16.0;
        }
        let mut want = vec![0x00, 0x3c, 0x00, 0x00, 0xff, 0xff];
        want.extend((0u8..16).map(|j| j | (j << 4)));
        assert_eq!(q5(&x), want);
        assert_eq!(dequant_q5_0(&want), x.to_vec());

        // One large negative value: d = -32 / -16 = 2, it becomes q = 0 and the 1.0s become
        // trunc(0.5 + 16.5) = 17 (low nibble 1, fifth bit set).
        let mut x = [1f32; 32];
        x[20] = -32.0;
        let mut want = vec![0x00, 0x40];
        want.extend_from_slice(&0xffef_ffffu32.to_le_bytes());
        want.extend((0..16).map(|j| if j == 4 { 0x01 } else { 0x11 }));
        assert_eq!(q5(&x), want);
        let back = dequant_q5_0(&want);
        assert_eq!(back[20], -32.0);
        assert_eq!(back[0], 2.0);

        // A large positive value: d = -2, so it too lands on -16 and 1.0 rounds to q = 16.
        let mut x = [1f32; 32];
        x[0] = 32.0;
        let mut want = vec![0x00, 0xc0];
        want.extend_from_slice(&0xffff_fffeu32.to_le_bytes());
        want.extend([0u8; 16]);
        assert_eq!(q5(&x), want);
        assert_eq!(dequant_q5_0(&want)[0], 32.0);

        // All zero: d = 0 / -16 = -0.0 (f16 0x8000, as ggml writes it too), and every value
        // encodes as q = 16 (fifth bit set, nibble 0).
        let mut want = vec![0x00, 0x80, 0xff, 0xff, 0xff, 0xff];
        want.extend([0u8; 16]);
        assert_eq!(q5(&[0.0; 32]), want);
        assert!(dequant_q5_0(&want).iter().all(|&v| v == 0.0));
    }

    /// Half a step, plus what storing the scale as f16 costs at the largest quant.
    fn bound(d_exact: f32, stored: &[u8], qmax: f32) -> f32 {
        let d16 = half_d(stored);
        d_exact.abs() / 2.0 + (d_exact.abs() - d16.abs()).abs() * qmax + 1e-6 * d_exact.abs()
    }

    #[test]
    fn dequantised_error_stays_within_half_a_step() {
        for (seed, scale) in [(1, 1.0), (2, 0.01), (3, 300.0), (4, 1e-3)] {
            for block in noise(32 * 64, seed, scale).chunks_exact(32) {
                let x: [f32; 32] = block.try_into().unwrap();
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));

                let b = q8(&x);
                let tol = bound(amax / 127.0, &b, 127.0);
                for (v, r) in x.iter().zip(dequant_q8_0(&b)) {
                    assert!((v - r).abs() <= tol, "q8_0 {v} -> {r}, bound {tol}");
                }

                // q5_0's range is -16..=15 steps with the extreme value on -16, so a value of
                // the other sign beyond 15.5 steps is capped at 15: up to a whole step off.
                let b = q5(&x);
                let max = x
                    .iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -16.0;
                let tol = bound(d, &b, 16.0);
                for (v, r) in x.iter().zip(dequant_q5_0(&b)) {
                    let capped = v.signum() != max.signum() && v.abs() > 15.5 * d.abs();
                    if capped {
                        assert_eq!(r, 15.0 * half_d(&b), "q5_0 {v} is not capped at 15");
                        assert!((v - r).abs() <= 2.0 * tol, "q5_0 {v} -> {r}");
                    } else {
                        assert!((v - r).abs() <= tol, "q5_0 {v} -> {r}, bound {tol}");
                    }
                }
            }
        }
    }

    fn half_d(stored: &[u8]) -> f32 {
        half::f16::from_bits(u16::from_le_bytes([stored[0], stored[1]])).to_f32()
    }

    #[test]
    fn names_and_ftypes() {
        assert_eq!("q8_0".parse::<QuantType>(), Ok(QuantType::Q8_0));
        assert_eq!("Q5_0".parse::<QuantType>(), Ok(QuantType::Q5_0));
        let e = "q4_0".parse::<QuantType>().unwrap_err();
        assert!(e.to_string().contains("q8_0 or q5_0"), "{e}");
        for q in QuantType::ALL {
            let h = Hparams {
                ftype: q.file_ftype(),
                ..tiny_hparams()
            };
            assert_eq!(h.weight_type(), Ok(q.tensor_type()));
        }
        assert_eq!(QuantType::Q8_0.file_ftype(), 2007);
        assert_eq!(
            QuantType::Q5_0.sibling_path(Path::new("models/ggml-base.bin")),
            Path::new("models/ggml-base-q5_0.bin")
        );
    }

    /// Hparams whose matrices have rows of 32 (tiny_hparams' 8 do not split into blocks).
    fn blockable(ftype: i32) -> Hparams {
        Hparams {
            n_audio_state: 32,
            n_text_state: 32,
            ftype,
            ..tiny_hparams()
        }
    }

    /// A complete model whose float tensors hold pseudo-random values.
    fn write_noisy_model(path: &Path, h: &Hparams) {
        let mut w = ggml::GgmlWriter::new(Vec::new());
        w.write_header(h).unwrap();
        let mels = crate::pipeline::asr::model::mel::mel_filters(80, 400, 16000);
        w.write_mel_filters(80, ggml::MEL_BINS, &mels).unwrap();
        let tokens: Vec<Vec<u8>> = (0..h.n_vocab - 1)
            .map(|i| format!("tok{i}").into_bytes())
            .collect();
        w.write_vocab(&tokens).unwrap();
        for (i, spec) in ggml::expected_tensors(h).iter().enumerate() {
            let n: usize = spec.shape.iter().product();
            let v = noise(n, i as u32 + 7, 0.5);
            let data: Vec<u8> = match spec.ty {
                TensorType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                TensorType::F16 => v.iter().flat_map(|&x| f16_bits(x)).collect(),
                other => panic!("test model in {}", other.name()),
            };
            w.write_tensor(&spec.name, &spec.shape, spec.ty, &data)
                .unwrap();
        }
        std::fs::write(path, w.into_inner()).unwrap();
    }

    fn floats(ty: TensorType, data: &[u8]) -> Vec<f32> {
        match ty {
            TensorType::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            TensorType::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            TensorType::Q8_0 => data.chunks_exact(34).flat_map(dequant_q8_0).collect(),
            TensorType::Q5_0 => data.chunks_exact(22).flat_map(dequant_q5_0).collect(),
            other => panic!("{}", other.name()),
        }
    }

    #[test]
    fn quantises_a_whole_model() {
        let dir = tempfile::tempdir().unwrap();
        for src_ftype in [1, 0] {
            let input = dir.path().join(format!("ggml-in-{src_ftype}.bin"));
            let h = blockable(src_ftype);
            write_noisy_model(&input, &h);
            let (vocab_in, tensors_in) = read_model(&input);
            for q in QuantType::ALL {
                let output = dir.path().join(format!("out-{src_ftype}-{q}.bin"));
                let info = quantize(&input, &output, q).unwrap();
                assert_eq!(info.path, output);
                assert_eq!(
                    info.hparams,
                    Hparams {
                        ftype: q.file_ftype(),
                        ..h
                    }
                );
                assert_eq!(ggml::validate(&output).unwrap(), info);
                assert!(
                    !dir.path()
                        .join(format!("out-{src_ftype}-{q}.bin.tmp"))
                        .exists()
                );

                let in_bytes = std::fs::read(&input).unwrap();
                let out_bytes = std::fs::read(&output).unwrap();
                // Mel filters and vocabulary follow the header unchanged.
                let header = 4 + 11 * 4;
                let vocab_end = header
                    + 8
                    + 80 * ggml::MEL_BINS * 4
                    + 4
                    + vocab_in.iter().map(|t| 4 + t.len()).sum::<usize>();
                assert_eq!(out_bytes[header..vocab_end], in_bytes[header..vocab_end]);
                assert_eq!(out_bytes[..header - 4], in_bytes[..header - 4]);

                let (vocab_out, tensors_out) = read_model(&output);
                assert_eq!(vocab_out, vocab_in);
                assert_eq!(tensors_out.len(), tensors_in.len());
                let mut n_matrices = 0;
                for spec in ggml::expected_tensors(&info.hparams) {
                    let (shape_in, ty_in, data_in) = &tensors_in[&spec.name];
                    let (shape_out, ty_out, data_out) = &tensors_out[&spec.name];
                    assert_eq!(shape_out, shape_in);
                    assert_eq!(*ty_out, spec.ty, "{}", spec.name);
                    if spec.ty == *ty_in {
                        // Vectors, and an f16 source's conv kernels: the same bytes.
                        assert_eq!(data_out, data_in, "{}", spec.name);
                    } else if spec.ty == TensorType::F16 {
                        // An f32 source's conv kernels: never quantised, but f16 as
                        // whisper.cpp expects in any non-f32 file.
                        let want: Vec<u8> = floats(*ty_in, data_in)
                            .iter()
                            .flat_map(|&v| f16_bits(v))
                            .collect();
                        assert_eq!(data_out, &want, "{}", spec.name);
                    } else {
                        n_matrices += 1;
                        assert_eq!(spec.ty, q.tensor_type(), "{}", spec.name);
                        // Values survive within a step (half a step, but q5_0 caps the
                        // largest of the other sign at 15 steps); a q5_0 step of a block whose
                        // extreme is at most 0.5 is 1/32.
                        let a = floats(*ty_in, data_in);
                        let b = floats(*ty_out, data_out);
                        assert_eq!(a.len(), b.len());
                        let worst = a
                            .iter()
                            .zip(&b)
                            .map(|(x, y)| (x - y).abs())
                            .fold(0f32, f32::max);
                        assert!(worst <= 1.01 * 0.5 / 16.0, "{}: {worst}", spec.name);
                    }
                }
                // Per encoder layer 4 attention + 2 MLP matrices, the token embedding, and per
                // decoder layer 8 attention + 2 MLP matrices.
                assert_eq!(n_matrices, 6 + 1 + 2 * 10);
            }
        }
    }

    #[test]
    fn q8_0_output_is_about_half_of_f16_matrices() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.bin");
        write_noisy_model(&input, &blockable(1));
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        let q8 = quantize(&input, &dir.path().join("q8.bin"), QuantType::Q8_0).unwrap();
        let q5 = quantize(&input, &dir.path().join("q5.bin"), QuantType::Q5_0).unwrap();
        assert!(q8.size_bytes < size(&input));
        assert!(q5.size_bytes < q8.size_bytes);
    }

    #[test]
    fn refuses_quantised_missing_and_invalid_inputs_without_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        let tmp = dir.path().join("out.bin.tmp");
        let left = || out.exists() || tmp.exists();

        let input = dir.path().join("in.bin");
        write_noisy_model(&input, &blockable(1));
        let q8 = dir.path().join("q8.bin");
        quantize(&input, &q8, QuantType::Q8_0).unwrap();
        let e = quantize(&q8, &out, QuantType::Q5_0).unwrap_err();
        assert!(matches!(e, QuantizeError::AlreadyQuantized { .. }), "{e:?}");
        assert!(e.to_string().contains("already quantised (q8_0)"), "{e}");
        assert!(!left());

        let e = quantize(&dir.path().join("absent.bin"), &out, QuantType::Q8_0).unwrap_err();
        assert!(
            matches!(e, QuantizeError::Input(ModelError::Missing { .. })),
            "{e:?}"
        );
        assert!(!left());

        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"not a model at all").unwrap();
        let e = quantize(&junk, &out, QuantType::Q8_0).unwrap_err();
        assert!(
            matches!(e, QuantizeError::Input(ModelError::NotGgml { .. })),
            "{e:?}"
        );
        assert!(!left());

        // A truncated model: validation fails before a temporary file exists.
        let bytes = std::fs::read(&input).unwrap();
        let cut = dir.path().join("cut.bin");
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
        let e = quantize(&cut, &out, QuantType::Q5_0).unwrap_err();
        assert!(
            matches!(e, QuantizeError::Input(ModelError::Truncated { .. })),
            "{e:?}"
        );
        assert!(!left());

        // Quantising onto the input itself would replace the only float copy.
        let e = quantize(&input, &input, QuantType::Q8_0).unwrap_err();
        assert!(matches!(e, QuantizeError::SameFile { .. }), "{e:?}");
        assert_eq!(std::fs::read(&input).unwrap(), bytes);

        // An existing output is left alone when quantising fails.
        std::fs::write(&out, b"keep me").unwrap();
        assert!(quantize(&junk, &out, QuantType::Q8_0).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
        assert!(!tmp.exists());
    }

    #[test]
    fn refuses_rows_that_do_not_split_into_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.bin");
        // tiny_hparams' rows of 8 values are a valid f16 model but no valid q8_0 one.
        write_model(&input, &tiny_hparams());
        let out = dir.path().join("out.bin");
        let e = quantize(&input, &out, QuantType::Q8_0).unwrap_err();
        match &e {
            QuantizeError::RowLength { row_len, to, .. } => {
                assert_eq!((*row_len, *to), (8, QuantType::Q8_0));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("blocks of 32"), "{e}");
        assert!(!out.exists());
        assert!(!dir.path().join("out.bin.tmp").exists());
    }
}
