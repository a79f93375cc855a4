//! A stored call's transcript as files: WebVTT (speaker voice tags), SRT (speaker prefix) and
//! JSON (the call with its segments, signals and alerts). Pure functions of a [`CallDetail`].
//!
//! Cue times are call-audio times. Line breaks inside a line become spaces (a blank line would
//! end a cue); WebVTT text escapes `&`, `<` and `>`.

use serde::Serialize;

use crate::domain::leg::Leg;
use crate::domain::signal::Signal;
use crate::sinks::store::{AlertRecord, CallDetail, CallRow, SegmentRow};

/// The speaker's name in exports: `Customer`, `Agent`, or `Caller` for a mixed channel.
pub fn speaker(leg: Leg) -> &'static str {
    match leg {
        Leg::Customer => "Customer",
        Leg::Agent => "Agent",
        Leg::Mixed => "Caller",
    }
}

/// `HH:MM:SS` + `sep` + `mmm`; hours grow past two digits when needed.
fn timestamp(ms: u64, sep: char) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    format!(
        "{h:02}:{:02}:{:02}{sep}{:03}",
        rest / 60_000,
        rest % 60_000 / 1000,
        rest % 1000
    )
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lines worth a cue, in order, with an end after the start.
fn cues(detail: &CallDetail) -> impl Iterator<Item = (&SegmentRow, u64, String)> {
    detail.segments.iter().filter_map(|s| {
        let text = one_line(&s.text);
        (!text.is_empty()).then(|| (s, s.end_ms.max(s.start_ms.saturating_add(1)), text))
    })
}

/// WebVTT: `WEBVTT`, then one cue per line with a `<v Customer>` / `<v Agent>` /
/// `<v Caller>` voice tag.
pub fn to_vtt(detail: &CallDetail) -> String {
    let mut out = String::from("WEBVTT\n");
    for (s, end, text) in cues(detail) {
        let text = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        out.push_str(&format!(
            "\n{} --> {}\n<v {}>{}\n",
            timestamp(s.start_ms, '.'),
            timestamp(end, '.'),
            speaker(s.leg),
            text
        ));
    }
    out
}

/// SRT: numbered cues, the speaker as a `Customer: ` prefix.
pub fn to_srt(detail: &CallDetail) -> String {
    let mut out = String::new();
    for (i, (s, end, text)) in cues(detail).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{}\n{} --> {}\n{}: {}\n",
            i + 1,
            timestamp(s.start_ms, ','),
            timestamp(end, ','),
            speaker(s.leg),
            text
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonExport<'a> {
    call: &'a CallRow,
    segments: &'a [SegmentRow],
    signals: &'a [Signal],
    alerts: &'a [AlertRecord],
}

/// JSON: `{"call": .., "segments": [..], "signals": [..], "alerts": [..]}`, pretty-printed.
pub fn to_json(detail: &CallDetail) -> String {
    let export = JsonExport {
        call: &detail.call,
        segments: &detail.segments,
        signals: &detail.signals,
        alerts: &detail.alerts,
    };
    // Plain data: cannot fail; never panic if it could.
    serde_json::to_string_pretty(&export)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_zero_padded() {
        assert_eq!(timestamp(0, '.'), "00:00:00.000");
        assert_eq!(timestamp(3_723_045, ','), "01:02:03,045");
        assert_eq!(timestamp(360_000_000, '.'), "100:00:00.000");
    }

    #[test]
    fn line_breaks_become_spaces() {
        assert_eq!(one_line(" a\r\n\n b \n"), "a b");
    }
}
