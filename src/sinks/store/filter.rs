//! What a list of stored calls asks for, as its users type it: words, a date range in any of
//! the forms `domain::clock::parse_time` reads, level, reason, outcome, agent and a page; and
//! the check that turns it into a [`CallFilter`] (dates parsed, `from` before `to`). The CLI
//! (`calls list`) and the HTTP API (`GET /api/calls`) both go through it, so they accept and
//! refuse the same things.

use super::{CallFilter, Outcome};
use crate::domain::alert::Level;
use crate::domain::clock::{format_utc, parse_time};
use crate::domain::signal::SignalKind;
/// What `calls list` asks for; dates still as typed.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub q: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub level: Option<Level>,
    pub reason: Option<SignalKind>,
    pub outcome: Option<Outcome>,
    pub agent: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

impl ListRequest {
    /// The store filter, with the dates parsed (`--to` with a date alone includes that day),
    /// as the command line names them.
    pub fn filter(&self) -> Result<CallFilter, String> {
        self.filter_named("--from", "--to")
    }

    /// [`filter`](Self::filter) with the date parameters called as the caller's users know
    /// them (`from`/`to` in the HTTP API), so errors name what they typed.
    pub fn filter_named(&self, from_name: &str, to_name: &str) -> Result<CallFilter, String> {
        let from = self
            .from
            .as_deref()
            .map(|s| parse_time(s, false).map_err(|e| format!("{from_name} {e}")))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|s| parse_time(s, true).map_err(|e| format!("{to_name} {e}")))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(format!(
                "{from_name} ({}) is not before {to_name} ({})",
                format_utc(f),
                format_utc(t)
            ));
        }
        Ok(CallFilter {
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
            from,
            to,
            level: self.level,
            reason: self.reason,
            outcome: self.outcome,
            agent: self.agent.clone(),
            limit: self.limit,
            offset: self.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::DAY_MS;

    #[test]
    fn list_request_checks_its_dates() {
        let r = ListRequest {
            from: Some("2024-05-02".into()),
            to: Some("2024-05-01".into()),
            limit: 50,
            ..ListRequest::default()
        };
        assert!(r.filter().unwrap_err().to_string().contains("not before"));
        let r = ListRequest {
            from: Some("2024-05-01".into()),
            to: Some("2024-05-01".into()),
            limit: 50,
            ..ListRequest::default()
        };
        let f = r.filter().unwrap();
        assert_eq!(f.to.unwrap() - f.from.unwrap(), DAY_MS);
        let r = ListRequest {
            to: Some("soon".into()),
            ..ListRequest::default()
        };
        let e = r.filter().unwrap_err().to_string();
        assert!(e.starts_with("--to \"soon\""), "{e}");
    }
}
