//! Access tokens and roles for the websocket server and the ingest endpoints.
//!
//! What it does: mints bearer tokens (`cg_` + 43 URL-safe base64 characters, 256 random bits),
//! keeps only their SHA-256 hashes in `<data_dir>/tokens.json`, verifies presented tokens,
//! revokes them, notices when another process (the `token` CLI) changed the file, pulls a token
//! out of an `Authorization` header or a websocket URL's query string, and decides what each
//! role may do ([`can`]).
//!
//! What it does not do: it never stores or logs a token itself, so a lost token cannot be
//! recovered, only revoked and replaced; tokens do not expire; it holds no lock across
//! processes, so two `token create`/`revoke` commands racing each other can lose one update
//! (the file itself is always whole, never half-written); it does no transport security, rate
//! limiting or auditing, which belong to the server.
//!
//! File format (`tokens.json`, mode 0600 on Unix):
//!
//! ```json
//! {
//!   "version": 1,
//!   "tokens": [
//!     { "name": "desk-7", "role": "agent", "agent": "1042",
//!       "hash": "<64 lowercase hex digits>", "created_unix": 1767225600 }
//!   ]
//! }
//! ```

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::domain::access::{Principal, Role};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file inside the data directory that holds the token hashes.
pub const TOKENS_FILE: &str = "tokens.json";
const TOKENS_TMP: &str = "tokens.json.tmp";
const FORMAT_VERSION: u32 = 1;

/// Every token starts with this, so it is recognisable in logs and by secret scanners.
pub const TOKEN_PREFIX: &str = "cg_";
const TOKEN_BYTES: usize = 32;
/// `cg_` plus 32 bytes in unpadded base64 (ceil(32 * 4 / 3) = 43 characters).
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;

const MAX_NAME_LEN: usize = 64;
const MAX_AGENT_LEN: usize = 128;

/// One issued token as stored: who it is for, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique; 1-64 ASCII letters, digits or `-_.@`.
    pub name: String,
    pub role: Role,
    /// The agent name or extension an `agent` token is bound to; `None` for other roles.
    #[serde(default)]
    pub agent: Option<String>,
    /// Lowercase hex SHA-256 of the whole token text, prefix included.
    pub hash: String,
    pub created_unix: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is corrupt: {message} (fix it or move it aside; it is never emptied automatically)",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("a token named `{0}` already exists")]
    DuplicateName(String),
    #[error("no token named `{0}`")]
    UnknownName(String),
    #[error("bad token name `{0}`: use 1-64 ASCII letters, digits, `-`, `_`, `.` or `@`")]
    BadName(String),
    #[error(
        "bad agent `{0}`: use 1-128 characters without control characters or surrounding spaces"
    )]
    BadAgent(String),
    #[error("an agent token must be bound to an agent name or extension")]
    AgentRequired,
    #[error("only agent tokens are bound to an agent; a {0} token takes none")]
    AgentNotAllowed(Role),
    #[error("cannot get random bytes for a token: {0}")]
    Random(getrandom::Error),
}

#[derive(Serialize, Deserialize)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// What identifies one version of the file on disk. The inode matters most: every save
/// renames a fresh file into place, so it changes even when mtime and size do not (coarse
/// mtime on some filesystems, a revoke and a create of equal-length names in one second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Fingerprint {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

/// The issued tokens of one data directory, as hashes.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
    path: PathBuf,
    records: Vec<TokenRecord>,
    /// The file version `records` came from or was saved as; `None` when there was no file.
    seen: Option<Fingerprint>,
}

impl TokenStore {
    /// Opens the store of `data_dir`. A missing file is an empty store (nothing is created
    /// until the first save); an unreadable or corrupt one is an error.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(TOKENS_FILE);
        let (records, seen) = match read_tokens(&path)? {
            Some((records, fp)) => (records, Some(fp)),
            None => (Vec::new(), None),
        };
        Ok(TokenStore {
            dir: data_dir.to_path_buf(),
            path,
            records,
            seen,
        })
    }

    /// Where the hashes live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Issues a token and saves at once. Returns the token text: the only time it exists
    /// outside its holder's hands.
    pub fn create(
        &mut self,
        name: &str,
        role: Role,
        agent: Option<String>,
        now_unix: u64,
    ) -> Result<String, AuthError> {
        check_name(name)?;
        match (role, &agent) {
            (Role::Agent, None) => return Err(AuthError::AgentRequired),
            (Role::Agent, Some(a)) => check_agent(a)?,
            (_, Some(_)) => return Err(AuthError::AgentNotAllowed(role)),
            (_, None) => {}
        }
        // Another process may have changed the file since we read it; building on a stale copy
        // would silently undo its revokes when we save.
        self.reload_if_changed()?;
        if self.records.iter().any(|r| r.name == name) {
            return Err(AuthError::DuplicateName(name.to_string()));
        }

        let mut secret = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut secret).map_err(AuthError::Random)?;
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));

        self.records.push(TokenRecord {
            name: name.to_string(),
            role,
            agent,
            hash: hash_hex(&token),
            created_unix: now_unix,
        });
        if let Err(e) = self.save() {
            // Keep memory in step with the disk: a token that was never saved must not verify.
            self.records.pop();
            return Err(e);
        }
        Ok(token)
    }

    /// Every issued token, oldest first.
    pub fn list(&self) -> &[TokenRecord] {
        &self.records
    }

    /// Removes a token and saves at once; returns what it was.
    pub fn revoke(&mut self, name: &str) -> Result<TokenRecord, AuthError> {
        self.reload_if_changed()?;
        let at = self
            .records
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| AuthError::UnknownName(name.to_string()))?;
        let record = self.records.remove(at);
        if let Err(e) = self.save() {
            self.records.insert(at, record);
            return Err(e);
        }
        Ok(record)
    }

    /// Who holds `token`, if it is a live token of this store.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        // Anything that cannot be one of our tokens is turned away before hashing, so junk of
        // any size costs nothing and never reaches the comparison.
        if token.len() != TOKEN_LEN || !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        if !token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let presented = hash_hex(token);
        // Every record is compared in full so the time taken does not depend on where (or
        // whether) the match is.
        let mut found = None;
        for r in &self.records {
            if constant_time_eq(r.hash.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some(r);
            }
        }
        found.map(|r| Principal {
            name: r.name.clone(),
            role: r.role,
            agent: r.agent.clone(),
        })
    }

    /// Writes the store atomically: a temporary file in the same directory, flushed to disk,
    /// then renamed over the old one, so readers see the old or the new file, never a mix.
    pub fn save(&self) -> Result<(), AuthError> {
        create_private_dir(&self.dir)?;
        let tmp = self.dir.join(TOKENS_TMP);
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| AuthError::Io {
                action,
                path,
                source,
            }
        };

        let mut json = serde_json::to_vec_pretty(&TokenFile {
            version: FORMAT_VERSION,
            tokens: self.records.clone(),
        })
        .map_err(|e| AuthError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        json.push(b'\n');

        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp).map_err(io_err("create", &tmp))?;
        // The mode above only applies when the file is new; a leftover temp file from a crash
        // keeps whatever mode it had.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io_err("set permissions on", &tmp))?;
        file.write_all(&json).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("flush", &tmp))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(io_err("replace", &self.path))?;
        // The rename itself is only durable once the directory entry is on disk.
        #[cfg(unix)]
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("flush", &self.dir))?;
        Ok(())
    }

    /// Re-reads the file when it changed on disk since this store last read it (another
    /// process created or revoked a token); returns whether it did. A file that disappeared
    /// empties the store, failing closed. On error the store keeps its previous records and
    /// tries again next call.
    pub fn reload_if_changed(&mut self) -> Result<bool, AuthError> {
        let now = match fs::metadata(&self.path) {
            Ok(meta) => Some(Fingerprint::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(AuthError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        if now == self.seen {
            return Ok(false);
        }
        let (records, seen) = match read_tokens(&self.path)? {
            Some((records, fp)) => (records, Some(fp)),
            None => (Vec::new(), None),
        };
        tracing::info!(
            path = %self.path.display(),
            tokens = records.len(),
            "token file changed; reloaded"
        );
        self.records = records;
        self.seen = seen;
        Ok(true)
    }
}

/// Reads and checks the token file; `None` when there is none.
fn read_tokens(path: &Path) -> Result<Option<(Vec<TokenRecord>, Fingerprint)>, AuthError> {
    let io_err = |source| AuthError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    // Fingerprint the handle we read from, not the path: a rename between a stat and the read
    // would otherwise pair new contents with an old fingerprint.
    let fp = Fingerprint::of(&file.metadata().map_err(io_err)?);
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            corrupt(path, "not UTF-8 text".to_string())
        } else {
            io_err(e)
        }
    })?;
    let parsed: TokenFile =
        serde_json::from_str(&text).map_err(|e| corrupt(path, e.to_string()))?;
    if parsed.version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                parsed.version
            ),
        ));
    }
    check_records(&parsed.tokens).map_err(|m| corrupt(path, m))?;
    Ok(Some((parsed.tokens, fp)))
}

/// The rules `create` enforces, applied to a file someone may have edited by hand: a record
/// that breaks them would otherwise grant access `create` never would.
fn check_records(records: &[TokenRecord]) -> Result<(), String> {
    for (i, r) in records.iter().enumerate() {
        let at = |m: String| format!("token {} (`{}`): {m}", i + 1, r.name);
        check_name(&r.name).map_err(|e| at(e.to_string()))?;
        if records[..i].iter().any(|o| o.name == r.name) {
            return Err(at("name used twice".to_string()));
        }
        match (r.role, &r.agent) {
            (Role::Agent, None) => return Err(at(AuthError::AgentRequired.to_string())),
            (Role::Agent, Some(a)) => check_agent(a).map_err(|e| at(e.to_string()))?,
            (role, Some(_)) => return Err(at(AuthError::AgentNotAllowed(role).to_string())),
            (_, None) => {}
        }
        if r.hash.len() != 64
            || !r
                .hash
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(at("hash is not 64 lowercase hex digits".to_string()));
        }
    }
    Ok(())
}

fn corrupt(path: &Path, message: String) -> AuthError {
    AuthError::Corrupt {
        path: path.to_path_buf(),
        message,
    }
}

fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(name.to_string()))
    }
}

/// Agent names come from the phone system's metadata, so any printable text is allowed; it
/// must only be unambiguous, as it is compared exactly with the call's agent.
fn check_agent(agent: &str) -> Result<(), AuthError> {
    let ok = !agent.is_empty()
        && agent.chars().count() <= MAX_AGENT_LEN
        && agent.trim() == agent
        && !agent.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadAgent(agent.to_string()))
    }
}

/// Plain SHA-256 is enough: tokens carry 256 random bits, so there is nothing for a slow or
/// salted hash to protect against guessing.
fn hash_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| AuthError::Io {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })
}

/// The token a request presents: `Authorization: Bearer <token>` (scheme matched in any
/// case), else `token=<token>` in the URL query string, which is how browsers must send it
/// on websockets since they cannot set headers there. The query may start with `?`; its
/// value is percent-decoded. `None` when neither carries a non-empty token.
pub fn bearer_token(authorization_header: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(token) = authorization_header.and_then(from_header) {
        return Some(token);
    }
    let query = query?;
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "token")
        .and_then(|(_, value)| percent_decode(value))
        .filter(|t| !t.is_empty())
}

fn from_header(header: &str) -> Option<String> {
    let header = header.trim();
    let (scheme, rest) = header.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return None;
    }
    Some(token.to_string())
}

/// Form-style decoding (`+` is a space, `%XX` a byte); `None` for a broken escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path()).unwrap();
        (dir, s)
    }

    fn agent_for(role: Role) -> Option<String> {
        (role == Role::Agent).then(|| "1042".to_string())
    }

    #[test]
    fn create_then_verify_for_every_role() {
        let (_dir, mut s) = store();
        for role in Role::ALL {
            let name = format!("{role}-1");
            let token = s.create(&name, role, agent_for(role), NOW).unwrap();
            assert!(token.starts_with("cg_"), "{token}");
            assert_eq!(token.len(), TOKEN_LEN);
            assert_eq!(
                s.verify(&token),
                Some(Principal {
                    name,
                    role,
                    agent: agent_for(role),
                })
            );
        }
        assert_eq!(s.list().len(), Role::ALL.len());
        assert_eq!(s.list()[0].created_unix, NOW);
    }

    #[test]
    fn tokens_are_distinct_and_wrong_ones_are_refused() {
        let (_dir, mut s) = store();
        let a = s.create("a", Role::Qa, None, NOW).unwrap();
        let b = s.create("b", Role::Qa, None, NOW).unwrap();
        assert_ne!(a, b);
        // Same shape, one character changed.
        let mut forged = a.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(s.verify(&forged), None);
        assert_eq!(s.verify(""), None);
        assert_eq!(s.verify(&a[3..]), None, "without prefix");
        assert_eq!(s.verify(&format!("xx_{}", &a[3..])), None, "other prefix");
        assert_eq!(s.verify(&format!("{a}A")), None, "too long");
        assert_eq!(s.verify(&a[..a.len() - 1]), None, "too short");
        assert_eq!(s.verify(&format!("cg_{}", "+".repeat(43))), None);
        assert_eq!(s.verify(&"x".repeat(1 << 20)), None);
        // A record's hash is not itself a token.
        assert_eq!(s.verify(&s.list()[0].hash.clone()), None);
    }

    #[test]
    fn revoke_removes_and_unknown_is_an_error() {
        let (dir, mut s) = store();
        let t = s
            .create("desk-7", Role::Agent, Some("1042".into()), NOW)
            .unwrap();
        let keep = s.create("boss", Role::Supervisor, None, NOW).unwrap();
        let gone = s.revoke("desk-7").unwrap();
        assert_eq!(gone.name, "desk-7");
        assert_eq!(gone.agent.as_deref(), Some("1042"));
        assert_eq!(s.verify(&t), None);
        assert!(s.verify(&keep).is_some());
        match s.revoke("desk-7") {
            Err(AuthError::UnknownName(n)) => assert_eq!(n, "desk-7"),
            other => panic!("{other:?}"),
        }
        let reopened = TokenStore::open(dir.path()).unwrap();
        assert_eq!(reopened.verify(&t), None);
        assert!(reopened.verify(&keep).is_some());
    }

    #[test]
    fn duplicate_and_bad_names_are_refused() {
        let (_dir, mut s) = store();
        s.create("alice", Role::Qa, None, NOW).unwrap();
        assert!(matches!(
            s.create("alice", Role::Supervisor, None, NOW),
            Err(AuthError::DuplicateName(n)) if n == "alice"
        ));
        for bad in ["", "has space", "slash/", "ünï", "a:b", &"x".repeat(65)] {
            assert!(
                matches!(
                    s.create(bad, Role::Qa, None, NOW),
                    Err(AuthError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["a", "A-b_c.d@e9", &"y".repeat(64)] {
            s.create(good, Role::Qa, None, NOW).unwrap();
        }
        assert_eq!(s.list().len(), 4);
    }

    #[test]
    fn agent_binding_rules() {
        let (_dir, mut s) = store();
        assert!(matches!(
            s.create("a1", Role::Agent, None, NOW),
            Err(AuthError::AgentRequired)
        ));
        for role in [Role::Ingest, Role::Supervisor, Role::Qa] {
            assert!(matches!(
                s.create("x", role, Some("1042".into()), NOW),
                Err(AuthError::AgentNotAllowed(r)) if r == role
            ));
        }
        for bad in ["", " 1042", "1042 ", "a\nb"] {
            assert!(
                matches!(
                    s.create("a1", Role::Agent, Some(bad.into()), NOW),
                    Err(AuthError::BadAgent(_))
                ),
                "{bad:?}"
            );
        }
        assert!(s.list().is_empty(), "refused tokens leave nothing behind");
        s.create("a1", Role::Agent, Some("Alice Smith".into()), NOW)
            .unwrap();
    }

    #[test]
    fn persists_across_reopen_without_token_text() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested").join("data");
        let mut s = TokenStore::open(&data).unwrap();
        assert!(!data.exists(), "opening creates nothing");
        let tokens: Vec<(Role, String)> = Role::ALL
            .into_iter()
            .map(|role| {
                let t = s
                    .create(&format!("n-{role}"), role, agent_for(role), NOW + 1)
                    .unwrap();
                (role, t)
            })
            .collect();

        let text = fs::read_to_string(data.join(TOKENS_FILE)).unwrap();
        for (_, t) in &tokens {
            assert!(!text.contains(t.as_str()), "token text in file");
            assert!(!text.contains(&t[3..]), "token body in file");
            assert!(text.contains(&hash_hex(t)));
        }
        assert!(!data.join(TOKENS_TMP).exists());

        let reopened = TokenStore::open(&data).unwrap();
        assert_eq!(reopened.list(), s.list());
        for (role, t) in &tokens {
            assert_eq!(reopened.verify(t).map(|p| p.role), Some(*role));
        }
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, mut s) = store();
        // A leftover temp file with loose permissions must not leak them to the real file.
        fs::write(dir.path().join(TOKENS_TMP), "junk").unwrap();
        fs::set_permissions(
            dir.path().join(TOKENS_TMP),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        s.create("a", Role::Qa, None, NOW).unwrap();
        let mode = fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_is_empty_but_corrupt_file_is_an_error() {
        let (dir, s) = store();
        assert!(s.list().is_empty());
        let path = dir.path().join(TOKENS_FILE);
        let hash = "0".repeat(64);
        let cases = [
            "{ not json".to_string(),
            String::new(),
            r#"{"version": 2, "tokens": []}"#.to_string(),
            format!(
                r#"{{"version":1,"tokens":[{{"name":"a","role":"agent","hash":"{hash}","created_unix":1}}]}}"#
            ),
            format!(
                r#"{{"version":1,"tokens":[{{"name":"a","role":"qa","agent":"1","hash":"{hash}","created_unix":1}}]}}"#
            ),
            r#"{"version":1,"tokens":[{"name":"a","role":"qa","hash":"zz","created_unix":1}]}"#
                .to_string(),
            format!(
                r#"{{"version":1,"tokens":[{{"name":"a","role":"qa","hash":"{hash}","created_unix":1}},{{"name":"a","role":"qa","hash":"{hash}","created_unix":2}}]}}"#
            ),
            format!(
                r#"{{"version":1,"tokens":[{{"name":"a","role":"root","hash":"{hash}","created_unix":1}}]}}"#
            ),
        ];
        for text in &cases {
            fs::write(&path, text).unwrap();
            match TokenStore::open(dir.path()) {
                Err(e @ AuthError::Corrupt { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("tokens.json"), "{msg}");
                    assert!(!msg.contains('\n'), "{msg}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert_eq!(&fs::read_to_string(&path).unwrap(), text, "left as it was");
        }
        fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            TokenStore::open(dir.path()),
            Err(AuthError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_unreadable_data_dir_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        fs::create_dir(dir.path().join(TOKENS_FILE)).unwrap();
        let err = TokenStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("tokens.json"), "{err}");
    }

    #[test]
    fn reload_picks_up_changes_from_another_process() {
        let (dir, mut daemon) = store();
        let mut cli = TokenStore::open(dir.path()).unwrap();
        let t = cli
            .create("desk-7", Role::Agent, Some("1042".into()), NOW)
            .unwrap();

        assert_eq!(daemon.verify(&t), None);
        assert!(daemon.reload_if_changed().unwrap());
        assert!(daemon.verify(&t).is_some());
        assert!(!daemon.reload_if_changed().unwrap(), "nothing changed");

        let mut cli = TokenStore::open(dir.path()).unwrap();
        cli.revoke("desk-7").unwrap();
        assert!(daemon.reload_if_changed().unwrap());
        assert_eq!(daemon.verify(&t), None);

        // A corrupt file keeps the last good state and is retried, not emptied.
        let keep = cli.create("boss", Role::Supervisor, None, NOW).unwrap();
        assert!(daemon.reload_if_changed().unwrap());
        fs::write(daemon.path(), "garbage").unwrap();
        assert!(matches!(
            daemon.reload_if_changed(),
            Err(AuthError::Corrupt { .. })
        ));
        assert!(daemon.verify(&keep).is_some());
        assert!(daemon.reload_if_changed().is_err(), "still retried");

        // A deleted file fails closed.
        fs::remove_file(daemon.path()).unwrap();
        assert!(daemon.reload_if_changed().unwrap());
        assert_eq!(daemon.verify(&keep), None);
        assert!(!daemon.reload_if_changed().unwrap());
    }

    #[test]
    fn a_stale_store_does_not_undo_another_process_revoke() {
        let (dir, mut a) = store();
        let t = a.create("old", Role::Qa, None, NOW).unwrap();
        let mut b = TokenStore::open(dir.path()).unwrap();
        b.revoke("old").unwrap();
        a.create("new", Role::Qa, None, NOW).unwrap();
        let fresh = TokenStore::open(dir.path()).unwrap();
        assert_eq!(fresh.verify(&t), None);
        let names: Vec<&str> = fresh.list().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["new"]);
    }

    #[test]
    fn bearer_token_from_header() {
        for h in [
            "Bearer cg_abc",
            "bearer cg_abc",
            "BEARER cg_abc",
            "  Bearer   cg_abc  ",
            "Bearer\tcg_abc",
        ] {
            assert_eq!(
                bearer_token(Some(h), None).as_deref(),
                Some("cg_abc"),
                "{h:?}"
            );
        }
        for h in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "cg_abc",
            "Bearer a b",
            "",
        ] {
            assert_eq!(bearer_token(Some(h), None), None, "{h:?}");
        }
        // The header wins over the query; a non-bearer header falls back to it.
        assert_eq!(
            bearer_token(Some("Bearer cg_h"), Some("token=cg_q")).as_deref(),
            Some("cg_h")
        );
        assert_eq!(
            bearer_token(Some("Basic x"), Some("token=cg_q")).as_deref(),
            Some("cg_q")
        );
    }

    #[test]
    fn bearer_token_from_query() {
        let q = |s: &str| bearer_token(None, Some(s));
        assert_eq!(q("token=cg_abc").as_deref(), Some("cg_abc"));
        assert_eq!(q("?token=cg_abc").as_deref(), Some("cg_abc"));
        assert_eq!(
            q("call=CA12&token=cg_a-b_c&lang=en").as_deref(),
            Some("cg_a-b_c")
        );
        assert_eq!(q("token=cg%5Fa%2Db").as_deref(), Some("cg_a-b"));
        assert_eq!(q("token=a+b").as_deref(), Some("a b"));
        assert_eq!(q("mytoken=cg_x&token=cg_y").as_deref(), Some("cg_y"));
        for none in [
            "",
            "?",
            "call=1",
            "token=",
            "token",
            "token=%zz",
            "token=%4",
            "token=%ff",
        ] {
            assert_eq!(q(none), None, "{none:?}");
        }
        assert_eq!(bearer_token(None, None), None);
    }

    #[test]
    fn a_query_token_verifies_end_to_end() {
        let (_dir, mut s) = store();
        let t = s.create("wall", Role::Supervisor, None, NOW).unwrap();
        let query = format!("call=1&token={}", t.replace('_', "%5F"));
        let got = bearer_token(None, Some(&query)).unwrap();
        assert_eq!(s.verify(&got).map(|p| p.name), Some("wall".to_string()));
    }
}
