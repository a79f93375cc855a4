//! Whisper vocabulary: GPT-2 byte-level token text back to raw bytes.
//!
//! CTranslate2 stores Whisper's vocabulary as `vocabulary.txt`, one token per line, each written
//! in GPT-2's byte-level alphabet (every byte shown as a printable character, e.g. a space as
//! `Ġ`). whisper.cpp model files need each token's raw bytes instead. This module builds GPT-2's
//! bytes-to-characters table, reverses it and reads `vocabulary.txt`; it does not tokenize text
//! and knows nothing about which tokens are special.

use std::path::{Path, PathBuf};

/// Errors while decoding tokens or reading a vocabulary file.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("token {token:?} contains {ch:?}, which is not in GPT-2's byte-level alphabet")]
    NotByteLevel { token: String, ch: char },
    #[error("cannot read vocabulary {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vocabulary {path} is not UTF-8 text (line {line})")]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("vocabulary {path} line {line}: {source}")]
    BadToken {
        path: PathBuf,
        line: usize,
        #[source]
        source: Box<VocabError>,
    },
    #[error("vocabulary {path} is empty")]
    Empty { path: PathBuf },
}

/// Whether GPT-2 shows this byte as the character with the same code point. These are the
/// printable Latin-1 characters except soft hyphen; every other byte is moved above U+00FF.
fn shown_as_itself(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// GPT-2's bytes-to-unicode table: the character each byte is written as.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_moved = 0u32;
    for b in 0..=255u8 {
        let code = if shown_as_itself(b) {
            u32::from(b)
        } else {
            // Bytes that are not shown as themselves take U+0100, U+0101, ... in byte order.
            let c = 256 + next_moved;
            next_moved += 1;
            c
        };
        // All codes are below U+0144, so they are always valid chars.
        table[usize::from(b)] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// Highest code point GPT-2's table uses, plus one: 256 bytes, 68 of them moved above U+00FF.
const REVERSE_LEN: usize = 256 + 68;

fn char_to_byte_table() -> &'static [Option<u8>; REVERSE_LEN] {
    static TABLE: std::sync::OnceLock<[Option<u8>; REVERSE_LEN]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rev = [None; REVERSE_LEN];
        for (b, c) in byte_to_char_table().iter().enumerate() {
            if let (Some(slot), Ok(byte)) = (rev.get_mut(*c as usize), u8::try_from(b)) {
                *slot = Some(byte);
            }
        }
        rev
    })
}

/// Raw bytes of one byte-level token, e.g. `"Ġhello"` -> `b" hello"`. A token may hold part of
/// a UTF-8 character, so the result need not be valid UTF-8.
pub fn token_bytes(token: &str) -> Result<Vec<u8>, VocabError> {
    let rev = char_to_byte_table();
    token
        .chars()
        .map(|ch| {
            rev.get(ch as usize)
                .copied()
                .flatten()
                .ok_or_else(|| VocabError::NotByteLevel {
                    token: token.to_owned(),
                    ch,
                })
        })
        .collect()
}

/// Reads a CTranslate2 `vocabulary.txt` (one byte-level token per line, in id order) and
/// returns each token's raw bytes, indexed by token id. Empty lines are real tokens (the
/// multilingual vocabulary has one at id 50256), so only the newline after the last token is
/// dropped.
pub fn read_vocabulary(path: &Path) -> Result<Vec<Vec<u8>>, VocabError> {
    let raw = std::fs::read(path).map_err(|source| VocabError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_vocabulary(&raw, path)
}

fn parse_vocabulary(raw: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, VocabError> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    if body.is_empty() {
        return Err(VocabError::Empty {
            path: path.to_owned(),
        });
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let text = std::str::from_utf8(line).map_err(|_| VocabError::NotUtf8 {
                path: path.to_owned(),
                line: i + 1,
            })?;
            token_bytes(text).map_err(|e| VocabError::BadToken {
                path: path.to_owned(),
                line: i + 1,
                source: Box::new(e),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection() {
        let t = byte_to_char_table();
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c), "{c:?} used twice");
        }
        assert_eq!(t[usize::from(b'A')], 'A');
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xAD], 'Ń');
        for b in 0..=255u8 {
            let s = t[usize::from(b)].to_string();
            assert_eq!(token_bytes(&s).unwrap(), vec![b]);
        }
    }

    #[test]
    fn decodes_tokens() {
        assert_eq!(token_bytes("Ġhello").unwrap(), b" hello");
        assert_eq!(token_bytes("Ċ").unwrap(), b"\n");
        assert_eq!(token_bytes("<|endoftext|>").unwrap(), b"<|endoftext|>");
        assert_eq!(token_bytes("").unwrap(), b"");
        // "你好" is E4 BD A0 E5 A5 BD; byte-level text shows each byte as one character.
        assert_eq!(token_bytes("ä½łå¥½").unwrap(), "你好".as_bytes());
        // A token can be half of a character.
        assert_eq!(token_bytes("ä½").unwrap(), vec![0xE4, 0xBD]);
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        let err = token_bytes("a你").unwrap_err();
        assert!(
            matches!(err, VocabError::NotByteLevel { ch: '你', .. }),
            "{err}"
        );
        assert!(token_bytes("\u{AD}").is_err());
    }

    #[test]
    fn reads_vocabulary_file_keeping_empty_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocabulary.txt");
        std::fs::write(&path, "!\nĠhello\n\n<|endoftext|>\n").unwrap();
        let v = read_vocabulary(&path).unwrap();
        assert_eq!(
            v,
            vec![
                b"!".to_vec(),
                b" hello".to_vec(),
                Vec::new(),
                b"<|endoftext|>".to_vec()
            ]
        );
    }

    #[test]
    fn vocabulary_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocabulary.txt");
        std::fs::write(&path, "ok\nbad你\n").unwrap();
        let err = read_vocabulary(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::write(&path, b"ok\n\xff\n").unwrap();
        assert!(matches!(
            read_vocabulary(&path),
            Err(VocabError::NotUtf8 { line: 2, .. })
        ));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            read_vocabulary(&path),
            Err(VocabError::Empty { .. })
        ));
        assert!(matches!(
            read_vocabulary(&dir.path().join("none.txt")),
            Err(VocabError::Io { .. })
        ));
    }
}
