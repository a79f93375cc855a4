//! Mel filterbank for whisper.cpp model files.
//!
//! A ggml model file carries the mel filterbank that whisper.cpp applies to the power spectrum.
//! Whisper was trained with librosa's default filters (Slaney mel scale, Slaney area
//! normalisation), so a converted model must carry exactly those. This module only computes the
//! filter matrix; it does not compute spectrograms (whisper.cpp does that itself).

/// Hz per mel on the linear part of the Slaney scale (below 1 kHz).
const LINEAR_HZ_PER_MEL: f64 = 200.0 / 3.0;
/// Where the Slaney scale switches from linear to logarithmic.
const LOG_START_HZ: f64 = 1000.0;
const LOG_START_MEL: f64 = LOG_START_HZ / LINEAR_HZ_PER_MEL;

/// Log step per mel above 1 kHz: 27 mels span a factor of 6.4 in frequency.
fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz < LOG_START_HZ {
        hz / LINEAR_HZ_PER_MEL
    } else {
        LOG_START_MEL + (hz / LOG_START_HZ).ln() / log_step()
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < LOG_START_MEL {
        mel * LINEAR_HZ_PER_MEL
    } else {
        LOG_START_HZ * ((mel - LOG_START_MEL) * log_step()).exp()
    }
}

/// Triangular mel filters from 0 Hz to the Nyquist frequency, Slaney scale, each filter scaled
/// to unit area (2 / band width), as librosa's `filters.mel(sr, n_fft, n_mels)` returns them.
///
/// The result is row-major: `n_mels` rows of `n_fft / 2 + 1` frequency bins. Computed in f64
/// and rounded once to f32, like librosa, so it matches Whisper's own filters to within f32
/// rounding.
pub fn mel_filters(n_mels: usize, n_fft: usize, sample_rate: u32) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    if n_mels == 0 || n_fft == 0 {
        return Vec::new();
    }
    let nyquist = f64::from(sample_rate) / 2.0;

    // Bin centre frequencies: evenly spaced from 0 to Nyquist inclusive.
    let bin_hz: Vec<f64> = (0..n_bins)
        .map(|k| {
            if n_bins == 1 {
                0.0
            } else {
                nyquist * k as f64 / (n_bins - 1) as f64
            }
        })
        .collect();

    // n_mels + 2 edge frequencies, evenly spaced in mel: filter i rises from edge i, peaks at
    // edge i+1 and falls to zero at edge i+2.
    let top_mel = hz_to_mel(nyquist);
    let n_edges = n_mels + 2;
    let edges: Vec<f64> = (0..n_edges)
        .map(|i| mel_to_hz(top_mel * i as f64 / (n_edges - 1) as f64))
        .collect();

    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let (lo, centre, hi) = (edges[i], edges[i + 1], edges[i + 2]);
        let area_norm = 2.0 / (hi - lo);
        for &f in &bin_hz {
            let rising = (f - lo) / (centre - lo);
            let falling = (hi - f) / (hi - centre);
            let w = rising.min(falling).max(0.0);
            out.push((w * area_norm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINS: usize = 201;

    fn at(m: &[f32], row: usize, col: usize) -> f32 {
        m[row * BINS + col]
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-8 + 1e-6 * b.abs()
    }

    #[test]
    fn scale_round_trips_and_switches_at_1khz() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 2500.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        // 27 mels above 1 kHz is a factor of 6.4.
        assert!((mel_to_hz(15.0 + 27.0) - 6400.0).abs() < 1e-9);
    }

    // Reference values printed by librosa 0.11.0 (`librosa.filters.mel(sr=16000, n_fft=400,
    // n_mels=80)` and `n_mels=128`), as (row, column, value); every other entry of those rows
    // is zero.
    const LIBROSA_80: &[(usize, usize, f32)] = &[
        (0, 1, 0.024_862_595),
        (1, 1, 0.001_990_822),
        (1, 2, 0.022_871_772),
        (10, 10, 0.019_908_218),
        (10, 11, 0.004_954_375),
        (40, 42, 0.005_411_105),
        (40, 43, 0.014_735_566),
        (40, 44, 0.006_518_19),
        (79, 186, 0.000_366_741_67),
        (79, 190, 0.002_232_055),
        (79, 192, 0.003_164_712),
        (79, 193, 0.003_141_313_3),
        (79, 199, 0.000_448_759),
    ];
    const LIBROSA_128: &[(usize, usize, f32)] = &[
        (0, 1, 0.012_373_987),
        (64, 42, 0.006_749_682_6),
        (64, 43, 0.018_091_518),
        (127, 191, 0.000_475_695_1),
        (127, 195, 0.005_041_601_6),
        (127, 199, 0.001_114_280_2),
    ];

    #[test]
    fn matches_librosa_80() {
        let m = mel_filters(80, 400, 16000);
        assert_eq!(m.len(), 80 * BINS);
        for &(r, c, v) in LIBROSA_80 {
            assert!(
                close(at(&m, r, c), v),
                "[{r},{c}] = {} want {v}",
                at(&m, r, c)
            );
        }
        // Rows 0, 1, 10 and 40 have exactly the listed non-zero entries.
        let nonzero = |r: usize| (0..BINS).filter(|&c| at(&m, r, c) != 0.0).count();
        assert_eq!(nonzero(0), 1);
        assert_eq!(nonzero(1), 2);
        assert_eq!(nonzero(10), 2);
        assert_eq!(nonzero(40), 3);
        assert_eq!(nonzero(79), 14);
        // librosa: 391 non-zero entries in total.
        assert_eq!(m.iter().filter(|&&v| v != 0.0).count(), 391);
    }

    #[test]
    fn matches_librosa_128() {
        let m = mel_filters(128, 400, 16000);
        assert_eq!(m.len(), 128 * BINS);
        for &(r, c, v) in LIBROSA_128 {
            assert!(
                close(at(&m, r, c), v),
                "[{r},{c}] = {} want {v}",
                at(&m, r, c)
            );
        }
        // librosa: 394 non-zero entries in total.
        assert_eq!(m.iter().filter(|&&v| v != 0.0).count(), 394);
    }

    #[test]
    fn filters_are_triangles_with_rising_peaks() {
        let m = mel_filters(80, 400, 16000);
        let mut last_peak = 0;
        for r in 0..80 {
            let row = &m[r * BINS..(r + 1) * BINS];
            assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0));
            let peak = (0..BINS)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            assert!(
                peak >= last_peak,
                "row {r} peaks before row {}",
                r.saturating_sub(1)
            );
            last_peak = peak;
            // Non-decreasing up to the peak, non-increasing after it.
            assert!(row[..=peak].windows(2).all(|w| w[0] <= w[1]), "row {r}");
            assert!(row[peak..].windows(2).all(|w| w[0] >= w[1]), "row {r}");
        }
        // The top filter ends at Nyquist, which is the last bin: it must be zero there.
        assert_eq!(at(&m, 79, 200), 0.0);
    }

    #[test]
    fn degenerate_sizes_are_empty() {
        assert!(mel_filters(0, 400, 16000).is_empty());
        assert!(mel_filters(80, 0, 16000).is_empty());
    }
}
