//! The `token` subcommands end to end: create prints the token once, list never shows it or
//! its hash, revoke takes effect, and mistakes get clear errors with the right exit status.

use std::path::Path;
use std::process::Command;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn callguard(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(args)
        .output()
        .expect("run callguard");
    let r = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "panicked: {}", r.stderr);
    r
}

fn token(dir: &Path, args: &[&str]) -> Out {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().unwrap()]);
    callguard(&all)
}

/// Runs `token create` and returns the token from its last line.
fn create(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let r = token(dir, &all);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(r.stdout.lines().count() >= 2, "stdout: {}", r.stdout);
    let last = r.stdout.lines().last().unwrap().trim().to_string();
    assert!(
        last.starts_with("cg_"),
        "last line is not a token: {}",
        r.stdout
    );
    assert_eq!(last.len(), 46, "token: {last}");
    last
}

fn list(dir: &Path) -> Vec<Vec<String>> {
    let r = token(dir, &["list"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> Option<&'a Vec<String>> {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
}

fn assert_error(r: &Out, code: i32) {
    assert_eq!(
        r.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(
        !r.stdout.contains("cg_"),
        "a token was printed: {}",
        r.stdout
    );
}

#[test]
fn create_list_revoke_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sup = create(&data, &["--role", "supervisor", "--name", "floor-boss"]);
    let agent = create(
        &data,
        &["--role", "agent", "--name", "desk-7", "--agent", "1042"],
    );
    let ingest = create(&data, &["--role", "ingest", "--name", "pbx"]);
    let qa = create(&data, &["--role", "qa", "--name", "qa.team@example"]);
    let tokens = [&sup, &agent, &ingest, &qa];
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        4,
        "tokens are distinct"
    );

    let file = std::fs::read_to_string(data.join("tokens.json")).unwrap();
    for t in tokens {
        assert!(!file.contains(t.as_str()), "tokens.json holds a token");
    }

    let list_out = token(&data, &["list"]);
    for t in tokens {
        assert!(!list_out.stdout.contains(t.as_str()), "list shows a token");
        assert!(!list_out.stdout.contains(&t[3..]), "list shows a token");
    }
    // No 64-hex-digit hash either.
    for word in list_out.stdout.split_whitespace() {
        assert!(
            !(word.len() >= 64 && word.chars().all(|c| c.is_ascii_hexdigit())),
            "list shows a hash: {word}"
        );
    }

    let rows = list(&data);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (name, role, agent) in [
        ("floor-boss", "supervisor", "-"),
        ("desk-7", "agent", "1042"),
        ("pbx", "ingest", "-"),
        ("qa.team@example", "qa", "-"),
    ] {
        let r = row(&rows, name).unwrap_or_else(|| panic!("{name} not listed: {rows:?}"));
        // Name, role and agent come first; the creation time is the last field, whatever
        // label may precede it.
        assert!(r.len() >= 4, "name role agent created: {r:?}");
        assert_eq!(r[1], role, "{r:?}");
        assert_eq!(r[2], agent, "{r:?}");
        let created: u64 = r[r.len() - 1]
            .parse()
            .unwrap_or_else(|_| panic!("created (unix seconds) last: {r:?}"));
        assert!(
            created <= now && now - created < 600,
            "created {created}, now {now}"
        );
    }

    let r = token(&data, &["revoke", "desk-7"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let rows = list(&data);
    assert!(row(&rows, "desk-7").is_none(), "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
}

#[test]
fn list_of_an_empty_data_dir_prints_no_lines() {
    // One stdout line per token and nothing else, so `token list | wc -l` counts tokens; a
    // hint for the empty case belongs on stderr.
    let dir = tempfile::tempdir().unwrap();
    let rows = list(dir.path());
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn revoking_an_unknown_name_fails_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--role", "qa", "--name", "kept"]);
    let r = token(dir.path(), &["revoke", "no-such-token"]);
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert!(r.stderr.starts_with("error: "), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("no-such-token"), "stderr: {}", r.stderr);
    assert!(row(&list(dir.path()), "kept").is_some());
}

#[test]
fn a_duplicate_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--role", "qa", "--name", "dup"]);
    let r = token(
        dir.path(),
        &["create", "--role", "supervisor", "--name", "dup"],
    );
    assert_error(&r, 1);
    assert!(r.stderr.starts_with("error: "), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("dup"), "stderr: {}", r.stderr);
    let rows = list(dir.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "qa", "the first one is untouched: {rows:?}");
}

#[test]
fn an_agent_token_needs_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let r = token(
        dir.path(),
        &["create", "--role", "agent", "--name", "desk-9"],
    );
    assert_error(&r, 1);
    assert!(r.stderr.starts_with("error: "), "stderr: {}", r.stderr);
    assert!(!dir.path().join("tokens.json").exists());
}

#[test]
fn a_bad_role_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = token(dir.path(), &["create", "--role", "root", "--name", "x"]);
    assert_error(&r, 2);
    assert!(r.stderr.contains("root"), "stderr: {}", r.stderr);
    assert!(!dir.path().join("tokens.json").exists());
}
