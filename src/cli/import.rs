//! `keyward import FILE.csv`: licenses sold elsewhere, under their existing keys. The face
//! parses the file and reports every malformed line; the service applies the rules and imports
//! every row or none.

use std::path::PathBuf;

use clap::Args;

use super::licenses::{CSV_COLUMNS, context, parse_instant};
use crate::domain::licenses::{
    ImportedLicense, LicenseStatus, LicenseTier, LicenseType, NewLicense,
};
use crate::domain::tenants;
use crate::error::Error;
use crate::service::keys::{self, ImportRow};
use crate::state::AppState;

/// Imports licenses sold elsewhere from a CSV file with a header row.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The CSV file. Columns (any order; unknown ones are ignored): key, product, status,
    /// expires_at, max_activations, customer_email, customer_name, order_id, type, tier,
    /// entitlements (';'-separated). Only key is required (product too, without --product).
    file: PathBuf,
    /// The product of rows without a product column or value (slug or id).
    #[arg(long)]
    product: Option<String>,
    #[arg(long, default_value = tenants::DEFAULT_SLUG)]
    tenant: String,
}

/// Reads the CSV into rows, or every line's problem at once.
fn read_import(args: &ImportArgs) -> Result<Vec<ImportRow>, Error> {
    let file = std::fs::File::open(&args.file)
        .map_err(|e| Error::Invalid(format!("cannot open {}: {e}", args.file.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(file);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Invalid(format!("line 1: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    if column("key").is_none() {
        return Err(Error::Invalid(
            "line 1: the header row has no \"key\" column".into(),
        ));
    }
    if column("product").is_none() && args.product.is_none() {
        return Err(Error::Invalid(
            "line 1: the header row has no \"product\" column; add one or pass --product".into(),
        ));
    }
    let unknown: Vec<&str> = headers
        .iter()
        .filter(|h| !CSV_COLUMNS.contains(&h.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        eprintln!("ignoring unknown columns: {}", unknown.join(", "));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        match import_row(&record, &column, args.product.as_deref()) {
            Ok(row) => rows.push(ImportRow { line, ..row }),
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(Error::Invalid(format!(
            "nothing was imported; fix these rows and import the file again:\n{}",
            errors.join("\n")
        )))
    }
}

fn import_row(
    record: &csv::StringRecord,
    column: &dyn Fn(&str) -> Option<usize>,
    default_product: Option<&str>,
) -> Result<ImportRow, Error> {
    let field = |name: &str| {
        column(name)
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let key = field("key").ok_or_else(|| Error::Invalid("key is empty".into()))?;
    let product = field("product")
        .or(default_product)
        .ok_or_else(|| Error::Invalid("product is empty".into()))?;
    let status = choice_status(field("status"))?;
    let license_type = field("type")
        .map(|v| super::parse_choice("type", v, LicenseType::parse, LicenseType::choices()))
        .transpose()?;
    let tier = field("tier")
        .map(|v| super::parse_choice("tier", v, LicenseTier::parse, LicenseTier::choices()))
        .transpose()?;
    let max_activations =
        match field("max_activations") {
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                Error::Invalid(format!("max_activations {v:?} is not a whole number"))
            })?),
            None => None,
        };
    let entitlements = field("entitlements")
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(ImportRow {
        line: 0,
        product: product.to_owned(),
        max_activations,
        license: ImportedLicense {
            key: key.to_owned(),
            status,
            license: NewLicense {
                license_type: license_type.unwrap_or(LicenseType::Perpetual),
                tier: tier.unwrap_or(LicenseTier::Personal),
                // Set from the row or the product's default when the product is known.
                max_activations: 0,
                max_sessions: None,
                valid_until: parse_instant("expires_at", field("expires_at").unwrap_or(""))?,
                plan: None,
                plan_days: None,
                customer_email: field("customer_email").map(str::to_owned),
                customer_name: field("customer_name").map(str::to_owned),
                order_id: field("order_id").map(str::to_owned),
                metadata: None,
                note: None,
                entitlements,
            },
        },
    })
}

fn choice_status(text: Option<&str>) -> Result<LicenseStatus, Error> {
    match text {
        Some(v) => super::parse_choice("status", v, LicenseStatus::parse, LicenseStatus::choices()),
        None => Ok(LicenseStatus::Active),
    }
}

pub async fn import(state: &AppState, args: ImportArgs) -> Result<i32, Error> {
    let ctx = context(state, &args.tenant)?;
    let rows = read_import(&args)?;
    let report = keys::import(state, &ctx, rows).await?;
    eprintln!(
        "{} licenses imported, {} already present (left as they were)",
        report.created.len(),
        report.already_present.len()
    );
    Ok(0)
}
