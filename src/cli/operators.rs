//! `keyward admin create|list|reset-password|disable|enable|disable-2fa`: operator administration from the
//! server's shell, for the install whose only ADMIN forgot the password. Passwords come from
//! stdin or a file, never from argv (which `ps` and shell history show to everyone).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::domain::operators::{Operator, Role};
use crate::domain::{OperatorId, tenants};
use crate::error::Error;
use crate::service::{self, operators::NewOperator, operators::OperatorChange};
use crate::state::AppState;

/// Where a new password comes from: exactly one of the two.
#[derive(Args, Debug, Clone)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl PasswordSource {
    pub fn read(&self) -> Result<String, Error> {
        let text = match (&self.password_file, self.password_stdin) {
            (Some(file), _) => read_file(file)?,
            (None, true) => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| {
                    Error::Invalid(format!("cannot read the password from stdin: {e}"))
                })?;
                text
            }
            (None, false) => {
                return Err(Error::Invalid(
                    "give the password with --password-stdin or --password-file FILE \
                     (never on the command line)"
                        .into(),
                ));
            }
        };
        // The first line: `echo pw | keyward …` and files written by editors end in a newline.
        let password = text.lines().next().unwrap_or("").to_owned();
        if password.is_empty() {
            return Err(Error::Invalid("the password is empty".into()));
        }
        Ok(password)
    }
}

fn read_file(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", file.display())))
}

pub async fn create(
    state: &AppState,
    email: String,
    role: &str,
    tenant: Option<String>,
    password: PasswordSource,
) -> Result<i32, Error> {
    let role = super::parse_choice("--role", role, Role::parse, Role::choices())?;
    let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
    let tenant_id = match tenant {
        Some(slug) => Some(service::tenants::cli_context(state, &slug)?.tenant),
        None => None,
    };
    let operator = service::operators::register(
        state,
        Some(&ctx),
        None,
        NewOperator {
            email,
            password: password.read()?,
            role: Some(role),
            tenant_id,
            setup_token: None,
        },
    )
    .await?;
    println!("{}", operator.id);
    eprintln!(
        "operator {} ({}) created",
        operator.email,
        operator.role.as_str()
    );
    Ok(0)
}

pub fn list(state: &AppState) -> Result<i32, Error> {
    let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
    let (all, _) = service::operators::list(state, &ctx, u32::MAX, 0)?;
    for o in all {
        let status = if o.disabled_at.is_some() {
            "disabled"
        } else {
            "enabled"
        };
        println!(
            "{}\t{}\t{}\t{}\t{}",
            o.id,
            o.email,
            o.role.as_str(),
            status,
            o.tenant_id
        );
    }
    Ok(0)
}

/// The operator named on the command line, by e-mail or id.
fn named_operator(state: &AppState, ctx: &service::Ctx, who: &str) -> Result<Operator, Error> {
    service::operators::find(state, ctx, who).map_err(|e| match e {
        Error::NotFound(_) => Error::Invalid(format!(
            "no operator {who:?}; `keyward admin list` shows them"
        )),
        e => e,
    })
}

/// `keyward admin disable-2fa`: for an operator who lost the authenticator device and the
/// recovery codes.
pub async fn disable_2fa(state: &AppState, who: &str) -> Result<i32, Error> {
    let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
    let target = named_operator(state, &ctx, who)?;
    if !service::two_factor::disable_by_shell(state, &ctx, &target).await? {
        return Err(Error::Invalid(format!(
            "{} has no two-factor login: nothing to turn off",
            target.email
        )));
    }
    eprintln!(
        "two-factor login of {} is off: its password alone signs in (if its workspace requires \
         two-factor login, it must enrol again before anything else)",
        target.email
    );
    Ok(0)
}

/// A new password (which also ends the operator's sessions) and/or a change of
/// disabled state.
pub async fn change(
    state: &AppState,
    who: &str,
    password: Option<PasswordSource>,
    disabled: Option<bool>,
) -> Result<i32, Error> {
    let ctx = service::tenants::cli_context(state, tenants::DEFAULT_SLUG)?;
    let target = named_operator(state, &ctx, who)?;
    let change = OperatorChange {
        disabled,
        password: password.map(|p| p.read()).transpose()?,
    };
    let reset = change.password.is_some();
    let o = service::operators::update(state, &ctx, &OperatorId::from(target.id), change).await?;
    if reset {
        eprintln!("password of {} reset; its sessions have ended", o.email);
    }
    match disabled {
        Some(true) => eprintln!("{} disabled; its sessions have ended", o.email),
        Some(false) => eprintln!("{} enabled", o.email),
        None => {}
    }
    Ok(0)
}
