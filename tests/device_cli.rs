//! The sound card from the command line, with the real binary: `callguard devices` lists input
//! devices (exit 0, also when there are none), a broken audio system is one `error:` line with
//! exit 1, `serve` with a device that does not exist fails at once with a clear message, and on
//! Linux `serve` with ALSA's `null` capture device (installed with alsa-lib's configuration:
//! it delivers silence, faster than real time) hosts the sound-card call that a supervisor
//! sees, and shuts it down cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn assert_one_error_line(r: &Run, expected: &str) {
    assert_eq!(r.code, Some(1), "exit status; stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines, vec![expected], "stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
}

/// Runs the binary with one extra environment variable.
fn run_with_env(args: &[&str], key: &str, value: &str) -> Run {
    let out = bin()
        .args(args)
        .env(key, value)
        .output()
        .expect("run callguard");
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "panicked: {}", r.stderr);
    r
}

#[test]
fn devices_lists_the_input_devices() {
    let r = run(&["devices"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(!lines.is_empty(), "no output");
    if lines == ["no input devices found"] {
        // Allowed in general; not on Linux, where alsa-lib always configures `null`.
        if cfg!(target_os = "linux") {
            panic!("ALSA's null device is missing");
        }
        return;
    }
    for line in &lines {
        // "* name   channels ch, rates Hz[, default ...]  (description)"
        assert!(
            line.starts_with("* ") || line.starts_with("  "),
            "marker: {line:?}"
        );
        // A device in use by another program cannot be probed: it says so instead.
        assert!(
            (line.contains(" ch, ") && line.contains(" Hz")) || line.contains(" unavailable: "),
            "{line:?}"
        );
    }
    assert!(
        lines.iter().filter(|l| l.starts_with('*')).count() <= 1,
        "more than one default: {lines:?}"
    );
    if cfg!(target_os = "linux") {
        let null = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some("null"))
            .unwrap_or_else(|| panic!("ALSA's null device is not listed: {lines:?}"));
        assert!(null.contains("1-64 ch, any Hz"), "{null}");
        assert!(null.contains("generate zero samples (capture)"), "{null}");
    }
    // alsa-lib's own complaints (probing a default device that is not there) stay off stderr.
    assert!(!r.stderr.contains("ALSA lib"), "stderr: {}", r.stderr);
}

#[cfg(target_os = "linux")]
#[test]
fn a_broken_alsa_configuration_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("asound.conf");
    std::fs::write(&conf, "pcm.broken {{{\n").unwrap();
    let conf = conf.to_str().unwrap();
    for args in [
        &["devices"][..],
        &["serve", "--device", "null", "--listen", "127.0.0.1:0"][..],
    ] {
        let r = run_with_env(args, "ALSA_CONFIG_PATH", conf);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", r.stderr);
        assert!(
            lines[0].starts_with("error: no audio system available: "),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn serve_with_an_unknown_device_fails_at_once_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    // The model does not exist either: the device is checked first, before loading it.
    let r = run(&[
        "serve",
        "--device",
        "Headset That Is Not There",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--model",
        "/nonexistent/model.bin",
    ]);
    assert_one_error_line(
        &r,
        "error: no input device named \"Headset That Is Not There\" (see: callguard devices)",
    );

    // The same from the config file's [device] section.
    let cfg = data.path().join("callguard.toml");
    std::fs::write(&cfg, "[device]\nname = \"line-in-9\"\nagent = \"1042\"\n").unwrap();
    let r = run(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_error_line(
        &r,
        "error: no input device named \"line-in-9\" (see: callguard devices)",
    );

    // A bad [device] value is a config error naming the field.
    std::fs::write(&cfg, "[device]\nname = \"null\"\nchannels = 6\n").unwrap();
    let r = run(&["serve", "--config", cfg.to_str().unwrap(), "--data-dir", d]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("device.channels = 6"), "{}", r.stderr);
}

/// `serve --device null`: the call is announced to a supervisor with the configured agent and
/// legs, and SIGTERM ends it, closes the device and the process (exit 0).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_null_device_hosts_a_call_and_shuts_down_cleanly() {
    use futures_util::StreamExt;
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;

    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();
    let created = run(&[
        "token",
        "create",
        "--role",
        "supervisor",
        "--name",
        "sup",
        "--data-dir",
        &d,
    ]);
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let token = created.stdout.lines().last().unwrap().trim().to_owned();
    let cfg = data.path().join("callguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[asr]\nmodel = {:?}\n[device]\nname = \"null\"\nchannels = 2\nsample_rate = 16000\n\
             stereo_legs = [\"agent\", \"customer\"]\ncall_id = \"desk-7\"\nagent = \"1042\"\n",
            model().to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["serve", "--config", cfg.to_str().unwrap(), "--data-dir", &d])
        .args(["--listen", "127.0.0.1:0", "-v"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callguard serve");
    // stderr is read on a thread, all of it, so the daemon never blocks on a full pipe.
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = line_tx.send(line);
        }
        all
    });
    let addr = tokio::task::spawn_blocking(move || {
        while let Ok(line) = line_rx.recv_timeout(Duration::from_secs(60)) {
            if let Some(rest) = line.strip_prefix("callguard serving on http://") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .unwrap();
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("serve did not start: {}", reader.join().unwrap());
    };

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .expect("supervisor connects");
    let mut next = async || -> Value {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
            other => panic!("socket: {other:?}"),
        }
    };
    // The call is in the snapshot, or announced right after it.
    let snapshot = next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let call = match snapshot["calls"].as_array().and_then(|c| c.first()) {
        Some(c) => c["call"].clone(),
        None => loop {
            let m = next().await;
            if m["type"] == "call_started" {
                break m["call"].clone();
            }
        },
    };
    assert_eq!(call["call_id"], "desk-7", "{call}");
    assert_eq!(call["source"], "device", "{call}");
    assert_eq!(call["agent"], "1042", "{call}");
    assert_eq!(call["sample_rate"], 16000, "{call}");
    assert_eq!(
        call["legs"],
        serde_json::json!(["agent", "customer"]),
        "{call}"
    );
    assert_eq!(call["metadata"]["device"], "null", "{call}");

    // Let audio flow a moment, then SIGTERM: the socket closes, the call ends (no longer on the
    // socket, which closes at once: see the log), the stream is closed and the process exits 0.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the socket stayed open after SIGTERM"),
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = strip_ansi(&reader.join().unwrap());
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(
        log.contains("input device opened device=null channels=2 rate=16000 format=f32"),
        "{log}"
    );
    let ended = log
        .lines()
        .find(|l| l.contains("call{call_id=desk-7") && l.contains("call ended"))
        .unwrap_or_else(|| panic!("the call did not end: {log}"));
    assert!(ended.contains("end=Disconnected"), "{ended}");
    assert!(
        log.contains("sound-card capture closed device=null"),
        "{log}"
    );
}

/// The log without its colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
