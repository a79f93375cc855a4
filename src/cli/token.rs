//! `callguard token create|list|revoke`: access tokens in `<data-dir>/tokens.json`. A token is
//! printed once, when created; only its hash is kept.

use anyhow::Result;

use super::TokenCommand;
use crate::sinks::hub::auth::TokenStore;

pub(super) fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            role,
            name,
            agent,
            data_dir,
        } => {
            let mut store = TokenStore::open(&data_dir)?;
            let now = crate::domain::clock::unix_ms() / 1000;
            let token = store.create(&name, role, agent.clone(), now)?;
            println!(
                "created {role} token {name:?}{} in {}; copy it now, it is not shown again:",
                agent
                    .map(|a| format!(" for agent {a:?}"))
                    .unwrap_or_default(),
                data_dir.join("tokens.json").display()
            );
            println!("{token}");
        }
        TokenCommand::List { data_dir } => {
            let store = TokenStore::open(&data_dir)?;
            if store.list().is_empty() {
                // A hint for people on stderr; stdout stays one line per token for scripts.
                eprintln!(
                    "no tokens in {}: create one with `callguard token create`",
                    data_dir.display()
                );
            }
            for t in store.list() {
                println!(
                    "{:<24} {:<10} {:<12} created {}",
                    t.name,
                    t.role.to_string(),
                    t.agent.as_deref().unwrap_or("-"),
                    t.created_unix
                );
            }
        }
        TokenCommand::Revoke { name, data_dir } => {
            let mut store = TokenStore::open(&data_dir)?;
            let revoked = store.revoke(&name)?;
            println!("revoked {} token {:?}", revoked.role, revoked.name);
        }
    }
    Ok(())
}
