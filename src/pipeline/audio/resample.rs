//! Sample-rate conversion of one mono channel, normally to the pipeline's 16 kHz: a whole
//! recording at once ([`resample_to`]) or a live stream in arbitrary pieces
//! ([`StreamResampler`]). Both run the same code, so they produce the same samples.
//!
//! The work is done by rubato's synchronous FFT resampler (`rubato::Fft`): telephony ratios are
//! fixed (8k, 44.1k, 48k -> 16k), and for a fixed ratio it is exact (no interpolation of
//! fractional positions), linear-phase, and cheaper than rubato's sinc interpolator. Its
//! filter delay is removed here, so output sample `i` is the signal at
//! input time `i / to_rate` seconds: transcript timestamps rely on that. The output length is
//! `ceil(input_len * to / from)`, i.e. exactly the samples whose time falls inside the input.
//!
//! Does not: mix channels, change rates mid-stream, or drift-compensate two clocks (a live
//! source whose clock wanders needs an asynchronous resampler; that is a later issue).

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Each FFT block must span at least this many samples on its shorter side. The anti-aliasing
/// filter is as long as the block, so this sets its sharpness: 256 puts the cutoff at about
/// 95% of the lower Nyquist frequency (3.8 kHz for 8 kHz phone audio, 7.6 kHz when going down
/// to 16 kHz), while keeping a live stream's added latency near 50 ms.
const MIN_BLOCK: usize = 256;

/// Refuse rate pairs so unrelated that a block would need more memory than is sensible.
const MAX_BLOCK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz to {to} Hz: sample rates must be above zero")]
    InvalidRate { from: u32, to: u32 },
    /// The rates' ratio reduces to such large whole numbers (e.g. coprime megahertz rates) that
    /// one exact-ratio block would need millions of samples.
    #[error("cannot resample {from} Hz to {to} Hz: unsupported rate ratio")]
    UnsupportedRatio { from: u32, to: u32 },
    #[error("cannot set up a {from} Hz to {to} Hz resampler: {reason}")]
    Setup { from: u32, to: u32, reason: String },
}

/// Resamples a whole mono signal from `from_rate` to `to_rate` (pass-through when equal).
pub fn resample_to(input: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, ResampleError> {
    let mut resampler = StreamResampler::new(from_rate, to_rate)?;
    let mut out = Vec::with_capacity(output_len(input.len(), from_rate, to_rate));
    resampler.process(input, &mut out);
    resampler.flush(&mut out);
    Ok(out)
}

/// How many samples resampling `input_len` samples produces: `ceil(input_len * to / from)`,
/// the output instants that fall inside the input's duration.
pub fn output_len(input_len: usize, from_rate: u32, to_rate: u32) -> usize {
    if from_rate == 0 {
        return 0;
    }
    let n = input_len as u128 * u128::from(to_rate);
    usize::try_from(n.div_ceil(u128::from(from_rate))).unwrap_or(usize::MAX)
}

/// A resampler for audio that arrives piece by piece (e.g. 20 ms RTP frames).
///
/// Feed it with [`process`](Self::process) and finish with [`flush`](Self::flush); the samples
/// appended to `out` over the whole stream equal what [`resample_to`] gives for the
/// concatenated input. Output comes in blocks (256 input samples at 8 kHz, i.e. 32 ms), so a
/// call may append nothing. After `flush` it is ready for a new stream.
#[derive(Debug)]
pub struct StreamResampler {
    from_rate: u32,
    to_rate: u32,
    /// `None` when the rates are equal.
    engine: Option<FftEngine>,
}

#[derive(Debug)]
struct FftEngine {
    resampler: Fft<f32>,
    block_in: usize,
    block_out: usize,
    /// The filter's delay in output samples, trimmed from the start of the stream.
    delay: usize,
    /// Input gathered towards the next block; never longer than `block_in`.
    pending: Vec<f32>,
    /// One block of output, before the delay trim.
    block: Vec<f32>,
    /// Output samples still to drop at the start of the stream.
    to_skip: usize,
    input_total: u64,
    output_total: u64,
}

impl StreamResampler {
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        if from_rate == 0 || to_rate == 0 {
            return Err(ResampleError::InvalidRate {
                from: from_rate,
                to: to_rate,
            });
        }
        let engine = if from_rate == to_rate {
            None
        } else {
            Some(FftEngine::new(from_rate, to_rate)?)
        };
        Ok(StreamResampler {
            from_rate,
            to_rate,
            engine,
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Resamples `input` and appends whatever output is ready to `out`. Never fails: the block
    /// buffers are sized once, in [`new`](Self::new), and nothing is allocated here apart from
    /// `out` growing.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(engine) = &mut self.engine else {
            out.extend_from_slice(input);
            return;
        };
        engine.input_total += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let take = (engine.block_in - engine.pending.len()).min(rest.len());
            engine.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if engine.pending.len() == engine.block_in {
                engine.run_block();
                engine.pending.clear();
                engine.emit(out, usize::MAX);
            }
        }
    }

    /// Ends the stream: appends the remaining output, so that the stream's total is exactly
    /// [`output_len`] of its total input, then resets for a new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let Some(engine) = &mut self.engine else {
            return;
        };
        let wanted = output_len_u64(engine.input_total, self.from_rate, self.to_rate);
        // The held-back input plus the filter's tail need at most two more (zero-padded)
        // blocks, since the delay is half a block.
        while engine.output_total < wanted {
            engine.pending.resize(engine.block_in, 0.0);
            engine.run_block();
            engine.pending.clear();
            let missing = usize::try_from(wanted - engine.output_total).unwrap_or(usize::MAX);
            engine.emit(out, missing);
        }
        engine.reset();
    }

    /// Drops any buffered input and filter state, as if newly created.
    pub fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
    }
}

/// [`output_len`] for sample counts past `usize` (a live leg's position since its call started).
pub fn output_len_u64(input_len: u64, from_rate: u32, to_rate: u32) -> u64 {
    let n = u128::from(input_len) * u128::from(to_rate);
    u64::try_from(n.div_ceil(u128::from(from_rate))).unwrap_or(u64::MAX)
}

impl FftEngine {
    fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        let from = from_rate as usize;
        let to = to_rate as usize;
        let common = gcd(from, to);
        let (unit_in, unit_out) = (from / common, to / common);
        // Blocks are whole multiples of the smallest exact ratio (unit_in : unit_out). The
        // multiple is kept even so both block sizes are even: the filter is centred on input
        // sample block_in / 2, which then lands exactly on output sample block_out / 2, and the
        // delay trim is exact rather than off by a fraction of a sample.
        let units = MIN_BLOCK.div_ceil(unit_in.min(unit_out)).max(2);
        let units = units + units % 2;
        let block_in = unit_in.saturating_mul(units);
        let block_out = unit_out.saturating_mul(units);
        if block_in > MAX_BLOCK || block_out > MAX_BLOCK {
            return Err(ResampleError::UnsupportedRatio {
                from: from_rate,
                to: to_rate,
            });
        }
        let resampler = Fft::<f32>::new_custom(
            from,
            to,
            block_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )
        .map_err(|e| ResampleError::Setup {
            from: from_rate,
            to: to_rate,
            reason: e.to_string(),
        })?;
        // The sizes above are what rubato derives too; if a future version disagrees, the block
        // bookkeeping here would be wrong, so refuse rather than produce skewed audio.
        if resampler.input_frames_next() != block_in || resampler.output_frames_next() != block_out
        {
            return Err(ResampleError::Setup {
                from: from_rate,
                to: to_rate,
                reason: format!(
                    "rubato chose blocks of {} -> {} samples, expected {block_in} -> {block_out}",
                    resampler.input_frames_next(),
                    resampler.output_frames_next()
                ),
            });
        }
        let delay = block_out / 2;
        Ok(FftEngine {
            resampler,
            block_in,
            block_out,
            delay,
            pending: Vec::with_capacity(block_in),
            block: vec![0.0; block_out],
            to_skip: delay,
            input_total: 0,
            output_total: 0,
        })
    }

    /// Resamples `pending` (exactly one block) into `block`.
    fn run_block(&mut self) {
        let ok = match (
            SequentialSlice::new(&self.pending[..], 1, self.block_in),
            SequentialSlice::new_mut(&mut self.block[..], 1, self.block_out),
        ) {
            (Ok(input), Ok(mut output)) => self
                .resampler
                .process_into_buffer(&input, &mut output, None)
                .map_err(|e| e.to_string()),
            _ => Err("block buffers have the wrong size".to_string()),
        };
        // Buffers are sized at construction, so this cannot happen; if it somehow does,
        // silence keeps the stream's length and timing right, which matters more downstream
        // than one lost block.
        if let Err(reason) = ok {
            tracing::error!(%reason, "resampler block failed; emitting silence");
            self.block.fill(0.0);
        }
    }

    /// Appends the last block's output, minus any start-of-stream delay, at most `limit` samples.
    fn emit(&mut self, out: &mut Vec<f32>, limit: usize) {
        let skip = self.to_skip.min(self.block.len());
        self.to_skip -= skip;
        let ready = &self.block[skip..];
        let ready = &ready[..ready.len().min(limit)];
        out.extend_from_slice(ready);
        self.output_total += ready.len() as u64;
    }

    fn reset(&mut self) {
        self.resampler.reset();
        self.pending.clear();
        self.to_skip = self.delay;
        self.input_total = 0;
        self.output_total = 0;
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, len: usize, amplitude: f64) -> Vec<f32> {
        (0..len)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    fn zero_crossing_frequency(x: &[f32], rate: u32) -> f64 {
        let mut crossings = Vec::new();
        for i in 1..x.len() {
            let (a, b) = (x[i - 1] as f64, x[i] as f64);
            if a < 0.0 && b >= 0.0 {
                crossings.push((i - 1) as f64 + a / (a - b));
            }
        }
        assert!(crossings.len() > 10, "too few zero crossings");
        let span = crossings[crossings.len() - 1] - crossings[0];
        (crossings.len() - 1) as f64 * rate as f64 / span
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    const RATES: [u32; 5] = [8000, 11025, 22050, 44100, 48000];

    #[test]
    fn sine_keeps_frequency_and_level() {
        for from in RATES {
            for freq in [300.0, 1000.0, 3000.0] {
                let input = sine(freq, from, from as usize, 0.5);
                let out = resample_to(&input, from, 16000).unwrap();
                // Ignore the edges, where the signal starts and stops abruptly.
                let middle = &out[1000..out.len() - 1000];
                let f = zero_crossing_frequency(middle, 16000);
                assert!(
                    (f - freq).abs() < 0.001 * freq,
                    "{from} Hz, {freq} Hz -> {f}"
                );
                let level = rms(middle) / (0.5 / 2f64.sqrt());
                assert!(
                    (level - 1.0).abs() < 0.01,
                    "{from} Hz, {freq} Hz: gain {level}"
                );
            }
        }
    }

    #[test]
    fn output_matches_the_ideal_resampled_sine() {
        // Band-limited input: every output sample should be the sine at time i / 16000.
        for from in [8000u32, 44100, 48000] {
            let input = sine(1000.0, from, from as usize / 2, 0.5);
            let out = resample_to(&input, from, 16000).unwrap();
            let ideal = sine(1000.0, 16000, out.len(), 0.5);
            let worst = out[800..out.len() - 800]
                .iter()
                .zip(&ideal[800..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 2e-3, "{from} Hz: worst error {worst}");
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        for (from, freq) in [(44100u32, 10_000.0), (48000, 12_000.0), (22050, 9_000.0)] {
            let input = sine(freq, from, from as usize, 0.5);
            let out = resample_to(&input, from, 16000).unwrap();
            let level = rms(&out[1000..out.len() - 1000]);
            assert!(
                level < 0.002,
                "{from} Hz, {freq} Hz tone aliases at rms {level}"
            );
        }
    }

    #[test]
    fn output_length_is_exact() {
        for from in RATES.into_iter().chain([16000, 32000, 12000]) {
            for len in [
                0usize, 1, 5, 159, 160, 255, 256, 441, 1000, 4410, 44101, 96000,
            ] {
                let input = vec![0.1f32; len];
                let out = resample_to(&input, from, 16000).unwrap();
                assert_eq!(out.len(), output_len(len, from, 16000), "{from} Hz, {len}");
                let expected = (len as f64 * 16000.0 / from as f64).ceil() as usize;
                assert_eq!(out.len(), expected, "{from} Hz, {len}");
            }
        }
    }

    /// An impulse at input sample k must peak at output time k * to / from: the filter's delay
    /// is compensated, even for ratios that are not whole numbers.
    #[test]
    fn impulse_peaks_at_the_right_sample() {
        for from in RATES {
            for k in [0usize, 1, 37, 441, 1000, 2999] {
                let mut input = vec![0.0f32; 4000];
                input[k] = 1.0;
                let out = resample_to(&input, from, 16000).unwrap();
                let peak = out
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                    )
                    .0;
                let expected = k as f64 * 16000.0 / from as f64;
                assert!(
                    (peak as f64 - expected).abs() <= 0.5,
                    "{from} Hz impulse at {k}: peak at {peak}, expected {expected:.3}"
                );
            }
        }
    }

    /// The same, to a hundredth of a sample: a smooth pulse centred between input samples
    /// must come out centred at the same instant. Its centroid is a precise position measure
    /// because the pulse is well inside the passband.
    #[test]
    fn pulse_centre_is_preserved_to_a_hundredth_of_a_sample() {
        for from in RATES {
            for centre_ms in [5.0f64, 31.3, 100.77] {
                let sigma = 0.001 * from as f64;
                let centre = centre_ms / 1000.0 * from as f64;
                let input: Vec<f32> = (0..from as usize / 5)
                    .map(|i| (-0.5 * ((i as f64 - centre) / sigma).powi(2)).exp() as f32)
                    .collect();
                let out = resample_to(&input, from, 16000).unwrap();
                let (mut moment, mut mass) = (0.0, 0.0);
                for (i, &v) in out.iter().enumerate() {
                    moment += i as f64 * v as f64;
                    mass += v as f64;
                }
                let measured = moment / mass;
                let expected = centre_ms / 1000.0 * 16000.0;
                assert!(
                    (measured - expected).abs() < 0.01,
                    "{from} Hz pulse at {centre_ms} ms: centre {measured:.4}, \
                     expected {expected:.4}"
                );
                // Area is preserved too (scaled by the rate ratio): no gain error at DC.
                let in_mass: f64 = input.iter().map(|&v| v as f64).sum();
                let ratio = mass / (in_mass * 16000.0 / from as f64);
                assert!((ratio - 1.0).abs() < 1e-3, "{from} Hz: area ratio {ratio}");
            }
        }
    }

    #[test]
    fn step_crosses_half_way_at_the_right_time() {
        for from in RATES {
            let edge = 2500usize;
            let input: Vec<f32> = (0..5000)
                .map(|i| if i < edge { 0.0 } else { 1.0 })
                .collect();
            let out = resample_to(&input, from, 16000).unwrap();
            // A step through a symmetric filter crosses 0.5 at the step's own time, minus half
            // an input sample (the jump happens between samples edge-1 and edge).
            let expected = (edge as f64 - 0.5) * 16000.0 / from as f64;
            let i = out.iter().position(|&v| v >= 0.5).unwrap();
            let (a, b) = (out[i - 1] as f64, out[i] as f64);
            let measured = (i - 1) as f64 + (0.5 - a) / (b - a);
            assert!(
                (measured - expected).abs() < 0.1,
                "{from} Hz: crossing at {measured:.3}, expected {expected:.3}"
            );
        }
    }

    #[test]
    fn streaming_equals_whole_file_for_any_chunking() {
        for from in [8000u32, 44100, 48000, 22050] {
            let input = sine(700.0, from, from as usize * 3 / 4 + 13, 0.4);
            let whole = resample_to(&input, from, 16000).unwrap();
            for chunk in [1usize, 7, 160, 333, 882, 4096] {
                let mut r = StreamResampler::new(from, 16000).unwrap();
                let mut out = Vec::new();
                for piece in input.chunks(chunk) {
                    r.process(piece, &mut out);
                }
                r.flush(&mut out);
                assert_eq!(out, whole, "{from} Hz in chunks of {chunk}");
            }
            // Irregular piece sizes, and an empty one, like a jittery network source.
            let mut r = StreamResampler::new(from, 16000).unwrap();
            let mut out = Vec::new();
            let mut rest = &input[..];
            let mut size = 1;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                r.process(&rest[..n], &mut out);
                r.process(&[], &mut out);
                rest = &rest[n..];
                size = (size * 7 + 3) % 1000;
            }
            r.flush(&mut out);
            assert_eq!(out, whole, "{from} Hz in irregular pieces");
        }
    }

    #[test]
    fn flush_resets_for_the_next_stream() {
        let input = sine(440.0, 8000, 1234, 0.5);
        let whole = resample_to(&input, 8000, 16000).unwrap();
        let mut r = StreamResampler::new(8000, 16000).unwrap();
        for _ in 0..2 {
            let mut out = Vec::new();
            for piece in input.chunks(160) {
                r.process(piece, &mut out);
            }
            r.flush(&mut out);
            assert_eq!(out, whole);
        }
        let mut out = Vec::new();
        r.flush(&mut out);
        assert!(out.is_empty(), "flushing an empty stream adds nothing");
    }

    #[test]
    fn streaming_output_lags_by_at_most_a_block_and_a_half() {
        // What the live daemon sees: 20 ms phone frames in, 16 kHz out, with bounded latency.
        let mut r = StreamResampler::new(8000, 16000).unwrap();
        let mut out = Vec::new();
        for (n, frame) in sine(440.0, 8000, 8000, 0.5).chunks(160).enumerate() {
            r.process(frame, &mut out);
            let due = (n + 1) * 320;
            assert!(out.len() <= due, "output ahead of input");
            assert!(
                due - out.len() <= 512 + 256,
                "frame {n}: {} behind",
                due - out.len()
            );
        }
    }

    #[test]
    fn equal_rates_pass_through() {
        let input = sine(440.0, 16000, 999, 0.5);
        assert_eq!(resample_to(&input, 16000, 16000).unwrap(), input);
        let mut r = StreamResampler::new(16000, 16000).unwrap();
        let mut out = Vec::new();
        r.process(&input[..10], &mut out);
        assert_eq!(out, input[..10]);
        r.flush(&mut out);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn upsampling_away_from_16k_works_too() {
        let input = sine(1000.0, 16000, 16000, 0.5);
        let out = resample_to(&input, 16000, 44100).unwrap();
        assert_eq!(out.len(), 44100);
        let f = zero_crossing_frequency(&out[2000..42000], 44100);
        assert!((f - 1000.0).abs() < 1.0, "{f}");
    }

    #[test]
    fn bad_rates_are_errors() {
        let err = StreamResampler::new(0, 16000).err().unwrap();
        assert!(matches!(err, ResampleError::InvalidRate { .. }), "{err}");
        assert!(resample_to(&[0.0], 8000, 0).is_err());
        // Coprime rates this large would need blocks of millions of samples.
        let err = StreamResampler::new(4_000_037, 16000).err().unwrap();
        assert!(
            matches!(err, ResampleError::UnsupportedRatio { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
        // Awkward but sane rates still work.
        let out = resample_to(&vec![0.0; 47_999], 47_999, 16000).unwrap();
        assert_eq!(out.len(), 16000);
    }
}
