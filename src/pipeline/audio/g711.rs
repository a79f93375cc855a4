//! ITU-T G.711 companding: mu-law (North America, Japan) and A-law (Europe, most of the rest of
//! the world), the two 8-bit codes telephone audio arrives in.
//!
//! Expansion (code -> linear) goes through 256-entry tables built at compile time, because the
//! live daemon expands every byte of every call. Compression (linear -> code) is computed with
//! a few bit operations. Both directions agree byte for byte with sox (checked in the tests).
//! Linear values use the usual 16-bit scaling (mu-law peaks at +/-32124, A-law at +/-32256),
//! so they mix with ordinary 16-bit PCM.
//!
//! This module does not know about WAV files, RTP packets or sample rates: it maps bytes to
//! samples and back, nothing more.

/// The mu-law bias (16-bit scale): added before the segment search so that the segment
/// boundaries become powers of two.
const ULAW_BIAS: i32 = 0x84;

/// Scale from 16-bit linear to f32 in [-1, 1), the same scale the WAV reader uses for PCM.
const I16_SCALE: f32 = 1.0 / 32_768.0;

const fn ulaw_expand(code: u8) -> i16 {
    // Codes are stored inverted on the wire so that silence is not a long run of zero bits.
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_expand(code: u8) -> i16 {
    // Even bits are inverted on the wire (the 0x55 mask), again for line-coding reasons.
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    // Reconstruct at the middle of the quantisation interval (the "+ half step" terms).
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_expand(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_expand(i as u8);
        i += 1;
    }
    table
}

static ULAW_TO_I16: [i16; 256] = build_ulaw_table();
static ALAW_TO_I16: [i16; 256] = build_alaw_table();

/// Expands one mu-law code to 16-bit linear PCM.
#[inline]
pub fn ulaw_to_i16(code: u8) -> i16 {
    ULAW_TO_I16[code as usize]
}

/// Expands one A-law code to 16-bit linear PCM.
#[inline]
pub fn alaw_to_i16(code: u8) -> i16 {
    ALAW_TO_I16[code as usize]
}

/// Compresses a 16-bit linear sample to mu-law.
///
/// G.711 mu-law is defined on 14-bit samples, so the input is first rounded to the nearest
/// 14-bit value. Rounding rather than truncating is what sox does; doing the same keeps the
/// bytes identical, so fixtures and captures compare exactly.
pub fn i16_to_ulaw(sample: i16) -> u8 {
    let value = (i32::from(sample) + 2) >> 2;
    let (sign, magnitude) = if value < 0 {
        (0x80u8, -value)
    } else {
        (0x00u8, value)
    };
    // With the 14-bit bias (33) added, segment e spans [32 << e, 64 << e); clamping to the top
    // of segment 7 saturates full-scale input at the loudest code.
    let biased = (magnitude + (ULAW_BIAS >> 2)).min(0x1FFF);
    let top_bit = 31 - biased.leading_zeros() as i32;
    let exponent = (top_bit - 5) as u8;
    let mantissa = ((biased >> (exponent + 1)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Compresses a 16-bit linear sample to A-law.
///
/// A-law is defined on 13-bit samples: the input is rounded to the nearest 13-bit value, and
/// negative values use the one's-complement magnitude `-x - 1`, as the classic reference
/// implementations do (again byte-identical to sox).
pub fn i16_to_alaw(sample: i16) -> u8 {
    let value = ((i32::from(sample) + 4) >> 3).min(0x0FFF);
    // The sign bit is set for non-negative values in A-law.
    let (sign, magnitude) = if value < 0 {
        (0x00u8, -value - 1)
    } else {
        (0x80u8, value)
    };
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        // Segment s (1..=7) covers magnitudes [16 << s, 32 << s); 13 bits never exceed 7.
        let top_bit = 31 - magnitude.leading_zeros() as i32;
        let segment = top_bit - 4;
        ((segment << 4) as u8) | ((magnitude >> segment) & 0x0F) as u8
    };
    (sign | code) ^ 0x55
}

/// Expands mu-law bytes to f32 samples in [-1, 1), appending to `out` (no allocation once `out`
/// has grown to the frame size, which suits per-packet use in the live daemon).
pub fn ulaw_slice_to_f32(input: &[u8], out: &mut Vec<f32>) {
    out.extend(input.iter().map(|&b| ulaw_to_i16(b) as f32 * I16_SCALE));
}

/// Expands A-law bytes to f32 samples in [-1, 1), appending to `out`.
pub fn alaw_slice_to_f32(input: &[u8], out: &mut Vec<f32>) {
    out.extend(input.iter().map(|&b| alaw_to_i16(b) as f32 * I16_SCALE));
}

/// Converts one f32 sample in [-1, 1] to 16-bit PCM, clamping out-of-range values and mapping
/// NaN to silence, so encoders downstream never see garbage.
pub fn f32_to_i16(sample: f32) -> i16 {
    if sample.is_nan() {
        return 0;
    }
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// Compresses f32 samples to mu-law, appending to `out`.
pub fn f32_slice_to_ulaw(input: &[f32], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&s| i16_to_ulaw(f32_to_i16(s))));
}

/// Compresses f32 samples to A-law, appending to `out`.
pub fn f32_slice_to_alaw(input: &[f32], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&s| i16_to_alaw(f32_to_i16(s))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_to_i16(0xFF), 0);
        assert_eq!(ulaw_to_i16(0x7F), 0);
        assert_eq!(ulaw_to_i16(0x00), -32124);
        assert_eq!(ulaw_to_i16(0x80), 32124);
        assert_eq!(ulaw_to_i16(0xFE), 8);
        assert_eq!(ulaw_to_i16(0x7E), -8);
        assert_eq!(ulaw_to_i16(0xF0), 120);
        assert_eq!(ulaw_to_i16(0xEF), 132);
        assert_eq!(i16_to_ulaw(0), 0xFF);
        assert_eq!(i16_to_ulaw(i16::MAX), 0x80);
        assert_eq!(i16_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_i16(0xD5), 8);
        assert_eq!(alaw_to_i16(0x55), -8);
        assert_eq!(alaw_to_i16(0xAA), 32256);
        assert_eq!(alaw_to_i16(0x2A), -32256);
        assert_eq!(alaw_to_i16(0xD4), 24);
        assert_eq!(alaw_to_i16(0xC5), 264);
        assert_eq!(i16_to_alaw(0), 0xD5);
        // Input is rounded to 13 bits first, so -1 is still "zero" and -5 the first negative.
        assert_eq!(i16_to_alaw(-1), 0xD5);
        assert_eq!(i16_to_alaw(-5), 0x55);
        assert_eq!(i16_to_alaw(i16::MAX), 0xAA);
        assert_eq!(i16_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn tables_are_symmetric() {
        for code in 0..=0x7Fu8 {
            assert_eq!(
                ulaw_to_i16(code),
                -ulaw_to_i16(code | 0x80),
                "mu-law {code:#04x}"
            );
            assert_eq!(
                alaw_to_i16(code),
                -alaw_to_i16(code | 0x80),
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn ulaw_code_round_trip() {
        for code in 0..=255u8 {
            let linear = ulaw_to_i16(code);
            // 0x7F is "negative zero"; it expands to 0, which compresses to the canonical 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                i16_to_ulaw(linear),
                expected,
                "code {code:#04x} -> {linear}"
            );
        }
    }

    #[test]
    fn alaw_code_round_trip() {
        for code in 0..=255u8 {
            let linear = alaw_to_i16(code);
            assert_eq!(i16_to_alaw(linear), code, "code {code:#04x} -> {linear}");
        }
    }

    /// Compress-then-expand of every 16-bit value stays within one quantisation step of the
    /// input, and the resulting staircase never goes down.
    #[test]
    fn linear_round_trip_is_monotonic_and_close() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_i16(i16_to_ulaw(x));
            let a = alaw_to_i16(i16_to_alaw(x));
            assert!(u >= last_u, "mu-law not monotonic at {x}");
            assert!(a >= last_a, "A-law not monotonic at {x}");
            last_u = u;
            last_a = a;
            // The top segment's step is 1024 for both laws; clipping near full scale stays below.
            let err_u = (u as i32 - x as i32).abs();
            let err_a = (a as i32 - x as i32).abs();
            assert!(err_u <= 1024, "mu-law error {err_u} at {x}");
            assert!(err_a <= 1024, "A-law error {err_a} at {x}");
            // Relative error stays small away from zero: the point of companding.
            if x.unsigned_abs() > 256 {
                assert!(
                    err_u as f32 / (x as f32).abs() < 0.07,
                    "mu-law rel error at {x}"
                );
                assert!(
                    err_a as f32 / (x as f32).abs() < 0.07,
                    "A-law rel error at {x}"
                );
            }
        }
    }

    #[test]
    fn expansion_is_monotonic_in_code_order() {
        // Within one sign, larger magnitude codes (after removing the wire inversion) are louder.
        for sign in [0x00u8, 0x80] {
            let mut prev_u: Option<i32> = None;
            let mut prev_a: Option<i32> = None;
            for level in 0..=0x7Fu8 {
                let u = (ulaw_to_i16(!(sign | level)) as i32).abs();
                let a = (alaw_to_i16((sign | level) ^ 0x55) as i32).abs();
                if let Some(p) = prev_u {
                    assert!(u > p, "mu-law level {level}");
                }
                if let Some(p) = prev_a {
                    assert!(a > p, "A-law level {level}");
                }
                prev_u = Some(u);
                prev_a = Some(a);
            }
        }
    }

    /// Our tables and encoders agree with sox's, byte for byte, over every code and every
    /// 16-bit value.
    #[test]
    fn matches_sox() {
        use crate::pipeline::audio::wav::sox_support::sox;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let codes: Vec<u8> = (0..=255).collect();
        std::fs::write(path("codes.raw"), &codes).unwrap();
        let linear: Vec<u8> = (i16::MIN..=i16::MAX).flat_map(i16::to_le_bytes).collect();
        std::fs::write(path("linear.raw"), &linear).unwrap();
        let raw_in = |enc: &str, bits: &str, file: &str| {
            [
                "-t", "raw", "-r", "8000", "-c", "1", "-e", enc, "-b", bits, "-L",
            ]
            .into_iter()
            .map(str::to_string)
            .chain([path(file)])
            .collect::<Vec<String>>()
        };
        for (law, expand, compress) in [
            (
                "mu-law",
                ulaw_to_i16 as fn(u8) -> i16,
                i16_to_ulaw as fn(i16) -> u8,
            ),
            ("a-law", alaw_to_i16, i16_to_alaw),
        ] {
            let mut args = vec!["-D".to_string()];
            args.extend(raw_in(law, "8", "codes.raw"));
            args.extend(
                ["-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-"].map(String::from),
            );
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = sox(&refs);
            let theirs: Vec<i16> = out
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let ours: Vec<i16> = codes.iter().map(|&c| expand(c)).collect();
            assert_eq!(ours, theirs, "{law} expansion");

            let mut args = vec!["-D".to_string()];
            args.extend(raw_in("signed-integer", "16", "linear.raw"));
            args.extend(["-t", "raw", "-e", law, "-b", "8", "-"].map(String::from));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let theirs = sox(&refs);
            let ours: Vec<u8> = (i16::MIN..=i16::MAX).map(compress).collect();
            let mismatches: Vec<(i16, u8, u8)> = (i16::MIN..=i16::MAX)
                .zip(ours.iter().zip(&theirs))
                .filter(|(_, (a, b))| a != b)
                .map(|(x, (&a, &b))| (x, a, b))
                .take(10)
                .collect();
            assert!(
                mismatches.is_empty(),
                "{law} compression (x, ours, sox): {mismatches:?}"
            );
        }
    }

    #[test]
    fn slice_helpers() {
        let mut out = vec![1.0f32];
        ulaw_slice_to_f32(&[0xFF, 0x80, 0x00], &mut out);
        assert_eq!(out[0], 1.0, "appends, does not clear");
        assert_eq!(out[1], 0.0);
        assert!((out[2] - 32124.0 / 32768.0).abs() < 1e-6);
        assert!((out[3] + 32124.0 / 32768.0).abs() < 1e-6);

        let mut out = Vec::new();
        alaw_slice_to_f32(&[0xD5, 0x55], &mut out);
        assert_eq!(out, vec![8.0 / 32768.0, -8.0 / 32768.0]);

        let mut bytes = Vec::new();
        f32_slice_to_ulaw(&[0.0, 1.5, -1.5, f32::NAN], &mut bytes);
        assert_eq!(bytes, vec![0xFF, 0x80, 0x00, 0xFF]);
        let mut bytes = Vec::new();
        f32_slice_to_alaw(&[0.0, 1.0, -1.0], &mut bytes);
        assert_eq!(bytes, vec![0xD5, 0xAA, 0x2A]);
    }
}
