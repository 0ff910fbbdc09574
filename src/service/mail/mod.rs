//! E-mail to customers: the use cases that queue messages (inside the caller's write
//! transaction, so a message exists exactly when what it announces does), the outbox worker's
//! delivery step, and the admin's settings, outbox, templates and customer view.
//!
//! Messages are rendered when queued. Links in them start with [`PUBLIC_URL_MARK`], which is
//! replaced when the message is sent (and shown) by the workspace's public URL, or the
//! server's `--public-url`: queueing needs only the connection, so any service's transaction
//! can queue a message.

pub mod customers;
pub mod outbox;
pub mod reminders;
pub mod settings;
pub mod templates;

use rusqlite::Connection;

use crate::domain::licenses::License;
use crate::domain::mail::{self, MailKind, NewMessage, templates as tpl};
use crate::domain::products::Product;
use crate::domain::{licenses, ms_to_datetime, now_ms, products, tenants};
use crate::error::Error;
use crate::state::AppState;

pub use outbox::deliver_due;

/// Stands for the server's public URL in stored messages, until they are sent or shown.
pub const PUBLIC_URL_MARK: &str = "{{public_url}}";

/// Queues "license delivered" for the license's customer, in the caller's transaction (a
/// payment's, an operator's "E-mail the key"). Returns the message id. A license without a
/// customer e-mail is refused (400): there is nobody to write to.
pub fn queue_license_delivered(
    c: &Connection,
    tenant: &str,
    license_id: &str,
) -> Result<String, Error> {
    let license = licenses::repo::find(c, tenant, license_id)?.ok_or(Error::NotFound("key"))?;
    let Some(email) = license.customer_email.clone() else {
        return Err(Error::Invalid(
            "the key has no customer e-mail: set one before e-mailing it".into(),
        ));
    };
    let email = mail::normalize_address("the key's customer e-mail", &email)?;
    let product =
        products::repo::find(c, tenant, &license.product_id)?.ok_or(Error::NotFound("project"))?;
    let values = license_values(c, &product, &license)?;
    queue(
        c,
        &product.tenant_id,
        Some(&product),
        Some(&license.id),
        MailKind::LicenseDelivered,
        &email,
        &values,
    )
}

/// Renders `kind` with the product's override (if any) and queues it for `recipient`.
pub(crate) fn queue(
    c: &Connection,
    tenant_id: &str,
    product: Option<&Product>,
    license_id: Option<&str>,
    kind: MailKind,
    recipient: &str,
    values: &[(&str, String)],
) -> Result<String, Error> {
    let over = match product {
        Some(p) => mail::repo::template(c, &p.id, kind)?,
        None => None,
    };
    let rendered = tpl::render(kind, over.as_ref(), values);
    mail::repo::enqueue(
        c,
        &NewMessage {
            tenant_id: tenant_id.to_owned(),
            product_id: product.map(|p| p.id.clone()),
            license_id: license_id.map(str::to_owned),
            kind,
            recipient: recipient.to_owned(),
            rendered,
        },
        now_ms(),
    )
}

/// The portal of `product`, as a link with the public-URL mark.
pub(crate) fn portal_link(c: &Connection, product: &Product) -> Result<String, Error> {
    let tenant = tenants::repo::find(c, &product.tenant_id)?;
    let mut link = format!("{PUBLIC_URL_MARK}/p/{}", product.slug);
    if let Some(t) = tenant.filter(|t| t.slug != tenants::DEFAULT_SLUG) {
        link.push_str(&format!("?tenant={}", t.slug));
    }
    Ok(link)
}

/// A license's expiry as its customer reads it.
pub(crate) fn expiry_text(license: &License) -> String {
    match license.valid_until {
        Some(ms) => {
            let t = ms_to_datetime(ms);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        None if license.plan.is_some() => "counted from the first activation".to_owned(),
        None => "never (perpetual)".to_owned(),
    }
}

/// The placeholders of a message about one license.
pub(crate) fn license_values(
    c: &Connection,
    product: &Product,
    license: &License,
) -> Result<Vec<(&'static str, String)>, Error> {
    Ok(vec![
        ("product", product.name.clone()),
        ("key", license.key.clone()),
        ("expiry", expiry_text(license)),
        ("portal_link", portal_link(c, product)?),
        (
            "customer_name",
            license
                .customer_name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "there".to_owned()),
        ),
    ])
}

/// The public URL links in a tenant's messages start with: its mail settings' public URL,
/// else the server's `--public-url`, else `http://<bind>`.
pub(crate) fn public_url(state: &AppState, tenant_public_url: Option<&str>) -> String {
    tenant_public_url
        .map(str::to_owned)
        .or_else(|| state.config.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", state.config.bind))
        .trim_end_matches('/')
        .to_owned()
}

/// `text` with the public-URL mark replaced.
pub(crate) fn with_public_url(text: &str, url: &str) -> String {
    text.replace(PUBLIC_URL_MARK, url)
}

/// The key page's "E-mail the key to the customer": queues "license delivered" for a key in
/// the caller's reach. Returns the message id.
pub async fn email_key(
    state: &AppState,
    ctx: &crate::service::Ctx,
    license_id: &str,
) -> Result<String, Error> {
    use crate::domain::audit::{self, AuditAction};
    let ctx = ctx.clone();
    let license_id = license_id.to_owned();
    state
        .db
        .write(move |c| {
            let license = licenses::repo::find_in(c, ctx.tenants.filter(), &license_id)?
                .filter(|l| ctx.reaches(&l.tenant_id, &l.product_id))
                .ok_or(Error::NotFound("key"))?;
            let id = queue_license_delivered(c, &license.tenant_id, &license.id)?;
            let event = ctx
                .event(&license.tenant_id, AuditAction::MailSend)
                .license(&license.product_id, &license.id)
                .detail(serde_json::json!({
                    "kind": MailKind::LicenseDelivered,
                    "messageId": id,
                }));
            audit::repo::insert(c, &event)?;
            Ok(id)
        })
        .await
}
