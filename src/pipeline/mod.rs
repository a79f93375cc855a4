//! The pipeline: one call's audio in, its events out. Per leg, audio is resampled to 16 kHz and
//! cut into utterances; the raised-voice detector hears the audio, Whisper transcribes the
//! utterances, the lexicon and repetition detectors read the words, and the risk engine weighs
//! it all into levels and transfer prompts. The same stages run live (`call`: a task fed by a
//! source) and offline (`offline`: a recording). Nothing here touches a socket, the store or a
//! screen: those are `ingest` (before) and `sinks` (after).
//!
//! | module    | what it does |
//! |-----------|--------------|
//! | `audio`   | WAV and G.711 decoding, resampling, frame DSP, legs of a recording (`[audio]`) |
//! | `segment` | voice activity -> utterances, per leg (`[segment]`) |
//! | `detect`  | pure detectors: raised voice, lexicon, repeated complaints (`[detect]`) |
//! | `risk`    | the pure per-call risk engine and transfer-prompt rules (`[risk]`) |
//! | `assess`  | one call's text-side detectors and risk engine, wired together (pure) |
//! | `redact`  | pure PII redaction of events before they are stored or shown (`[redact]`) |
//! | `asr`     | Whisper: the transcription workers (`[asr]`), and model files in `asr::model` |
//! | `config`  | [`config::PipelineConfig`]: the stages' sections gathered |
//! | `call`    | one live call as an async task: source events in, events out as audio arrives |
//! | `offline` | a recorded call in, its ordered events out (`analyze`, `eval`) |

pub mod asr;
pub mod assess;
pub mod audio;
pub mod call;
pub mod config;
pub mod detect;
pub mod offline;
pub mod redact;
pub mod risk;
pub mod segment;
