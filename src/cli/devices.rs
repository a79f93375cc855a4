//! `callguard devices`: the input devices a `[device]` name may pick, one per line.

use anyhow::Result;

/// `callguard devices`: one line per input device on stdout, a hint on stderr.
pub(super) fn run() -> Result<()> {
    let devices = crate::ingest::device::list_devices()?;
    if devices.is_empty() {
        println!("no input devices found");
        return Ok(());
    }
    for d in &devices {
        println!("{}", d.line());
    }
    eprintln!("(* = the default input; put a name from the first column in [device] name)");
    Ok(())
}
