//! `keyward license list|show|create|revoke|renew|export`: licenses from a shell, through the
//! same services as the admin API (same rules, same audit trail). Export writes the columns
//! `keyward import` (`super::import`) reads, so a file round-trips.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::licenses::{License, LicenseStatus, LicenseType};
use crate::domain::{DAY_MS, ProductId, now_ms, tenants};
use crate::error::Error;
use crate::service::keys::{self, KeyFilter, KeyRef, LicenseOrder};
use crate::service::{self, Ctx, catalog};
use crate::state::AppState;

#[derive(Subcommand, Debug)]
pub enum LicenseCommand {
    /// List licenses, newest first: id, key, product, status, expiry, customer e-mail.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one license (by id or key) as JSON, with its machines.
    Show {
        license: String,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
    /// Issue a license; prints its key alone on stdout.
    Create {
        /// The product's slug or id.
        #[arg(long)]
        product: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        order_id: Option<String>,
        /// PERPETUAL, SUBSCRIPTION, TRIAL or BETA (default: the product's).
        #[arg(long = "type")]
        license_type: Option<String>,
        /// Machines it may activate (default: the product's).
        #[arg(long)]
        max_activations: Option<u32>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Entitlement codes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        entitlements: Vec<String>,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
    /// Revoke a license (by id or key) for good.
    Revoke {
        license: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
    /// Move a license's expiry (by id or key); an expired one becomes active again.
    Renew {
        license: String,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[arg(long, default_value = tenants::DEFAULT_SLUG)]
        tenant: String,
    },
    /// Write every license (of the filter) as CSV (the columns `keyward import` reads) or JSON.
    Export {
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to FILE (created 0600) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Only this product's (slug or id).
    #[arg(long)]
    product: Option<String>,
    /// Only this status: ACTIVE, EXPIRED, SUSPENDED, BANNED or REVOKED.
    #[arg(long)]
    status: Option<String>,
    /// Key or HWID prefix, or part of the note.
    #[arg(long)]
    search: Option<String>,
    #[arg(long, default_value = tenants::DEFAULT_SLUG)]
    tenant: String,
}

#[derive(Args, Debug)]
pub struct ExpiryArgs {
    /// Expires at this date (YYYY-MM-DD, UTC midnight) or instant (RFC 3339).
    #[arg(long, conflicts_with = "days")]
    until: Option<String>,
    /// Expires this many days from now.
    #[arg(long)]
    days: Option<u32>,
}

impl ExpiryArgs {
    fn instant(&self) -> Result<Option<i64>, Error> {
        match (&self.until, self.days) {
            (Some(text), _) => parse_instant("--until", text),
            (None, Some(0)) => Err(Error::Invalid("--days must be at least 1".into())),
            (None, Some(days)) => Ok(Some(now_ms() + i64::from(days) * DAY_MS)),
            (None, None) => Ok(None),
        }
    }
}

/// The shell reaches every tenant; a command naming `--tenant` means that one alone.
pub(super) fn context(state: &AppState, tenant: &str) -> Result<Ctx, Error> {
    Ok(super::only_its_tenant(service::tenants::cli_context(
        state, tenant,
    )?))
}

/// A license named on the command line: ids start with `lic_`, anything else is a key.
fn key_ref(text: &str) -> KeyRef {
    let text = text.trim();
    if text.starts_with("lic_") {
        KeyRef::Id(text.into())
    } else {
        KeyRef::Key(crate::domain::licenses::normalize_key(text))
    }
}

pub(super) fn parse_instant(field: &str, text: &str) -> Result<Option<i64>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map(|d| d.midnight().assume_utc())
    });
    match parsed {
        Ok(t) => Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64)),
        Err(_) => Err(Error::Invalid(format!(
            "{field} {text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant"
        ))),
    }
}

fn format_instant(ms: Option<i64>) -> String {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Product ids to slugs, for output people read and files `keyward import` reads back.
fn product_slugs(state: &AppState, ctx: &Ctx) -> Result<HashMap<String, String>, Error> {
    let (all, _) = catalog::list_of_tenant(state, ctx, &ctx.tenant, false, u32::MAX, 0)?;
    Ok(all.into_iter().map(|p| (p.id, p.slug)).collect())
}

fn filter(state: &AppState, ctx: &Ctx, args: &FilterArgs) -> Result<KeyFilter, Error> {
    let project = match &args.product {
        Some(p) => Some(ProductId::from(
            catalog::list_of_tenant(state, ctx, &ctx.tenant, false, u32::MAX, 0)?
                .0
                .into_iter()
                .find(|x| x.slug == *p || x.id == *p)
                .ok_or_else(|| Error::Invalid(format!("no product {p:?}")))?
                .id,
        )),
        None => None,
    };
    let status = args
        .status
        .as_deref()
        .map(|s| {
            super::parse_choice(
                "--status",
                s,
                LicenseStatus::parse,
                LicenseStatus::choices(),
            )
        })
        .transpose()?;
    Ok(KeyFilter {
        project,
        status,
        plan: None,
        text: args.search.clone(),
    })
}

fn describe(license: &License, slugs: &HashMap<String, String>, activations: u64) -> Value {
    json!({
        "id": license.id,
        "key": license.key,
        "product": slugs.get(&license.product_id).unwrap_or(&license.product_id),
        "status": license.effective_status(now_ms()).as_str(),
        "storedStatus": license.status.as_str(),
        "type": license.license_type.as_str(),
        "tier": license.tier.as_str(),
        "maxActivations": license.max_activations,
        "activations": activations,
        "expiresAt": license.valid_until.map(|v| format_instant(Some(v))),
        "customerEmail": license.customer_email,
        "customerName": license.customer_name,
        "orderId": license.order_id,
        "entitlements": license.entitlements,
        "createdAt": format_instant(Some(license.created_at)),
    })
}

pub async fn run(state: &AppState, cmd: LicenseCommand) -> Result<i32, Error> {
    match cmd {
        LicenseCommand::List {
            filter: args,
            limit,
        } => {
            let ctx = context(state, &args.tenant)?;
            let slugs = product_slugs(state, &ctx)?;
            let (rows, counted) =
                keys::list(state, &ctx, filter(state, &ctx, &args)?, limit, 0).await?;
            for r in &rows {
                let l = &r.license;
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    l.id,
                    l.key,
                    slugs.get(&l.product_id).unwrap_or(&l.product_id),
                    l.effective_status(now_ms()).as_str(),
                    match l.valid_until {
                        Some(v) => format_instant(Some(v)),
                        None => "never".into(),
                    },
                    l.customer_email.as_deref().unwrap_or("-"),
                );
            }
            if counted.total > rows.len() as u64 {
                eprintln!(
                    "{} of {}{} shown; raise --limit or narrow the filter",
                    rows.len(),
                    counted.total,
                    if counted.capped { "+" } else { "" }
                );
            }
            Ok(0)
        }
        LicenseCommand::Show { license, tenant } => {
            let ctx = context(state, &tenant)?;
            let slugs = product_slugs(state, &ctx)?;
            let detail = keys::find(state, &ctx, &key_ref(&license))?;
            let mut out = describe(&detail.license, &slugs, detail.activations.len() as u64);
            out["machines"] = detail
                .activations
                .iter()
                .map(|a| json!({"machineId": a.machine_id, "activatedAt": format_instant(Some(a.activated_at))}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(0)
        }
        LicenseCommand::Create {
            product,
            email,
            name,
            order_id,
            license_type,
            max_activations,
            expiry,
            entitlements,
            tenant,
        } => {
            let ctx = context(state, &tenant)?;
            let license_type = license_type
                .map(|t| {
                    super::parse_choice("--type", &t, LicenseType::parse, LicenseType::choices())
                })
                .transpose()?;
            let order = LicenseOrder {
                product,
                license_type,
                tier: None,
                max_activations,
                valid_until: expiry.instant()?,
                customer_email: email,
                customer_name: name,
                order_id,
                metadata: None,
                entitlements,
            };
            let created = keys::issue(state, &ctx, order, None).await?;
            println!("{}", created.license.key);
            eprintln!("license {} issued", created.license.id);
            Ok(0)
        }
        LicenseCommand::Revoke {
            license,
            reason,
            tenant,
        } => {
            let ctx = context(state, &tenant)?;
            let revoked = keys::revoke(state, &ctx, key_ref(&license), reason).await?;
            eprintln!("license {} ({}) is revoked", revoked.key, revoked.id);
            Ok(0)
        }
        LicenseCommand::Renew {
            license,
            expiry,
            tenant,
        } => {
            let ctx = context(state, &tenant)?;
            let until = expiry
                .instant()?
                .ok_or_else(|| Error::Invalid("give --until DATE or --days N".into()))?;
            let renewed = keys::renew(state, &ctx, key_ref(&license), until, None).await?;
            eprintln!(
                "license {} now expires at {}",
                renewed.key,
                format_instant(renewed.valid_until)
            );
            Ok(0)
        }
        LicenseCommand::Export {
            format,
            output,
            filter: args,
        } => {
            let ctx = context(state, &args.tenant)?;
            let slugs = product_slugs(state, &ctx)?;
            let filter = filter(state, &ctx, &args)?;
            let json = match format.to_ascii_lowercase().as_str() {
                "csv" => false,
                "json" => true,
                other => {
                    return Err(Error::Invalid(format!(
                        "--format {other:?} is not one of csv, json"
                    )));
                }
            };
            let (rows, _) = keys::list(state, &ctx, filter, u32::MAX, 0).await?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(create_private(path)?),
                None => Box::new(std::io::stdout().lock()),
            };
            let written = if json {
                let all: Vec<Value> = rows
                    .iter()
                    .map(|r| describe(&r.license, &slugs, r.activation_count))
                    .collect();
                serde_json::to_writer_pretty(&mut out, &all)
                    .map_err(|e| Error::Storage(format!("cannot write the export: {e}")))?;
                writeln!(out).map_err(io_error)?;
                all.len()
            } else {
                write_csv(&mut out, &rows, &slugs)?
            };
            out.flush().map_err(io_error)?;
            eprintln!("{written} licenses exported");
            Ok(0)
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Storage(format!("cannot write the export: {e}"))
}

/// A new file only its owner reads: an export holds every customer's e-mail and key.
fn create_private(path: &Path) -> Result<std::fs::File, Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", path.display())))
}

pub(super) const CSV_COLUMNS: [&str; 13] = [
    "key",
    "product",
    "status",
    "expires_at",
    "max_activations",
    "customer_email",
    "customer_name",
    "order_id",
    "type",
    "tier",
    "entitlements",
    "id",
    "created_at",
];

fn write_csv(
    out: &mut dyn Write,
    rows: &[keys::KeyRow],
    slugs: &HashMap<String, String>,
) -> Result<usize, Error> {
    let mut w = csv::Writer::from_writer(out);
    let fail = |e: csv::Error| Error::Storage(format!("cannot write the export: {e}"));
    w.write_record(CSV_COLUMNS).map_err(fail)?;
    for r in rows {
        let l = &r.license;
        w.write_record([
            l.key.as_str(),
            slugs.get(&l.product_id).unwrap_or(&l.product_id),
            l.status.as_str(),
            &format_instant(l.valid_until),
            &l.max_activations.to_string(),
            l.customer_email.as_deref().unwrap_or(""),
            l.customer_name.as_deref().unwrap_or(""),
            l.order_id.as_deref().unwrap_or(""),
            l.license_type.as_str(),
            l.tier.as_str(),
            &l.entitlements.join(";"),
            &l.id,
            &format_instant(Some(l.created_at)),
        ])
        .map_err(fail)?;
    }
    w.flush()
        .map_err(|e| Error::Storage(format!("cannot write the export: {e}")))?;
    Ok(rows.len())
}
