//! The repeated-complaint detector: notices the customer stating the same grievance again
//! and again ("my washing machine was not delivered" ... "where is my washing machine" ...
//! "I still don't have the washing machine I ordered") and emits `repeated_complaint` when
//! one grievance has come up `count` times, and again at every further repeat.
//!
//! What it does: reduces each complaint-bearing customer utterance to content tokens
//! (English words without stop words, lightly stemmed, numbers kept because they identify
//! orders; Chinese character unigrams and bigrams after removing function characters and
//! complaint filler such as 还没, 怎么, 现在), and groups an utterance with the earlier group
//! whose tokens it overlaps most (overlap coefficient against the group's token set).
//!
//! A restatement in new words shares too little with the first statement to be matched by
//! content, so there is a second way to count: an utterance that says outright the problem
//! was raised before ("for the third time", "that's what I was told last time", 又是这样;
//! the caller passes `restated`, normally from [`Lexicon::mentions_repeat`]) counts the
//! customer's earlier utterances that were complaints or share a content word with it; when
//! they come to `count` with it, and `restated_count` of them say so, that is a repeated
//! complaint too. After such an utterance, every further complaint-bearing one counts the
//! same way: it is the problem the customer already said was raised before.
//!
//! What it does not: decide whether an utterance is a complaint (the caller passes
//! `complaint_bearing`, normally from [`Lexicon::is_grievance`]), listen to the agent leg,
//! or understand meaning: paraphrases that share no content word ("my parcel" / "the
//! package") and say nothing of having asked before are separate grievances. On a mixed (one-channel) recording it cannot tell
//! who spoke, so the agent's complaint-bearing sentences count too. Pure: no I/O, no clock.
//!
//! [`Lexicon::is_grievance`]: super::lexicon::Lexicon::is_grievance
//! [`Lexicon::mentions_repeat`]: super::lexicon::Lexicon::mentions_repeat

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::event::Transcript;
use crate::domain::leg::Leg;
use crate::domain::signal::{Quote, Signal, SignalKind};
use crate::pipeline::detect::lexicon::{Unit, is_cjk, normalise};

/// Shared words reported in a signal's `terms`.
const MAX_TERMS: usize = 5;

/// How the repeated-complaint detector groups utterances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepetitionConfig {
    /// Signal when the same grievance has come up this many times (at least 2); every
    /// further repeat signals again with the new count.
    pub count: u32,
    /// How much of an utterance's content must be found in a grievance's words for it to
    /// count as that grievance again: shared tokens over the smaller token set, in (0, 1].
    pub min_similarity: f32,
    /// Only repeats within this many milliseconds of call audio of each other count
    /// (0 = the whole call). Older statements of a grievance are forgotten.
    pub window_ms: u64,
    /// Utterances with fewer content tokens than this are not tracked ("why?", "still
    /// nothing"), and a repeat must share at least this many tokens with its grievance.
    pub min_content_tokens: u32,
    /// Signal also when an utterance says the problem was raised before (third time, 又,
    /// last time) and, with the customer's earlier utterances that were complaints or share
    /// a content word with it, comes to `count`, this many of them saying so; then again at
    /// each further such utterance. 0 = off.
    pub restated_count: u32,
}

impl Default for RepetitionConfig {
    fn default() -> Self {
        Self {
            count: 3,
            min_similarity: 0.5,
            // The whole call: a grievance raised at minute 2 and again at minute 25 is
            // still the customer repeating themself.
            window_ms: 0,
            min_content_tokens: 2,
            restated_count: 1,
        }
    }
}

/// Why a repetition config cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepetitionConfigError {
    #[error("repetition.count must be at least 2 (got {0})")]
    Count(u32),
    #[error("repetition.min_similarity must be above 0 and at most 1 (got {0})")]
    Similarity(f32),
    #[error("repetition.window_ms must be 0 (the whole call) or at least 1000 (got {0})")]
    Window(u64),
    #[error("repetition.min_content_tokens must be at least 1")]
    ContentTokens,
    #[error("repetition.restated_count must be 0 (off) or from 1 to count (got {0})")]
    Restated(u32),
}

impl RepetitionConfig {
    pub fn validate(&self) -> Result<(), RepetitionConfigError> {
        if self.count < 2 {
            return Err(RepetitionConfigError::Count(self.count));
        }
        if !(self.min_similarity > 0.0 && self.min_similarity <= 1.0) {
            return Err(RepetitionConfigError::Similarity(self.min_similarity));
        }
        if self.window_ms != 0 && self.window_ms < 1000 {
            return Err(RepetitionConfigError::Window(self.window_ms));
        }
        if self.min_content_tokens == 0 {
            return Err(RepetitionConfigError::ContentTokens);
        }
        if self.restated_count > self.count {
            return Err(RepetitionConfigError::Restated(self.restated_count));
        }
        Ok(())
    }
}

/// One tracked utterance.
#[derive(Debug, Clone)]
struct Member {
    quote: Quote,
    /// Content tokens in order of appearance: (key, surface form).
    tokens: Vec<(String, String)>,
    keys: BTreeSet<String>,
}

/// Utterances stating one grievance.
#[derive(Debug, Clone, Default)]
struct Group {
    members: Vec<Member>,
    /// Whether any member carries complaint words or a grievance marker. A topic the customer
    /// keeps returning to only counts as a repeated complaint once it is a complaint; then
    /// its earlier, neutral statements count too ("my washing machine was due Monday").
    complaint: bool,
}

impl Group {
    fn keys(&self) -> BTreeSet<&str> {
        self.members
            .iter()
            .flat_map(|m| m.keys.iter().map(String::as_str))
            .collect()
    }

    /// The words most members share, most widespread first, as first spoken.
    fn shared_terms(&self) -> Vec<String> {
        let mut seen: BTreeMap<&str, (usize, usize, &str)> = BTreeMap::new();
        let mut order = 0;
        for m in &self.members {
            for (key, surface) in &m.tokens {
                let entry = seen.entry(key).or_insert((0, order, surface));
                entry.0 += 1;
                order += 1;
            }
        }
        let mut shared: Vec<(&str, usize, usize, &str)> = seen
            .into_iter()
            .filter(|(_, (n, _, _))| *n >= 2)
            .map(|(key, (n, first, surface))| (key, n, first, surface))
            .collect();
        // Among equals a Chinese bigram says more than its characters; otherwise words
        // keep the order they were first spoken in.
        let weight = |key: &str| key.chars().count().min(2);
        shared.sort_by(|a, b| (b.1, weight(b.0), a.2).cmp(&(a.1, weight(a.0), b.2)));
        let mut out: Vec<String> = Vec::new();
        let mut chosen: Vec<&str> = Vec::new();
        for (key, _, _, surface) in shared {
            // A lone Chinese character (到, 快) rarely names the grievance; it is reported
            // only when nothing longer is shared.
            let chinese = key.chars().all(is_cjk);
            let lone_char = chinese && key.chars().count() == 1;
            if (chinese && chosen.iter().any(|c| c.contains(key))) || (lone_char && !out.is_empty())
            {
                continue;
            }
            chosen.push(key);
            out.push(surface.to_owned());
            if out.len() == MAX_TERMS {
                break;
            }
        }
        out
    }
}

/// Groups complaint-bearing customer utterances by grievance and signals repeats.
#[derive(Debug, Clone)]
pub struct RepetitionDetector {
    config: RepetitionConfig,
    groups: Vec<Group>,
    /// Every customer utterance so far (within the window), for the restatement rule.
    said: Vec<Said>,
}

impl RepetitionDetector {
    pub fn new(config: &RepetitionConfig) -> Self {
        Self {
            config: config.clone(),
            groups: Vec::new(),
            said: Vec::new(),
        }
    }

    pub fn config(&self) -> &RepetitionConfig {
        &self.config
    }

    /// Forgets every grievance (a new call).
    pub fn reset(&mut self) {
        self.groups.clear();
        self.said.clear();
    }

    /// Takes one transcript. Agent utterances are ignored. Every customer utterance with enough
    /// content is grouped by topic, but a topic signals only once one of its utterances is
    /// `complaint_bearing`: "so where is my washing machine?" counts towards the washing
    /// machine complaint, and a topic never complained about never signals.
    /// Returns a `repeated_complaint` signal when the utterance brings its grievance to
    /// `count` or beyond: `count` = the repeats so far, `quotes` = every utterance of the
    /// grievance still in the window, start/end = from the first quote's start to the last
    /// quote's end, `terms` = the content words they share.
    ///
    /// `restated`: the utterance says the problem was raised before (see the module doc);
    /// when the words do not match an earlier grievance, such utterances are counted on
    /// their own, and the signal then quotes every complaint-bearing utterance.
    pub fn update(
        &mut self,
        t: &Transcript,
        complaint_bearing: bool,
        restated: bool,
        now_ms: u64,
    ) -> Vec<Signal> {
        if t.leg == Leg::Agent {
            return Vec::new();
        }
        self.forget_before(now_ms);
        let clauses = content_clauses(&t.text);
        let tokens = merge(&clauses);
        let keys: BTreeSet<String> = tokens.iter().map(|(k, _)| k.clone()).collect();
        let by_topic = self.by_topic(t, &clauses, tokens, &keys, complaint_bearing, now_ms);
        let said = Said {
            quote: quote_of(t),
            keys,
            bearing: complaint_bearing || restated,
            restated,
        };
        // Once the customer has said the problem was raised before, each further complaint
        // is that problem again, whatever its words ("it's been months since the referral"
        // ... "that's what I was told in April and again in May" ... "so it's still sitting
        // there").
        let counts = restated || (said.bearing && self.said.iter().any(|s| s.restated));
        let out = if by_topic.is_empty() && counts {
            self.by_restatement(&said, now_ms)
        } else {
            by_topic
        };
        self.said.push(said);
        out
    }

    /// The restatement rule (see the module doc).
    fn by_restatement(&self, now: &Said, now_ms: u64) -> Vec<Signal> {
        let needed = self.config.restated_count as usize;
        let related: Vec<&Said> = self
            .said
            .iter()
            .filter(|s| s.bearing || shares_a_word(&s.keys, &now.keys))
            .chain(std::iter::once(now))
            .collect();
        let restated = related.iter().filter(|s| s.restated).count();
        if needed == 0 || restated < needed || related.len() < self.config.count as usize {
            return Vec::new();
        }
        let quotes: Vec<Quote> = related.iter().map(|s| s.quote.clone()).collect();
        let start_ms = quotes.first().map_or(now.quote.start_ms, |q| q.start_ms);
        let mut signal = Signal::new(
            SignalKind::RepeatedComplaint,
            now.quote.leg,
            start_ms,
            now.quote.end_ms,
            now_ms,
        );
        signal.count = Some(u32::try_from(quotes.len()).unwrap_or(u32::MAX));
        signal.quotes = quotes;
        vec![signal]
    }

    /// The topic rule: the utterance joins the grievance it shares most words with.
    /// `clauses` are the utterance's content tokens by clause, `tokens` and `keys` the
    /// whole utterance's (see [`content_clauses`] and [`merge`]).
    fn by_topic(
        &mut self,
        t: &Transcript,
        clauses: &[Vec<(String, String)>],
        tokens: Vec<(String, String)>,
        keys: &BTreeSet<String>,
        complaint_bearing: bool,
        now_ms: u64,
    ) -> Vec<Signal> {
        let min_tokens = self.config.min_content_tokens as usize;
        if keys.len() < min_tokens {
            return Vec::new();
        }
        // The restatement is often one clause of a longer turn ("说好的快递怎么还没到？叫你们
        // 经理来！"), so each clause may match a grievance on its own, as may the whole turn.
        let mut candidates: Vec<BTreeSet<&str>> = vec![keys.iter().map(String::as_str).collect()];
        if clauses.len() > 1 {
            candidates.extend(
                clauses
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<BTreeSet<&str>>()
                    })
                    .filter(|c| c.len() >= min_tokens),
            );
        }
        let mut best: Option<(usize, f32)> = None;
        for (i, g) in self.groups.iter().enumerate() {
            let group_keys = g.keys();
            for candidate in &candidates {
                let shared = candidate.intersection(&group_keys).count();
                let similarity =
                    shared as f32 / candidate.len().min(group_keys.len()).max(1) as f32;
                if shared >= min_tokens
                    && similarity >= self.config.min_similarity
                    && best.is_none_or(|(_, s)| similarity > s)
                {
                    best = Some((i, similarity));
                }
            }
        }
        let member = Member {
            quote: quote_of(t),
            tokens,
            keys: keys.clone(),
        };
        let index = match best {
            Some((i, _)) => i,
            None => {
                self.groups.push(Group::default());
                self.groups.len() - 1
            }
        };
        let Some(group) = self.groups.get_mut(index) else {
            return Vec::new();
        };
        group.members.push(member);
        group.complaint |= complaint_bearing;
        let n = group.members.len();
        if n < self.config.count as usize || !group.complaint {
            return Vec::new();
        }
        let quotes: Vec<Quote> = group.members.iter().map(|m| m.quote.clone()).collect();
        let start_ms = quotes
            .iter()
            .map(|q| q.start_ms)
            .min()
            .unwrap_or(t.start_ms);
        let end_ms = quotes.iter().map(|q| q.end_ms).max().unwrap_or(t.end_ms);
        let mut signal = Signal::new(
            SignalKind::RepeatedComplaint,
            t.leg,
            start_ms,
            end_ms,
            now_ms,
        );
        signal.count = Some(u32::try_from(n).unwrap_or(u32::MAX));
        signal.terms = group.shared_terms();
        signal.quotes = quotes;
        vec![signal]
    }

    fn forget_before(&mut self, now_ms: u64) {
        if self.config.window_ms == 0 {
            return;
        }
        let window = self.config.window_ms;
        self.said
            .retain(|s| now_ms.saturating_sub(s.quote.end_ms) <= window);
        for g in &mut self.groups {
            g.members
                .retain(|m| now_ms.saturating_sub(m.quote.end_ms) <= window);
        }
        self.groups.retain(|g| !g.members.is_empty());
    }
}

/// A customer utterance as the restatement rule sees it.
#[derive(Debug, Clone)]
struct Said {
    quote: Quote,
    keys: BTreeSet<String>,
    /// A complaint, or a grievance marker.
    bearing: bool,
    /// Says the problem was raised before.
    restated: bool,
}

/// Whether two utterances share a content word: an English word, a Chinese bigram, or two
/// Chinese characters. One character in common is too little (后 in 前后 and in 后四位), and
/// Chinese digits are no topic at all (they are not content tokens).
fn shares_a_word(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    let mut chars = 0;
    for k in a.intersection(b) {
        if k.chars().count() == 1 && k.chars().all(is_cjk) {
            chars += 1;
        } else {
            return true;
        }
    }
    chars >= 2
}

fn quote_of(t: &Transcript) -> Quote {
    Quote {
        leg: t.leg,
        start_ms: t.start_ms,
        end_ms: t.end_ms,
        text: t.text.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Content tokens.

/// English words that carry no grievance content: function words, and the framing every
/// complaint shares ("still", "again", "want", "third time", "calling").
const EN_STOP: &str = "\
    a about above actually after again against ago all already also am an and any anything \
    are arent as at be because been before being below between both but by call called \
    calling can cannot cant come coming could couldnt day days did didnt do does doesnt \
    doing done dont down during each even ever fifth first for fourth from get gets getting \
    go going gone got gotten had hadnt has hasnt have havent having he hello her here hers \
    hi him his how i id if ill im in into is isnt it its ive just know last let lets like \
    lot made make many may me might mine month months more most much must my myself need \
    needed needs never no nobody nor not nothing now of off oh ok okay on once one only or \
    other our ours out over please really right said same say says second she should \
    shouldnt sir so some someone something still such tell than thank thanks that thats the \
    their them then there theres these they thing things think third this those through time \
    times to today told tomorrow too uh um under until up us very wait waiting want wanted \
    wants was wasnt way we week weeks well were werent what whats when where wheres which \
    while who whom why will with wont would wouldnt yeah yes yesterday yet you your youre \
    yours yourself youve";

/// Chinese framing words, removed before the characters are cut into tokens. Tried in
/// order, so a word comes before the shorter ones inside it (为什么 before 什么).
const ZH_STOP_WORDS: &str = "\
    为什么 怎么回事 到现在 现在 怎么 什么 到底 一直 已经 还是 还没有 还没 没有 说好 就是 这个 那个 一个 \
    然后 可是 但是 因为 所以 一下 多少 可以 知道 这样 那样 时候 今天 昨天 请问 你好 您好 谢谢 麻烦 第三次 \
    第二次 好几次 几次 一次 马上 赶紧 赶快 尽快 快点 立刻";

/// Function characters (的了吗呢吧啊, pronouns, 是在有 and their kin), removed: they are in
/// every sentence, so sharing them says nothing.
const ZH_STOP_CHARS: &str = "的了吗呢吧啊呀哦嗯哎唉啦嘛我你您他她它们是在有就都也还又再很太真这那个么啥把被给让对和跟第次不没要想能会请帮";

/// Chinese digits, removed too: read out one by one they are phone, card and order numbers,
/// and a caller saying their order number again (a bad line, a check) is not a grievance
/// said again.
const ZH_DIGITS: &str = "零〇一二三四五六七八九十两幺";

/// The content tokens of an utterance, clause by clause: each (key, surface), distinct by
/// key within the clause, in order. Clauses without content are left out.
fn content_clauses(text: &str) -> Vec<Vec<(String, String)>> {
    let mut clauses: Vec<Vec<(String, String)>> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<(String, String)>| {
        if !word.is_empty() && !EN_STOP.split_ascii_whitespace().any(|w| w == word) {
            let key = if word.chars().all(|c| c.is_ascii_digit()) {
                word.clone()
            } else {
                stem(word)
            };
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, word.clone()));
            }
        }
        word.clear();
    };
    for (unit, _) in normalise(text) {
        match unit {
            Unit::Char(c) if is_cjk(c) => {
                flush_word(&mut word, &mut out);
                cjk.push(c);
            }
            Unit::Char(c) => {
                cjk_tokens(&mut cjk, &mut out);
                word.push(c);
            }
            // Whisper spaces Chinese out at random, so a space ends a word but not a run
            // of characters.
            Unit::Space => flush_word(&mut word, &mut out),
            Unit::Break => {
                flush_word(&mut word, &mut out);
                cjk_tokens(&mut cjk, &mut out);
                if !out.is_empty() {
                    clauses.push(std::mem::take(&mut out));
                }
            }
        }
    }
    flush_word(&mut word, &mut out);
    cjk_tokens(&mut cjk, &mut out);
    if !out.is_empty() {
        clauses.push(out);
    }
    clauses
}

/// The clauses' tokens as one list, distinct by key, in order.
fn merge(clauses: &[Vec<(String, String)>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, surface) in clauses.iter().flatten() {
        if !out.iter().any(|(k, _)| k == key) {
            out.push((key.clone(), surface.clone()));
        }
    }
    out
}

/// Cuts a run of Chinese characters into unigrams and bigrams of what is left once the
/// framing words and function characters are gone, and empties the run.
fn cjk_tokens(run: &mut Vec<char>, out: &mut Vec<(String, String)>) {
    let mut kept: Vec<Option<char>> = Vec::with_capacity(run.len());
    let mut i = 0;
    while i < run.len() {
        let stop_word = ZH_STOP_WORDS.split_whitespace().find_map(|w| {
            let w: Vec<char> = w.chars().collect();
            run[i..].starts_with(&w).then_some(w.len())
        });
        match stop_word {
            Some(n) => {
                kept.extend(std::iter::repeat_n(None, n));
                i += n;
            }
            None => {
                let c = run[i];
                kept.push((!ZH_STOP_CHARS.contains(c) && !ZH_DIGITS.contains(c)).then_some(c));
                i += 1;
            }
        }
    }
    let add = |key: String, out: &mut Vec<(String, String)>| {
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key.clone(), key));
        }
    };
    for (i, c) in kept.iter().enumerate() {
        let Some(c) = c else { continue };
        add(c.to_string(), out);
        if let Some(Some(next)) = kept.get(i + 1) {
            add(format!("{c}{next}"), out);
        }
    }
    run.clear();
}

/// Light English stemming, so that delivered/delivery/deliveries and arrive/arrived/arriving
/// meet. Not a real stemmer: the keys only need to agree with each other.
fn stem(word: &str) -> String {
    let mut s = word.to_owned();
    let len = |s: &String| s.chars().count();
    if len(&s) > 4 && s.ends_with("ies") {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with("sses") {
        s.truncate(s.len() - 2);
    } else if len(&s) > 3
        && s.ends_with('s')
        && !s.ends_with("ss")
        && !s.ends_with("us")
        && !s.ends_with("is")
    {
        s.pop();
    }
    let mut stripped = false;
    if len(&s) > 5 && s.ends_with("ing") {
        s.truncate(s.len() - 3);
        stripped = true;
    } else if len(&s) > 4 && s.ends_with("ed") {
        s.truncate(s.len() - 2);
        stripped = true;
    }
    if stripped {
        // shipped -> shipp -> ship; but called -> call, missed -> miss.
        let tail: Vec<char> = s.chars().rev().take(2).collect();
        if let [a, b] = tail[..]
            && a == b
            && !"aeioulsz".contains(a)
        {
            s.pop();
        }
    }
    if len(&s) > 4 && (s.ends_with('e') || s.ends_with('y')) {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(leg: Leg, start_ms: u64, text: &str) -> Transcript {
        Transcript {
            call_id: "c".into(),
            leg,
            start_ms,
            end_ms: start_ms + 3000,
            at_ms: start_ms + 3000,
            text: text.into(),
            lang: "en".into(),
            is_final: true,
        }
    }

    /// Feeds customer utterances 10 s apart; returns the signals of each.
    fn feed(d: &mut RepetitionDetector, texts: &[&str]) -> Vec<Vec<Signal>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let start = i as u64 * 10_000;
                d.update(&t(Leg::Customer, start, text), true, false, start + 3000)
            })
            .collect()
    }

    fn keys(text: &str) -> Vec<String> {
        merge(&content_clauses(text))
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn the_default_config_is_valid_and_invalid_ones_are_named() {
        assert_eq!(RepetitionConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut RepetitionConfig)| {
            let mut c = RepetitionConfig::default();
            f(&mut c);
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(|c| c.count = 1).contains("repetition.count"));
        assert!(bad(|c| c.min_similarity = 0.0).contains("repetition.min_similarity"));
        assert!(bad(|c| c.min_similarity = f32::NAN).contains("repetition.min_similarity"));
        assert!(bad(|c| c.min_similarity = 1.5).contains("repetition.min_similarity"));
        assert!(bad(|c| c.window_ms = 500).contains("repetition.window_ms"));
        assert!(bad(|c| c.min_content_tokens = 0).contains("repetition.min_content_tokens"));
    }

    #[test]
    fn config_reads_from_toml_with_defaults_and_refuses_unknown_keys() {
        let c: RepetitionConfig = toml::from_str("count = 2\nwindow_ms = 1800000\n").unwrap();
        assert_eq!(c.count, 2);
        assert_eq!(c.window_ms, 1_800_000);
        assert_eq!(c.min_similarity, RepetitionConfig::default().min_similarity);
        assert!(toml::from_str::<RepetitionConfig>("cuont = 2\n").is_err());
        let back: RepetitionConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn content_tokens_drop_framing_and_keep_order_numbers() {
        assert_eq!(
            keys("I still don't have the washing machine I ordered!"),
            vec!["wash", "machin", "order"]
        );
        assert_eq!(
            keys("It is order 7731. This is the third time I am calling."),
            vec!["order", "7731"]
        );
        assert_eq!(
            keys("The deliveries were delayed"),
            keys("the delivery was delay")
        );
        assert_eq!(keys("我的快递还没到"), vec!["快", "快递", "递", "到"]);
        // Traditional characters and Whisper's stray spaces change nothing.
        assert_eq!(keys("我的快遞 還沒到"), keys("我的快递还没到"));
        assert!(keys("为什么？还没有？").is_empty());
    }

    #[test]
    fn english_paraphrases_group_and_signal_at_the_third() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        let out = feed(
            &mut d,
            &[
                "My washing machine was not delivered.",
                "Where is my washing machine?",
                "I still don't have the washing machine I ordered.",
                "Seriously, where is the washing machine?",
            ],
        );
        assert!(out[0].is_empty() && out[1].is_empty());
        assert_eq!(out[2].len(), 1);
        let s = &out[2][0];
        assert_eq!(s.kind, SignalKind::RepeatedComplaint);
        assert_eq!(s.count, Some(3));
        assert_eq!(s.leg, Leg::Customer);
        assert_eq!((s.start_ms, s.end_ms, s.at_ms), (0, 23_000, 23_000));
        assert_eq!(s.quotes.len(), 3);
        assert_eq!(s.quotes[1].text, "Where is my washing machine?");
        assert_eq!(s.quotes[1].start_ms, 10_000);
        assert_eq!(s.terms, vec!["washing", "machine"]);
        // Every further repeat signals again, with the new count.
        assert_eq!(out[3][0].count, Some(4));
        assert_eq!(out[3][0].quotes.len(), 4);
    }

    #[test]
    fn chinese_paraphrases_group() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        // The third restates it in one clause of a longer turn.
        let out = feed(
            &mut d,
            &[
                "我的快递一个星期了还没到。",
                "快递到现在还没收到，我等了好几天了。",
                "说好的快递怎么还没到？叫你们经理来！",
            ],
        );
        assert!(out[0].is_empty() && out[1].is_empty());
        assert_eq!(out[2].len(), 1, "{out:?}");
        assert_eq!(out[2][0].count, Some(3));
        assert_eq!(out[2][0].terms, vec!["快递"]);
    }

    #[test]
    fn unrelated_complaints_do_not_group() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        let out = feed(
            &mut d,
            &[
                "My washing machine was not delivered.",
                "You charged my credit card twice.",
                "Your agent was rude to me on the phone.",
                "And the refund for my last order never came.",
                "快递员态度很差",
                "退款什么时候到账",
                "我的快递还没到",
            ],
        );
        assert!(out.iter().all(Vec::is_empty), "{out:?}");
    }

    #[test]
    fn a_restatement_counts_without_complaint_words() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        let a = "My washing machine was not delivered on Monday.";
        assert!(
            d.update(&t(Leg::Customer, 0, a), true, false, 3000)
                .is_empty()
        );
        // Neither of these carries a complaint word, but both restate the grievance.
        let b = "So where is my washing machine?";
        assert!(
            d.update(&t(Leg::Customer, 5000, b), false, false, 8000)
                .is_empty()
        );
        let c = "I am still waiting for the washing machine.";
        let s = d.update(&t(Leg::Customer, 9000, c), false, false, 12_000);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].count, Some(3));
        // But no complaint word and nothing on record opens nothing.
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        for i in 0..4 {
            assert!(
                d.update(
                    &t(Leg::Customer, i * 4000, b),
                    false,
                    false,
                    i * 4000 + 3000
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn agent_and_non_complaint_utterances_are_ignored() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        let text = "My washing machine was not delivered.";
        assert!(
            d.update(&t(Leg::Customer, 0, text), true, false, 3000)
                .is_empty()
        );
        assert!(
            d.update(&t(Leg::Agent, 5000, text), true, false, 8000)
                .is_empty()
        );
        assert!(
            d.update(&t(Leg::Agent, 9000, text), true, false, 12_000)
                .is_empty()
        );
        // Not a complaint and about nothing on record: ignored.
        assert!(
            d.update(
                &t(
                    Leg::Customer,
                    13_000,
                    "What time does your shop open tomorrow?"
                ),
                false,
                false,
                16_000
            )
            .is_empty()
        );
        assert!(
            d.update(&t(Leg::Customer, 17_000, text), true, false, 20_000)
                .is_empty()
        );
        // The third customer complaint; the mixed leg counts as the customer's.
        let s = d.update(&t(Leg::Mixed, 21_000, text), true, false, 24_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].leg, Leg::Mixed);
        let legs: Vec<Leg> = s[0].quotes.iter().map(|q| q.leg).collect();
        assert_eq!(legs, vec![Leg::Customer, Leg::Customer, Leg::Mixed]);
    }

    #[test]
    fn short_utterances_are_not_tracked() {
        let mut d = RepetitionDetector::new(&RepetitionConfig {
            count: 2,
            ..RepetitionConfig::default()
        });
        let out = feed(&mut d, &["Why?", "Still nothing!", "Why?", "还没到？"]);
        assert!(out.iter().all(Vec::is_empty));
    }

    #[test]
    fn count_two_signals_at_the_first_repeat() {
        let mut d = RepetitionDetector::new(&RepetitionConfig {
            count: 2,
            ..RepetitionConfig::default()
        });
        let out = feed(
            &mut d,
            &["我要退款，退款到现在都没到账", "我的退款什么时候到账"],
        );
        assert!(out[0].is_empty());
        assert_eq!(out[1][0].count, Some(2));
    }

    #[test]
    fn the_window_forgets_old_statements() {
        let config = RepetitionConfig {
            window_ms: 60_000,
            ..RepetitionConfig::default()
        };
        let mut d = RepetitionDetector::new(&config);
        let text = "My washing machine was not delivered.";
        // 50 s apart: each new statement sees only the previous one.
        for i in 0..4u64 {
            let start = i * 50_000;
            let s = d.update(&t(Leg::Customer, start, text), true, false, start + 3000);
            assert!(s.is_empty(), "statement {i}: {s:?}");
        }
        // Within the window, three in a row do signal.
        let mut d = RepetitionDetector::new(&config);
        let out = feed(&mut d, &[text, text, text]);
        assert_eq!(out[2][0].count, Some(3));
        // And reset() forgets everything.
        d.reset();
        assert!(feed(&mut d, &[text, text]).iter().all(Vec::is_empty));
    }

    #[test]
    fn the_window_zero_is_the_whole_call() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        let text = "我的快递还没到";
        for (i, start) in [0u64, 1_200_000, 2_400_000].into_iter().enumerate() {
            let s = d.update(&t(Leg::Customer, start, text), true, false, start + 3000);
            assert_eq!(s.len(), usize::from(i == 2));
        }
    }

    #[test]
    fn stemming_meets_the_usual_forms() {
        for (a, b) in [
            ("delivered", "delivery"),
            ("deliveries", "deliver"),
            ("arrived", "arriving"),
            ("arrive", "arrives"),
            ("shipped", "shipping"),
            ("charged", "charges"),
            ("ordered", "orders"),
            ("refunded", "refund"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_eq!(stem("called"), "call");
        assert_eq!(stem("missed"), "miss");
    }

    /// Customer turns (text, complaint-bearing, restated) five seconds apart, each judged
    /// three seconds after it starts: what each one fired.
    fn feed_marked(d: &mut RepetitionDetector, turns: &[(&str, bool, bool)]) -> Vec<Vec<Signal>> {
        let mut fired = Vec::new();
        for (i, &(text, bearing, restated)) in turns.iter().enumerate() {
            let start = i as u64 * 5000;
            fired.push(d.update(
                &t(Leg::Customer, start, text),
                bearing,
                restated,
                start + 3000,
            ));
        }
        fired
    }

    #[test]
    fn a_complaint_after_a_restatement_is_the_same_problem_again() {
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        // The problem, the customer saying it was raised before, then the problem in other
        // words: only the last one, with neither a shared topic nor a restatement of its
        // own, completes the three.
        let turns = [
            (
                "It's been months since the referral for my knee.",
                true,
                false,
            ),
            (
                "That's the exact phrase I got in April and again in May.",
                true,
                true,
            ),
            (
                "So it's still sitting there and I can't walk properly.",
                true,
                false,
            ),
        ];
        let fired = feed_marked(&mut d, &turns);
        assert!(fired[..2].iter().all(Vec::is_empty), "{fired:?}");
        assert_eq!(fired[2].len(), 1, "{fired:?}");
        assert_eq!(fired[2][0].count, Some(3));
        // Without the restatement the same three complaints are three separate ones.
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        for (i, (text, bearing, _)) in turns.into_iter().enumerate() {
            let start = i as u64 * 5000;
            let out = d.update(&t(Leg::Customer, start, text), bearing, false, start + 3000);
            assert!(out.is_empty(), "{text}: {out:?}");
        }
    }

    #[test]
    fn one_shared_character_or_digits_do_not_make_a_topic() {
        let words = |s: &str| {
            merge(&content_clauses(s))
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let complaint: BTreeSet<String> = words("这个问题我前后问了两次，每次都说给我申请减免。");
        assert!(!shares_a_word(&complaint, &words("后四位是五八三九。")));
        let phone: BTreeSet<String> = words("可以，一三九，二二零八，四四六一。");
        assert!(!shares_a_word(&phone, &words("卡号是六六零四，八一九二。")));
        assert!(shares_a_word(
            &words("这三百块年费什么时候退？"),
            &words("年费到现在还在扣。")
        ));
        assert!(shares_a_word(
            &words("My refund never came."),
            &words("Where is the refund?")
        ));
    }

    #[test]
    fn restatements_in_new_words_count_when_they_say_so() {
        let cfg = RepetitionConfig::default();
        let mut d = RepetitionDetector::new(&cfg);
        // Three complaint-bearing turns sharing almost no content word; two say outright
        // that the customer has been here before.
        let turns = [
            (
                "I returned an order last month and the money never came back.",
                true,
                false,
            ),
            ("This is the third time I've rung about it.", true, true),
            ("What time do you close today?", false, false),
            (
                "So I'm calling again and it still isn't in my account.",
                true,
                true,
            ),
        ];
        let fired = feed_marked(&mut d, &turns);
        assert!(fired[..3].iter().all(Vec::is_empty), "{fired:?}");
        let s = &fired[3];
        assert_eq!(s.len(), 1, "{fired:?}");
        assert_eq!(s[0].kind, SignalKind::RepeatedComplaint);
        assert_eq!(s[0].count, Some(3));
        assert_eq!(s[0].quotes.len(), 3, "the complaint-bearing turns only");
        assert_eq!(s[0].start_ms, 0);

        // One restatement among three complaints is not enough; nor is the rule on when off.
        for restated_count in [2, 0] {
            let cfg = RepetitionConfig {
                restated_count,
                ..RepetitionConfig::default()
            };
            let mut d = RepetitionDetector::new(&cfg);
            let said = [
                ("My parcel is late.", false),
                ("The box was damaged too.", false),
                ("I have called three times already about the refund.", true),
                ("And the invoice is wrong.", false),
            ];
            for (i, (text, restated)) in said.into_iter().enumerate() {
                let start = i as u64 * 5000;
                let out = d.update(&t(Leg::Customer, start, text), true, restated, start + 3000);
                assert!(out.is_empty(), "{restated_count}: {text}: {out:?}");
            }
        }
        // The agent saying it is not the customer restating.
        let mut d = RepetitionDetector::new(&RepetitionConfig::default());
        for i in 0..4u64 {
            let out = d.update(
                &t(Leg::Agent, i * 5000, "I was told again"),
                true,
                true,
                i * 5000 + 3000,
            );
            assert!(out.is_empty());
        }
        assert!(
            RepetitionConfig {
                restated_count: 4,
                ..RepetitionConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
