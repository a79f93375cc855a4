//! Throughput of the per-call stages that run on every leg or every utterance of every live
//! call: resampling phone audio to 16 kHz, segmenting it into utterances, the raised-voice
//! detector, and the lexicon on a transcript line. Run with `cargo bench --bench audio`;
//! figures are in the README.

use std::hint::black_box;

use callguard::domain::leg::{AudioChunk, Leg};
use callguard::pipeline::audio::resample::{StreamResampler, resample_to};
use callguard::pipeline::detect::energy::{EnergyConfig, RaisedVoiceDetector};
use callguard::pipeline::detect::lexicon::Lexicon;
use callguard::pipeline::segment::SegmentConfig;
use callguard::pipeline::segment::Segmenter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Ten seconds of a speech-like signal with pauses, at `rate`.
fn signal(rate: u32, seconds: usize) -> Vec<f32> {
    let n = rate as usize * seconds;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let on = (t as usize) % 3 != 2;
            let v = (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                + 0.5 * (2.0 * std::f32::consts::PI * 720.0 * t).sin();
            let hiss = ((i * 7919) % 101) as f32 / 101.0 - 0.5;
            if on {
                0.2 * v + 0.002 * hiss
            } else {
                0.002 * hiss
            }
        })
        .collect()
}

fn resampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    for rate in [8000u32, 44_100, 48_000] {
        let input = signal(rate, 10);
        g.throughput(Throughput::Elements(input.len() as u64));
        g.bench_function(format!("whole_{rate}_to_16k_10s"), |b| {
            b.iter(|| resample_to(black_box(&input), rate, 16_000).unwrap())
        });
    }
    // The live path: 20 ms phone frames (160 samples at 8 kHz) fed one at a time.
    let input = signal(8000, 10);
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("stream_8k_to_16k_20ms_frames_10s", |b| {
        let mut out = Vec::with_capacity(input.len() * 2 + 1024);
        b.iter(|| {
            let mut r = StreamResampler::new(8000, 16_000).unwrap();
            out.clear();
            for frame in input.chunks(160) {
                r.process(black_box(frame), &mut out);
            }
            r.flush(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn segmenting(c: &mut Criterion) {
    let input = signal(16_000, 10);
    let cfg = SegmentConfig::default();
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("16k_10s_20ms_chunks", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(Leg::Customer, &cfg);
            let mut n = 0;
            for chunk in input.chunks(320) {
                n += s.push(black_box(chunk)).len();
            }
            n + s.finish().len()
        })
    });
    g.finish();
}

fn detecting(c: &mut Criterion) {
    let input = signal(16_000, 10);
    let cfg = EnergyConfig::default();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("raised_voice_16k_10s_20ms_chunks", |b| {
        b.iter(|| {
            let mut d = RaisedVoiceDetector::new(Leg::Customer, &cfg);
            let mut n = 0;
            for (i, chunk) in input.chunks(320).enumerate() {
                let chunk = AudioChunk {
                    leg: Leg::Customer,
                    start_sample: (i * 320) as u64,
                    samples: chunk.to_vec(),
                };
                n += d.update(black_box(&chunk)).len();
            }
            n + d.finish().len()
        })
    });
    let lexicon = Lexicon::builtin();
    let en = "I ordered a blender three weeks ago, it never arrived, and if it is not here \
              tomorrow I will call a journalist and cancel my account.";
    let zh = "我的快递已经晚了一个星期，再不解决我就要去媒体曝光你们，还要打一二三一五投诉。";
    g.throughput(Throughput::Elements(1));
    g.bench_function("lexicon_scan_english_line", |b| {
        b.iter(|| lexicon.scan(Leg::Customer, black_box(en)).len())
    });
    g.bench_function("lexicon_scan_chinese_line", |b| {
        b.iter(|| lexicon.scan(Leg::Customer, black_box(zh)).len())
    });
    g.finish();
}

criterion_group!(benches, resampling, segmenting, detecting);
criterion_main!(benches);
