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

/// The shortest loop unit and how many back-to-back copies make a decoding loop.
const LOOP_MIN_COPIES: usize = 5;
const LOOP_MAX_UNIT: usize = 16;

/// Collapses a decoding loop to one copy: Whisper, given audio cut mid-word (partials above
/// all), can repeat a few characters until it runs out of tokens ("这一天这一天这一天这一天这一天
/// ..."). A unit of 2 to 16 characters repeated 5 or more times back to back is kept once.
/// Digits and number words are never collapsed: "one one one one one" may be a card number
/// being read out, which redaction must still see whole.
pub fn collapse_loops(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let mut skipped = false;
        for unit in 2..=LOOP_MAX_UNIT.min((chars.len() - i) / LOOP_MIN_COPIES) {
            let pattern = &chars[i..i + unit];
            let mut copies = 1;
            while i + (copies + 1) * unit <= chars.len()
                && &chars[i + copies * unit..i + (copies + 1) * unit] == pattern
            {
                copies += 1;
            }
            if copies >= LOOP_MIN_COPIES && !is_numeric(&words_around(&chars, i, i + copies * unit))
            {
                out.extend(pattern);
                i += copies * unit;
                skipped = true;
                break;
            }
        }
        if !skipped {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `chars[start..end]` widened to whole words (a loop unit may start mid-word: "ne o").
fn words_around(chars: &[char], start: usize, end: usize) -> Vec<char> {
    let mut a = start;
    while a > 0 && chars[a].is_alphanumeric() && chars[a - 1].is_alphanumeric() {
        a -= 1;
    }
    let mut b = end;
    while b > 0 && b < chars.len() && chars[b - 1].is_alphanumeric() && chars[b].is_alphanumeric() {
        b += 1;
    }
    chars[a..b].to_vec()
}

/// Whether a stretch is only digits, number words, spaces and punctuation.
fn is_numeric(unit: &[char]) -> bool {
    const WORDS: [&str; 12] = [
        "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        "double",
    ];
    let s: String = unit.iter().collect::<String>().to_lowercase();
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .all(|w| {
            w.chars()
                .all(|c| c.is_ascii_digit() || "零〇一二三四五六七八九幺两".contains(c))
                || WORDS.contains(&w)
        })
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

    #[test]
    fn decoding_loops_collapse_but_speech_and_numbers_stay() {
        assert_eq!(
            collapse_loops("这一天这一天这一天这一天这一天这一天这一天这一天"),
            "这一天"
        );
        assert_eq!(
            collapse_loops("我要投诉，这一天这一天这一天这一天这一天这一天"),
            "我要投诉，这一天"
        );
        assert_eq!(
            collapse_loops("I want a refund, the the the the the the the the"),
            "I want a refund, the"
        );
        // Fewer than five copies is speech ("no, no, no, no!").
        for kept in [
            "No, no, no, no!",
            "哈哈哈哈",
            "谢谢谢谢",
            "太过分了太过分了太过分了",
        ] {
            assert_eq!(collapse_loops(kept), kept);
        }
        // Numbers read out stay whole for redaction.
        for kept in [
            "4111111111111111",
            "my card is one one one one one one one one",
            "一一一一一一一一一一",
            "11 11 11 11 11 11",
        ] {
            assert_eq!(collapse_loops(kept), kept);
        }
        assert_eq!(collapse_loops(""), "");
        assert_eq!(collapse_loops("ab"), "ab");
    }

    fn filter() -> PhantomFilter {
        PhantomFilter::new(&crate::pipeline::asr::AsrConfig::default().phantom_phrases)
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
