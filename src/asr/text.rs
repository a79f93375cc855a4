//! Cleaning what Whisper writes: simplified Chinese, and dropping the phrases Whisper invents
//! on noise ("Thanks for watching", "字幕由Amara.org社群提供", "[Music]"). Pure string work;
//! deciding which audio is speech is `segment`'s job, and the decoding is `worker`'s.

/// Normalises text for phrase comparison: lower case, letters and digits only (CJK included),
/// traditional characters folded to simplified.
pub fn phrase_key(text: &str) -> String {
    fast2s::convert(text)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Known phantom phrases, normalised once.
#[derive(Debug, Clone, Default)]
pub struct PhantomFilter {
    keys: Vec<String>,
}

impl PhantomFilter {
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Self {
        let mut keys: Vec<String> = phrases
            .iter()
            .map(|p| phrase_key(p.as_ref()))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys.dedup();
        Self { keys }
    }

    /// True when `text` carries no speech: empty, only a sound annotation such as `[Music]`
    /// or `(laughs)`, or exactly one of the known phantom phrases (possibly repeated).
    pub fn is_phantom(&self, text: &str) -> bool {
        let stripped = strip_annotations(text);
        let key = phrase_key(&stripped);
        if key.is_empty() {
            return true;
        }
        self.keys.iter().any(|k| {
            // Whisper sometimes repeats its phantom ("Thank you. Thank you."), so a text made
            // only of copies of one phrase counts too.
            key.len().is_multiple_of(k.len())
                && key.as_bytes().chunks(k.len()).all(|c| c == k.as_bytes())
        })
    }
}

/// Removes bracketed annotations (`[BLANK_AUDIO]`, `(music)`, `*sighs*`, `♪ ... ♪`).
pub fn strip_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut closer: Option<char> = None;
    for c in text.chars() {
        match closer {
            Some(end) if c == end => closer = None,
            Some(_) => {}
            None => match c {
                '[' => closer = Some(']'),
                '(' => closer = Some(')'),
                '（' => closer = Some('）'),
                '*' => closer = Some('*'),
                '♪' | '♫' => {}
                _ => out.push(c),
            },
        }
    }
    out
}

/// Tidies one segment's text for output: trims, converts Chinese to simplified characters.
pub fn tidy(text: &str, lang: &str) -> String {
    let trimmed = text.trim();
    if lang == "zh" {
        fast2s::convert(trimmed)
    } else {
        trimmed.to_owned()
    }
}

/// Removes an echo of the initial prompt: Whisper sometimes repeats the prompt's clauses at the
/// end of short utterances ("我要投诉你们，使用简体中文。").
pub fn strip_prompt_echo(text: &str, prompt: &str) -> String {
    let mut out = text.to_owned();
    let clauses = prompt
        .split(|c: char| "，。,.！!？?；;、 ".contains(c))
        .filter(|c| c.chars().count() >= 4);
    for clause in clauses {
        out = out.replace(clause, "");
    }
    if out == text {
        return out;
    }
    // Tidy the punctuation a removed clause leaves behind ("你们，。" -> "你们。").
    for (pair, single) in [("，。", "。"), (",.", "."), ("，，", "，"), (",,", ",")] {
        while out.contains(pair) {
            out = out.replace(pair, single);
        }
    }
    let out = out.trim_matches(|c: char| "，,、；; ".contains(c)).trim();
    if out.chars().any(char::is_alphanumeric) {
        out.to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> PhantomFilter {
        PhantomFilter::new(&crate::config::AsrConfig::default().phantom_phrases)
    }

    #[test]
    fn known_phantoms_are_dropped_whatever_the_punctuation() {
        let f = filter();
        for t in [
            " Thanks for watching!",
            "THANK YOU FOR WATCHING.",
            "字幕由Amara.org社群提供",
            "字幕由Amara.org社群提供 字幕由Amara.org社群提供",
            "[BLANK_AUDIO]",
            "(upbeat music)",
            "♪ ♪",
            "*sighs*",
            "谢谢观看！",
            "謝謝觀看",
            "",
            "  ...  ",
        ] {
            assert!(f.is_phantom(t), "kept {t:?}");
        }
    }

    #[test]
    fn real_speech_is_kept() {
        let f = filter();
        for t in [
            "Thanks for watching my order, but it never arrived.",
            "Thank you.",
            "I want to speak to your manager.",
            "我要投诉你们",
            "you said it would arrive on Monday",
            "[inaudible] I want a refund",
        ] {
            assert!(!f.is_phantom(t), "dropped {t:?}");
        }
    }

    #[test]
    fn chinese_output_is_simplified() {
        assert_eq!(tidy(" 我要投訴你們的服務 ", "zh"), "我要投诉你们的服务");
        assert_eq!(tidy("這不可能", "zh"), "这不可能");
        // English text is left as it is.
        assert_eq!(tidy(" Hello there ", "en"), "Hello there");
    }

    #[test]
    fn prompt_echoes_are_removed() {
        let p = "以下是普通话的句子，使用简体中文。";
        assert_eq!(
            strip_prompt_echo("我要投诉你们，使用简体中文。", p),
            "我要投诉你们。"
        );
        assert_eq!(strip_prompt_echo("以下是普通话的句子。", p), "");
        assert_eq!(strip_prompt_echo("我要退款。", p), "我要退款。");
    }

    #[test]
    fn annotations_are_stripped_but_words_kept() {
        assert_eq!(
            strip_annotations("[noise] I want (cough) a refund"),
            " I want  a refund"
        );
    }
}
