//! How events read in a terminal: the transcript line with its times and leg, the detectors'
//! findings and level changes as notes under it, a block for each transfer prompt. `analyze`,
//! `calls show` and `watch` print through here, so a QA reader sees one layout everywhere.

use crate::domain::alert::CustomerType;
use crate::domain::event::Event;

/// `mm:ss.d` for readable transcripts (hours are added for calls over an hour).
pub fn clock(ms: u64) -> String {
    let tenths = (ms / 100) % 10;
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}.{}", s / 3600, (s / 60) % 60, s % 60, tenths)
    } else {
        format!("{:02}:{:02}.{}", s / 60, s % 60, tenths)
    }
}

/// Indent of the notes printed under a transcript line.
const NOTE: &str = "                    ";

/// The readable form of an event, for QA people reading in a terminal: transcript lines,
/// notes for signals, level changes and QA flags, and a block for each transfer prompt.
/// `None` for events the text view leaves out (score changes within a level).
pub fn format_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Transcript(t) => format!(
            "[{} - {}] {:<8} {}",
            clock(t.start_ms),
            clock(t.end_ms),
            t.leg.as_str(),
            t.text
        ),
        Event::Signal(e) => {
            let s = &e.signal;
            let detail = match (&s.raised, s.count) {
                (Some(r), _) => {
                    let mut rises = format!("{:+.1} dB", r.db_over_baseline);
                    if let Some(p) = r.pitch_rise_semitones {
                        rises.push_str(&format!(", pitch {p:+.1} st"));
                    }
                    if let Some(t) = r.tilt_change_db {
                        rises.push_str(&format!(", tilt {t:+.1} dB"));
                    }
                    format!(
                        "[{} - {}] {rises} over baseline for {:.1} s of speech ({})",
                        clock(s.start_ms),
                        clock(s.end_ms),
                        r.duration_ms as f64 / 1000.0,
                        r.cues.join(", ")
                    )
                }
                (None, Some(n)) => format!("{n} times: {}", s.terms.join(", ")),
                (None, None) => format!("\"{}\"", s.terms.join("\", \"")),
            };
            format!("{NOTE}-- {} ({}): {detail}", s.kind, s.leg)
        }
        Event::Risk(r) => {
            r.previous_level?;
            format!("{NOTE}-- risk {} (score {:.0})", r.level.as_str(), r.score)
        }
        Event::QaFlag(f) => format!(
            "{NOTE}QA FLAG {} ({}): \"{}\". Hint: {}",
            f.kind,
            f.leg,
            f.terms.join("\", \""),
            f.hint
        ),
        Event::Alert(a) => {
            let reasons: Vec<String> = a
                .reasons
                .iter()
                .map(|r| format!("{} ({:.0})", r.kind, r.points))
                .collect();
            let mut lines = vec![
                format!(
                    "{NOTE}!! TRANSFER PROMPT {} at {}: score {:.0}, {}",
                    a.alert_id,
                    clock(a.at_ms),
                    a.score,
                    reasons.join(", ")
                ),
                format!(
                    "{NOTE}   customer type: {}",
                    match a.customer_type {
                        CustomerType::EmotionLed => "emotion-led (情绪主导)",
                        CustomerType::ProblemLed => "problem-led (问题主导)",
                        CustomerType::Instigating => "instigating (恶意煽动)",
                    }
                ),
            ];
            for q in &a.evidence.quotes {
                lines.push(format!(
                    "{NOTE}   evidence: [{}] {}: \"{}\"",
                    clock(q.start_ms),
                    q.leg,
                    q.text
                ));
            }
            for v in &a.evidence.raised_voice {
                lines.push(format!(
                    "{NOTE}   evidence: [{} - {}] {} voice {:+.1} dB ({})",
                    clock(v.start_ms),
                    clock(v.end_ms),
                    v.leg,
                    v.db_over_baseline,
                    v.cues.join(", ")
                ));
            }
            lines.push(format!("{NOTE}   say: {}", a.suggestion.opening));
            for step in &a.suggestion.steps {
                lines.push(format!("{NOTE}   - {step}"));
            }
            lines.push(format!("{NOTE}   time limits: {}", a.suggestion.deadline));
            lines.join("\n")
        }
        Event::Summary(s) => {
            let reasons: Vec<String> = s
                .reasons
                .iter()
                .map(|r| format!("{} x{}", r.kind, r.count))
                .collect();
            format!(
                "== {}: {} long, max risk {:.0} ({}), {} transfer prompt(s), {} QA flag(s){}",
                s.call_id,
                clock(s.duration_ms),
                s.max_score,
                s.max_level.as_str(),
                s.alerts.len(),
                s.qa_flags,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(", signals: {}", reasons.join(", "))
                }
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Transcript;
    use crate::domain::leg::Leg;

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(0), "00:00.0");
        assert_eq!(clock(61_250), "01:01.2");
        assert_eq!(clock(3_725_900), "1:02:05.9");
    }

    #[test]
    fn text_lines_show_time_leg_and_words() {
        let e = Event::Transcript(Transcript {
            call_id: "c".into(),
            leg: Leg::Customer,
            start_ms: 1500,
            end_ms: 4200,
            at_ms: 4200,
            text: "I want a refund".into(),
            lang: "en".into(),
            is_final: true,
        });
        assert_eq!(
            format_text(&e).unwrap(),
            "[00:01.5 - 00:04.2] customer I want a refund"
        );
    }
}
