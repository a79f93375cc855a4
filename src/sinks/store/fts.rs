//! Full-text search over transcripts, for Chinese as well as English, on SQLite's FTS5.
//!
//! FTS5's `unicode61` tokenizer splits on spaces and punctuation, which suits English but reads
//! a run of Chinese characters (a whole clause: `我要投诉你们`) as one token, so `投诉` would
//! never match. So the index is given a copy of each line with a space around every CJK
//! character ([`index_text`]): each character is a token, and a Chinese word in a query becomes
//! a phrase of its characters (`"投 诉"`), which matches exactly where those characters stand
//! side by side: a substring search for Chinese of any length, one character included.
//! English words keep `porter` stemming (`refunds` finds `refund`) and case and diacritic
//! folding.
//!
//! The user's query is never handed to FTS5 as syntax ([`match_terms`]): each word or
//! `"quoted phrase"` becomes one double-quoted FTS5 string (quotes doubled inside), with `*`
//! kept only as a trailing prefix marker, so `NEAR`, `AND`, `-`, `:`, `^`, brackets and stray
//! quotes are plain text and cannot cause a syntax error.

/// Whether a character is written without spaces between words: Han ideographs (CJK unified,
/// extensions, compatibility) and Japanese kana.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // extension A
        | 0x4E00..=0x9FFF    // unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x323AF) // extensions B..H
}

/// The text as the index sees it: a space on each side of every CJK character.
pub fn index_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for c in text.chars() {
        if is_cjk(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// At most this many terms of a query are used; the rest are ignored.
pub const MAX_TERMS: usize = 16;
/// At most this many characters of a query are read.
pub const MAX_QUERY_CHARS: usize = 500;

/// The FTS5 `MATCH` expressions for a user's query, one per term, each safe to bind as the
/// right-hand side of `segments_fts MATCH ?`. A term with nothing searchable in it (only
/// punctuation) is dropped, so an empty list means "no text filter".
pub fn match_terms(query: &str) -> Vec<String> {
    // Control characters (NUL included) are separators, never part of the expression.
    let query: String = query
        .chars()
        .take(MAX_QUERY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut terms = Vec::new();
    let mut chars = query.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' {
            chars.next();
            let phrase: String = chars.by_ref().take_while(|&c| c != '"').collect();
            terms.push((phrase, false));
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '"' {
                break;
            }
            word.push(c);
            chars.next();
        }
        let prefix = word.ends_with('*');
        terms.push((word.trim_end_matches('*').to_owned(), prefix));
    }
    terms
        .into_iter()
        .filter(|(t, _)| t.chars().any(char::is_alphanumeric))
        .take(MAX_TERMS)
        .map(|(t, prefix)| {
            let quoted = format!("\"{}\"", index_text(&t).replace('"', "\"\""));
            if prefix { quoted + " *" } else { quoted }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_characters_are_spaced_and_the_rest_kept() {
        assert_eq!(index_text("我要投诉"), " 我  要  投  诉 ");
        assert_eq!(index_text("打12315投诉!"), " 打 12315 投  诉 !");
        assert_eq!(index_text("refund, please"), "refund, please");
    }

    #[test]
    fn queries_become_quoted_strings() {
        assert_eq!(match_terms("refund"), vec!["\"refund\""]);
        assert_eq!(
            match_terms("投诉 律师"),
            vec!["\" 投  诉 \"", "\" 律  师 \""]
        );
        assert_eq!(
            match_terms("\"the press\" manag*"),
            vec!["\"the press\"", "\"manag\" *"]
        );
        assert_eq!(match_terms("a\"b"), vec!["\"a\"", "\"b\""]);
        assert_eq!(match_terms("NEAR(a b)"), vec!["\"NEAR(a\"", "\"b)\""]);
        assert!(match_terms("").is_empty());
        assert!(match_terms(" * - \" ( ) ").is_empty());
        assert_eq!(match_terms(&"w ".repeat(100)).len(), MAX_TERMS);
    }
}
