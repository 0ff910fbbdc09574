//! A product's message templates: the embedded defaults, its overrides, and a preview.

use rusqlite::Connection;
use serde_json::json;

use crate::domain::audit::{self, AuditAction};
use crate::domain::mail::templates::{self as tpl, Override};
use crate::domain::mail::{self, MailKind, Rendered};
use crate::domain::products::Product;
use crate::domain::{DAY_MS, now_ms, products};
use crate::error::Error;
use crate::service::Ctx;
use crate::state::AppState;

/// One kind's template as it is used now: each part the product's override or the default.
#[derive(Debug, Clone)]
pub struct TemplateView {
    pub kind: MailKind,
    pub variables: &'static [&'static str],
    pub subject: String,
    pub text: String,
    pub html: String,
    pub subject_overridden: bool,
    pub text_overridden: bool,
    pub html_overridden: bool,
}

fn view(kind: MailKind, over: Option<&Override>) -> TemplateView {
    let d = tpl::defaults(kind);
    let pick = |o: Option<&String>, default: &str| o.cloned().unwrap_or_else(|| default.into());
    TemplateView {
        kind,
        variables: tpl::variables(kind),
        subject: pick(over.and_then(|o| o.subject.as_ref()), d.subject),
        text: pick(over.and_then(|o| o.text.as_ref()), d.text),
        html: pick(over.and_then(|o| o.html.as_ref()), d.html),
        subject_overridden: over.is_some_and(|o| o.subject.is_some()),
        text_overridden: over.is_some_and(|o| o.text.is_some()),
        html_overridden: over.is_some_and(|o| o.html.is_some()),
    }
}

fn reachable_product(c: &Connection, ctx: &Ctx, id: &str) -> Result<Product, Error> {
    products::repo::find_by_id(c, id)?
        .filter(|p| ctx.reaches(&p.tenant_id, &p.id))
        .ok_or(Error::NotFound("project"))
}

fn overridable(kind: MailKind) -> Result<(), Error> {
    if tpl::OVERRIDABLE.contains(&kind) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "kind {kind} has no per-project template; one of {}",
            tpl::OVERRIDABLE.map(|k| k.as_str()).join(", ")
        )))
    }
}

/// Every overridable kind's template for the product.
pub fn list(state: &AppState, ctx: &Ctx, product_id: &str) -> Result<Vec<TemplateView>, Error> {
    state.db.read(|c| {
        let p = reachable_product(c, ctx, product_id)?;
        tpl::OVERRIDABLE
            .iter()
            .map(|k| Ok(view(*k, mail::repo::template(c, &p.id, *k)?.as_ref())))
            .collect()
    })
}

/// Saves the product's override of `kind`; a part left out (None) or blank uses the default.
pub async fn save(
    state: &AppState,
    ctx: &Ctx,
    product_id: &str,
    kind: MailKind,
    over: Override,
) -> Result<TemplateView, Error> {
    overridable(kind)?;
    let blank_is_default = |s: Option<String>| s.filter(|t| !t.trim().is_empty());
    let over = Override {
        subject: blank_is_default(over.subject),
        text: blank_is_default(over.text),
        html: blank_is_default(over.html),
    };
    tpl::check(kind, &over)?;
    let ctx = ctx.clone();
    let product_id = product_id.to_owned();
    state
        .db
        .write(move |c| {
            let p = reachable_product(c, &ctx, &product_id)?;
            if over.subject.is_none() && over.text.is_none() && over.html.is_none() {
                mail::repo::delete_template(c, &p.id, kind)?;
            } else {
                mail::repo::save_template(c, &p.id, kind, &over, now_ms())?;
            }
            let event = ctx
                .event(&p.tenant_id, AuditAction::MailTemplateUpdate)
                .product(&p.id)
                .detail(json!({"kind": kind}));
            audit::repo::insert(c, &event)?;
            Ok(view(kind, Some(&over)))
        })
        .await
}

/// Drops the product's override of `kind`: the defaults apply again.
pub async fn reset(
    state: &AppState,
    ctx: &Ctx,
    product_id: &str,
    kind: MailKind,
) -> Result<TemplateView, Error> {
    overridable(kind)?;
    let ctx = ctx.clone();
    let product_id = product_id.to_owned();
    state
        .db
        .write(move |c| {
            let p = reachable_product(c, &ctx, &product_id)?;
            mail::repo::delete_template(c, &p.id, kind)?;
            let event = ctx
                .event(&p.tenant_id, AuditAction::MailTemplateUpdate)
                .product(&p.id)
                .detail(json!({"kind": kind, "reset": true}));
            audit::repo::insert(c, &event)?;
            Ok(view(kind, None))
        })
        .await
}

/// `over` (unsaved; its missing parts from the saved override, then the defaults) rendered
/// with sample values, as a customer of the product would get it.
pub fn preview(
    state: &AppState,
    ctx: &Ctx,
    product_id: &str,
    kind: MailKind,
    over: Override,
) -> Result<Rendered, Error> {
    overridable(kind)?;
    tpl::check(kind, &over)?;
    let (product, saved, link, url) = state.db.read(|c| {
        let p = reachable_product(c, ctx, product_id)?;
        let saved = mail::repo::template(c, &p.id, kind)?.unwrap_or_default();
        let link = super::portal_link(c, &p)?;
        let url = mail::repo::settings(c, &p.tenant_id)?.and_then(|s| s.public_url);
        Ok((p, saved, link, url))
    })?;
    let merged = Override {
        subject: over.subject.or(saved.subject),
        text: over.text.or(saved.text),
        html: over.html.or(saved.html),
    };
    let expiry = crate::domain::ms_to_datetime(now_ms() + 30 * DAY_MS);
    let expiry = format!(
        "{:04}-{:02}-{:02} 12:00 UTC",
        expiry.year(),
        u8::from(expiry.month()),
        expiry.day()
    );
    let values: Vec<(&str, String)> = vec![
        ("product", product.name.clone()),
        ("key", "ABCD-EFGH-JKLM-NPQR".into()),
        ("expiry", expiry),
        ("portal_link", link.clone()),
        ("customer_name", "Ana Example".into()),
        (
            "licenses",
            "ABCD-EFGH-JKLM-NPQR (valid until 2030-01-01)".into(),
        ),
        ("username", "ana".into()),
        ("reset_link", format!("{link}#reset=…")),
        ("valid_minutes", "60".into()),
        ("days_left", "7".into()),
    ];
    let r = tpl::render(kind, Some(&merged), &values);
    let url = super::public_url(state, url.as_deref());
    Ok(Rendered {
        subject: super::with_public_url(&r.subject, &url),
        text: super::with_public_url(&r.text, &url),
        html: super::with_public_url(&r.html, &tpl::escape_html(&url)),
    })
}
