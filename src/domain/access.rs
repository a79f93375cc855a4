//! Who may do what: the roles a token can carry, the principal behind a presented token, the
//! actions it may ask for, and [`can`], the one function that decides. Pure rules; tokens
//! themselves (minting, hashing, the file) are `sinks::hub::auth`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a token holder is, and so what it may do (see [`can`]):
///
/// - `ingest`: send call audio into the daemon (the phone-system side). Nothing else: it sees
///   no calls and no alerts.
/// - `supervisor`: watch every call live, accept or dismiss transfer prompts, and review
///   calls.
/// - `agent`: see only the calls whose agent is the one the token is bound to (an agent name
///   or extension). It cannot act on alerts, not even its own.
/// - `qa`: watch and review every call and write QA notes; it cannot accept or dismiss
///   transfer prompts.
/// - `admin`: everything a supervisor may do, and delete stored calls (which nobody else
///   may: the playbook keeps every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Supervisor,
    Agent,
    Qa,
    Admin,
}

impl Role {
    /// Every role, in the order error messages and help texts list them.
    pub const ALL: [Role; 5] = [
        Role::Ingest,
        Role::Supervisor,
        Role::Agent,
        Role::Qa,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Supervisor => "supervisor",
            Role::Agent => "agent",
            Role::Qa => "qa",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected one of: ingest, supervisor, agent, qa, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Exact, lowercase only: the same spelling the file and the CLI use, so there is one
        // way to write each role.
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Who presented a valid token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub agent: Option<String>,
}

/// Something a principal asks to do; [`can`] says whether it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send a call's audio.
    Ingest,
    /// Watch every call.
    WatchAll,
    /// Watch one call whose agent is this name or extension.
    WatchAgent(&'a str),
    /// Accept a transfer prompt (take the call over).
    AcceptTransfer,
    /// Dismiss a transfer prompt or alert.
    DismissAlert,
    /// Review every stored call: transcripts, recordings, QA flags (agents review only their
    /// own calls, through [`Action::WatchAgent`]).
    ReviewCalls,
    /// Add QA notes to a stored call.
    AnnotateCalls,
    /// Delete a stored call and its recording.
    DeleteCalls,
}

/// Whether `principal` may do `action`. The rules are in [`Role`]'s documentation.
pub fn can(principal: &Principal, action: Action<'_>) -> bool {
    match principal.role {
        Role::Ingest => matches!(action, Action::Ingest),
        Role::Supervisor => !matches!(action, Action::Ingest | Action::DeleteCalls),
        Role::Admin => !matches!(action, Action::Ingest),
        Role::Qa => matches!(
            action,
            Action::WatchAll | Action::WatchAgent(_) | Action::ReviewCalls | Action::AnnotateCalls
        ),
        // A hand-built agent principal with no binding sees nothing rather than everything.
        Role::Agent => match (action, principal.agent.as_deref()) {
            (Action::WatchAgent(call_agent), Some(own)) => call_agent == own,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, agent: Option<&str>) -> Principal {
        Principal {
            name: "p".into(),
            role,
            agent: agent.map(str::to_string),
        }
    }

    #[test]
    fn roles_parse_display_and_serialise_lowercase() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("`root`"), "{err}");
        for role in ["ingest", "supervisor", "agent", "qa", "admin"] {
            assert!(err.contains(role), "{err}");
        }
        assert!("Supervisor".parse::<Role>().is_err());
    }

    #[test]
    fn can_matrix() {
        let ingest = principal(Role::Ingest, None);
        let sup = principal(Role::Supervisor, None);
        let agent = principal(Role::Agent, Some("1042"));
        let qa = principal(Role::Qa, None);
        let admin = principal(Role::Admin, None);
        let unbound = principal(Role::Agent, None);

        let own = Action::WatchAgent("1042");
        let other = Action::WatchAgent("2001");
        let actions = [
            Action::Ingest,
            Action::WatchAll,
            own,
            other,
            Action::AcceptTransfer,
            Action::DismissAlert,
            Action::ReviewCalls,
            Action::AnnotateCalls,
            Action::DeleteCalls,
        ];
        //               ingest watchall own  other accept dismiss review annotate delete
        let expected = [
            (
                &ingest,
                [true, false, false, false, false, false, false, false, false],
            ),
            (
                &sup,
                [false, true, true, true, true, true, true, true, false],
            ),
            (
                &agent,
                [false, false, true, false, false, false, false, false, false],
            ),
            (
                &qa,
                [false, true, true, true, false, false, true, true, false],
            ),
            (
                &admin,
                [false, true, true, true, true, true, true, true, true],
            ),
            (&unbound, [false; 9]),
        ];
        for (p, row) in expected {
            for (action, want) in actions.iter().zip(row) {
                assert_eq!(can(p, *action), want, "{:?} {action:?}", p.role);
            }
        }
        // Exact match: no prefix or case games.
        assert!(!can(&agent, Action::WatchAgent("10421")));
        assert!(!can(&agent, Action::WatchAgent("")));
        let named = principal(Role::Agent, Some("Alice"));
        assert!(!can(&named, Action::WatchAgent("alice")));
    }
}
