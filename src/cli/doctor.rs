//! `keyward doctor`: prints each check of the installation with OK, WARN or FAIL and what to
//! do; exits 1 when one fails, so a timer or a deploy script can act on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::error::Error;
use crate::service::doctor::{self, DoctorOptions, Level};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The TLS certificate (PEM) whose expiry to check; default `<data-dir>/tls/cert.pem` if
    /// present.
    #[arg(long, env = "KEYWARD_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Where backup archives are written; default `<data-dir>/backups`.
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// A newest backup older than this many hours is a warning.
    #[arg(long, default_value_t = 48)]
    backup_max_age_hours: u64,
}

pub fn run(data_dir: &Path, args: DoctorArgs) -> Result<i32, Error> {
    let options = DoctorOptions {
        tls_cert: args.tls_cert,
        backup_dir: args.backup_dir,
        backup_max_age: Duration::from_secs(args.backup_max_age_hours.max(1) * 3600),
        ..DoctorOptions::default()
    };
    let checks = doctor::examine(data_dir, &options);
    for c in &checks {
        println!("{:<4}  {:<15}  {}", c.level.as_str(), c.name, c.finding);
        if let Some(advice) = &c.advice {
            println!("      {:<15}  → {advice}", "");
        }
    }
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    eprintln!(
        "{}",
        match worst {
            Level::Ok => "everything looks right",
            Level::Warn => "no failures; see the warnings above",
            Level::Fail => "something is broken: fix the FAIL lines first",
        }
    );
    Ok(if doctor::healthy(&checks) { 0 } else { 1 })
}
