//! `cfgstore user add | passwd | grant | revoke | list | disable`

use std::io::{self, BufRead, IsTerminal};
use std::process::ExitCode;

use cfgstore::auth::roles::Role;
use cfgstore::ops;
use cfgstore::store::{OwnerName, Store};
use clap::Subcommand;

use crate::output::{print_json, print_table, UsageError};

#[derive(Subcommand)]
pub enum Command {
    /// Add a user (who may log in to the admin API)
    Add {
        /// The user name (also the name of their own folder)
        name: String,
        /// A role to grant; repeat for several (e.g. ROLE_SITEBUILDER_EDITOR__ROOT)
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of stdin instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password; ends all their sessions
    Passwd {
        /// The user name (also the name of their own folder)
        name: String,
        /// Read the password from the first line of stdin instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
    /// Grant a role
    Grant {
        /// The user name
        name: String,
        /// A role, e.g. ROLE_SITEBUILDER_EDITOR__ROOT or ROLE_SITEBUILDER_USER__team-a
        role: String,
    },
    /// Take a role away
    Revoke {
        /// The user name
        name: String,
        /// A role, e.g. ROLE_SITEBUILDER_EDITOR__ROOT or ROLE_SITEBUILDER_USER__team-a
        role: String,
    },
    /// List users and their roles
    List {
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: no more logins, every session ended
    Disable {
        /// The user name
        name: String,
    },
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add {
            name,
            roles,
            password_stdin,
        } => {
            let name = OwnerName::parse(&name)?;
            let roles = roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<cfgstore::Result<Vec<_>>>()?;
            let password = read_password(password_stdin)?;
            ops::users::add(store, &crate::actor(), &name, &password, roles)?;
            println!("added user {name}");
        }
        Command::Passwd {
            name,
            password_stdin,
        } => {
            let name = OwnerName::parse(&name)?;
            store.user(&name)?;
            let password = read_password(password_stdin)?;
            ops::users::set_password(store, &crate::actor(), &name, &password)?;
            println!("password of {name} changed; their sessions have ended");
        }
        Command::Grant { name, role } => {
            let (name, role) = (OwnerName::parse(&name)?, Role::parse(&role)?);
            let user = ops::users::grant(store, &crate::actor(), &name, role)?;
            println!("{name}: {}", roles_text(&user.roles));
        }
        Command::Revoke { name, role } => {
            let (name, role) = (OwnerName::parse(&name)?, Role::parse(&role)?);
            let user = ops::users::revoke(store, &crate::actor(), &name, &role)?;
            println!("{name}: {}", roles_text(&user.roles));
        }
        Command::List { json } => {
            let users = store.list_users()?;
            if json {
                print_json(&users.iter().map(|u| u.view()).collect::<Vec<_>>())?;
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.to_string(),
                            if u.disabled {
                                "disabled".into()
                            } else {
                                "active".into()
                            },
                            roles_text(&u.roles),
                        ]
                    })
                    .collect();
                print_table(&["USER", "STATE", "ROLES"], &rows);
            }
        }
        Command::Disable { name } => {
            let name = OwnerName::parse(&name)?;
            ops::users::disable(store, &crate::actor(), &name)?;
            println!("disabled {name}; their sessions have ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn roles_text(roles: &[Role]) -> String {
    if roles.is_empty() {
        "(own folder only)".into()
    } else {
        roles
            .iter()
            .map(Role::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// From stdin's first line with `--password-stdin`, else asked twice on
/// the terminal without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if !io::stdin().is_terminal() {
        return Err(UsageError(
            "no terminal to ask for a password on: use --password-stdin".into(),
        )
        .into());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Again: ")?;
    if first != second {
        return Err(UsageError("the passwords do not match".into()).into());
    }
    Ok(first)
}
