//! Moving to Keyward: licenses sold elsewhere, imported under their existing keys.

use std::collections::HashMap;

use serde_json::json;

use crate::domain::audit::{self, AuditAction};
use crate::domain::licenses::{self, ImportOutcome, ImportedLicense, License};
use crate::domain::products::{self, Product};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// One license to import, with the line of the source file it came from (for the report).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    /// The product's id or slug, within the caller's tenant.
    pub product: String,
    /// `None` takes the product's default.
    pub max_activations: Option<u32>,
    pub license: ImportedLicense,
}

#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub created: Vec<License>,
    /// Keys imported earlier (into the same product), left as they are.
    pub already_present: Vec<License>,
}

/// At most this many row errors are listed; the rest are counted.
const LISTED_ERRORS: usize = 50;

/// Imports every row or none: any row's error (named by its line) rolls the whole import back,
/// so a corrected file can simply be imported again. Keys already present in their product
/// are left untouched, which also makes a repeated import harmless.
pub async fn import(
    state: &AppState,
    ctx: &Ctx,
    rows: Vec<ImportRow>,
) -> Result<ImportReport, Error> {
    if rows.is_empty() {
        return Err(Error::Invalid("the file holds no licenses".into()));
    }
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let mut report = ImportReport::default();
            let mut errors = Vec::new();
            let mut products: HashMap<String, Option<Product>> = HashMap::new();
            let mut seen: HashMap<String, u64> = HashMap::new();
            for row in &rows {
                let outcome = (|| {
                    let key = licenses::validate_imported_key(&row.license.key)?;
                    if let Some(first) = seen.insert(key.clone(), row.line) {
                        return Err(Error::Invalid(format!("key {key} is also on line {first}")));
                    }
                    let product = match products.get(&row.product) {
                        Some(found) => found.clone(),
                        None => {
                            let found =
                                products::repo::find_by_id_or_slug(c, &ctx.tenant, &row.product)?
                                    .filter(|p| ctx.reaches(&p.tenant_id, &p.id));
                            products.insert(row.product.clone(), found.clone());
                            found
                        }
                    }
                    .ok_or_else(|| Error::Invalid(format!("no product {:?}", row.product)))?;
                    let mut license = row.license.clone();
                    license.license.max_activations = row
                        .max_activations
                        .unwrap_or(product.default_max_activations);
                    licenses::import(c, &product, &license)
                })();
                match outcome {
                    Ok(ImportOutcome::Created(license)) => {
                        audit::repo::insert(
                            c,
                            &ctx.event(&license.tenant_id, AuditAction::LicenseCreate)
                                .license(&license.product_id, &license.id)
                                .detail(json!({"imported": true, "line": row.line})),
                        )?;
                        crate::service::events::license_event(
                            c,
                            &license,
                            crate::domain::webhooks::EventType::LicenseCreated,
                        )?;
                        report.created.push(license);
                    }
                    Ok(ImportOutcome::AlreadyPresent(license)) => {
                        report.already_present.push(license)
                    }
                    Err(Error::Storage(e)) => return Err(Error::Storage(e)),
                    Err(e) => errors.push(format!("line {}: {e}", row.line)),
                }
            }
            if errors.is_empty() {
                return Ok(report);
            }
            let more = errors.len().saturating_sub(LISTED_ERRORS);
            errors.truncate(LISTED_ERRORS);
            if more > 0 {
                errors.push(format!("… and {more} more"));
            }
            Err(Error::Invalid(format!(
                "nothing was imported; fix these rows and import the file again:\n{}",
                errors.join("\n")
            )))
        })
        .await
        .inspect(|_| state.webhooks.wake())
}
