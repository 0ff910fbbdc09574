//! Changing licenses: revoke, renew, the admin panel's edits, and HWID resets. REVOKED is
//! final on every path (the domain's `License::ensure_not_final`).

use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;

use super::read::{KeyDetail, detail_in};
use super::{KeyRef, reachable};
use crate::domain::abuse::detector::Seen;
use crate::domain::audit::{AuditAction, AuditEvent};
use crate::domain::licenses::{self, License, LicenseStatus};
use crate::domain::webhooks::EventType;
use crate::domain::{LicenseId, activations, audit, entitlements, now_ms, products, sessions};
use crate::error::Error;
use crate::service::licensing::KeyClient;
use crate::service::{Ctx, events};
use crate::state::AppState;

/// The admin panel's edits of a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub status: Option<LicenseStatus>,
    /// Unbind every machine (and end its sessions) so the key can be used on a new one.
    pub reset_hwid: bool,
    pub max_sessions: Option<u32>,
    /// `Some(None)` clears the note.
    pub note: Option<Option<String>>,
    /// Replaces the entitlement set (each code one of the key's project's).
    pub entitlements: Option<Vec<String>>,
}

/// The outcome of an HWID reset.
#[derive(Debug, Clone)]
pub struct HwidReset {
    /// The license as it was before the reset (its machines are gone now).
    pub license: License,
    /// How many machines were unbound.
    pub unbound: usize,
    /// When the project's cooldown allows the next reset a user asks for.
    pub next_reset_at: i64,
}

/// Revokes for good; revoking a revoked license changes nothing (and records nothing).
pub async fn revoke(
    state: &AppState,
    ctx: &Ctx,
    target: KeyRef,
    reason: Option<String>,
) -> Result<License, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let license = reachable(c, &ctx, &target, "license")?;
            revoke_in(
                c,
                &ctx,
                &license,
                reason.as_deref(),
                Some(json!({"reason": reason})),
            )
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// The admin panel's delete: the key is revoked for good and stays listed with its history.
pub async fn delete(state: &AppState, ctx: &Ctx, id: LicenseId) -> Result<KeyDetail, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let license = reachable(c, &ctx, &KeyRef::Id(id.clone()), "key")?;
            revoke_in(
                c,
                &ctx,
                &license,
                Some("revoked from the admin panel"),
                None,
            )?;
            detail_in(c, &ctx, &id)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

pub(crate) fn revoke_in(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    reason: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<License, Error> {
    let revoked = licenses::revoke(c, license, reason)?;
    if license.status != LicenseStatus::Revoked {
        let mut event = ctx
            .event(&license.tenant_id, AuditAction::LicenseRevoke)
            .license(&license.product_id, &license.id);
        if let Some(detail) = detail {
            event = event.detail(detail);
        }
        audit::repo::insert(c, &event)?;
        events::license_event(c, &revoked, EventType::LicenseRevoked)?;
    }
    Ok(revoked)
}

/// As [`renew`], inside the caller's writer job (a paid subscription period); `detail` joins
/// the audit event's.
pub(crate) fn renew_in(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    valid_until: i64,
    detail: serde_json::Value,
) -> Result<License, Error> {
    let renewed = licenses::renew(c, license, valid_until)?;
    let mut event = json!({"validUntil": valid_until, "previous": license.valid_until});
    super::merge_detail(&mut event, detail);
    audit::repo::insert(
        c,
        &ctx.event(&license.tenant_id, AuditAction::LicenseRenew)
            .license(&license.product_id, &license.id)
            .detail(event),
    )?;
    events::license_event(c, &renewed, EventType::LicenseRenewed)?;
    Ok(renewed)
}

/// Makes the license end at `until` (a cancelled subscription), inside the caller's writer
/// job; recorded as a `license.update` of its expiry.
pub(crate) fn expire_at_in(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    until: i64,
    detail: serde_json::Value,
) -> Result<License, Error> {
    let ended = licenses::expire_at(c, license, until)?;
    let mut event = json!({"validUntil": until, "previous": license.valid_until});
    super::merge_detail(&mut event, detail);
    audit::repo::insert(
        c,
        &ctx.event(&license.tenant_id, AuditAction::LicenseUpdate)
            .license(&license.product_id, &license.id)
            .detail(event),
    )?;
    Ok(ended)
}

/// Gives the license another status (a dispute suspends, a won dispute reinstates) inside the
/// caller's writer job, recorded as the admin panel's status changes are; whether it changed.
/// Revoking is [`revoke_in`]'s: it ends sessions and machines too.
pub(crate) fn set_status_in(
    c: &Connection,
    ctx: &Ctx,
    license: &License,
    status: LicenseStatus,
    detail: serde_json::Value,
) -> Result<bool, Error> {
    if !licenses::change_status(c, license, status, None)? {
        return Ok(false);
    }
    let mut event = json!({"status": status.as_str(), "previous": license.status.as_str()});
    super::merge_detail(&mut event, detail);
    audit::repo::insert(
        c,
        &ctx.event(&license.tenant_id, AuditAction::LicenseUpdate)
            .license(&license.product_id, &license.id)
            .detail(event),
    )?;
    if let Some(event) = events::status_event(license.status, status)
        && let Some(now_license) = licenses::repo::find(c, &license.tenant_id, &license.id)?
    {
        events::license_event(c, &now_license, event)?;
    }
    Ok(true)
}

/// Moves the expiry to `valid_until` (in the future); an expired license becomes active
/// again, a revoked one is refused.
pub async fn renew(
    state: &AppState,
    ctx: &Ctx,
    target: KeyRef,
    valid_until: i64,
    entitlements: Option<Vec<String>>,
) -> Result<License, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let license = reachable(c, &ctx, &target, "license")?;
            let mut detail = json!({"validUntil": valid_until, "previous": license.valid_until});
            // Checked before anything is written: a refused set leaves the expiry as it was.
            let codes = entitlements
                .map(|codes| license_entitlements(c, &license, &codes))
                .transpose()?;
            let mut renewed = licenses::renew(c, &license, valid_until)?;
            if let Some(codes) = codes {
                entitlements::repo::set_for_license(
                    c,
                    &license.id,
                    &entitlements::to_column(&codes),
                    now_ms(),
                )?;
                detail["entitlements"] = json!(codes);
                detail["previousEntitlements"] = json!(license.entitlements);
                renewed.entitlements = codes;
            }
            audit::repo::insert(
                c,
                &ctx.event(&license.tenant_id, AuditAction::LicenseRenew)
                    .license(&license.product_id, &license.id)
                    .detail(detail),
            )?;
            events::license_event(c, &renewed, EventType::LicenseRenewed)?;
            Ok(renewed)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// Applies the admin panel's edits in one transaction and returns the key as it is then. An
/// HWID reset is recorded as such (`key.reset_hwid`, as a bot's is); the other changes as
/// one `license.update`.
pub async fn update(
    state: &AppState,
    ctx: &Ctx,
    id: LicenseId,
    changes: KeyChanges,
) -> Result<KeyDetail, Error> {
    let ctx = ctx.clone();
    state
        .db
        .write(move |c| {
            let license = reachable(c, &ctx, &KeyRef::Id(id.clone()), "key")?;
            let now = now_ms();
            let mut changed = serde_json::Map::new();
            if let Some(codes) = &changes.entitlements {
                // Checked first: a refused set changes nothing else either.
                let codes = license_entitlements(c, &license, codes)?;
                if codes != license.entitlements {
                    entitlements::repo::set_for_license(
                        c,
                        &license.id,
                        &entitlements::to_column(&codes),
                        now,
                    )?;
                    changed.insert("entitlements".into(), json!(codes));
                    changed.insert("previousEntitlements".into(), json!(license.entitlements));
                }
            }
            if let Some(status) = changes.status
                && licenses::change_status(
                    c,
                    &license,
                    status,
                    Some("revoked from the admin panel"),
                )?
            {
                changed.insert("status".into(), json!(status.as_str()));
                if let Some(event) = events::status_event(license.status, status)
                    && let Some(now_license) =
                        licenses::repo::find(c, &license.tenant_id, &license.id)?
                {
                    events::license_event(c, &now_license, event)?;
                }
            }
            if changes.reset_hwid {
                let event = ctx.event(&license.tenant_id, AuditAction::KeyResetHwid);
                unbind_machines(c, &license, event, now)?;
            }
            if let Some(n) = changes.max_sessions {
                licenses::repo::set_max_sessions(c, &license.id, n, now)?;
                changed.insert("maxSessions".into(), json!(n));
            }
            match &changes.note {
                Some(Some(note)) => {
                    licenses::repo::set_note(c, &license.id, Some(note), now)?;
                    changed.insert("note".into(), json!(true));
                }
                Some(None) => {
                    licenses::repo::set_note(c, &license.id, None, now)?;
                    changed.insert("note".into(), json!(null));
                }
                None => {}
            }
            let only_reset = changes.reset_hwid
                && changes.status.is_none()
                && changes.max_sessions.is_none()
                && changes.note.is_none()
                && changes.entitlements.is_none();
            if !only_reset {
                audit::repo::insert(
                    c,
                    &ctx.event(&license.tenant_id, AuditAction::LicenseUpdate)
                        .license(&license.product_id, &license.id)
                        .detail(serde_json::Value::Object(changed)),
                )?;
            }
            detail_in(c, &ctx, &id)
        })
        .await
        .inspect(|_| state.webhooks.wake())
}

/// `codes` checked as the license's new set: well-formed, each one of its product's.
fn license_entitlements(
    c: &Connection,
    license: &License,
    codes: &[String],
) -> Result<Vec<String>, Error> {
    let product = products::repo::find(c, &license.tenant_id, &license.product_id)?
        .ok_or(Error::NotFound("product"))?;
    entitlements::parse_for_product("entitlements", codes, &product.entitlements)
}

/// A user's HWID reset, relayed by a bot (the audit trail names its user) with the project's secret: at most once per the
/// project's cooldown (429 with the time left), reported to abuse detection. An unknown
/// secret or key is "not found" (and reported as a guess).
pub async fn reset_hwid(
    state: &AppState,
    client: &KeyClient,
    secret: String,
    key: &str,
) -> Result<HwidReset, Error> {
    let key = licenses::normalize_key(key);
    let secret_hash = crate::crypto::sha256(secret.trim().as_bytes());
    let actor = client.actor_label().to_owned();
    let ip = client.ip();
    let outcome = state
        .db
        .write(move |c| {
            let product =
                products::repo::find_by_secret(c, &secret)?.ok_or(Error::NotFound("key"))?;
            let license = licenses::repo::find_by_key_in_product(c, &product.id, &key)?
                .ok_or(Error::NotFound("key"))?;
            let now = now_ms();
            let cooldown_ms = product.settings.hwid_reset_cooldown_secs as i64 * 1000;
            if let Some(last) = license.hwid_reset_at
                && last + cooldown_ms > now
            {
                return Err(Error::RateLimited {
                    retry_after: Duration::from_millis((last + cooldown_ms - now) as u64),
                    limit: 1,
                });
            }
            let event = AuditEvent::new(&license.tenant_id, &actor, AuditAction::KeyResetHwid)
                .ip(ip.map(|i| i.to_string()).as_deref());
            let unbound = unbind_machines(c, &license, event, now)?;
            Ok(HwidReset {
                license,
                unbound,
                next_reset_at: now + cooldown_ms,
            })
        })
        .await
        .inspect(|_| state.webhooks.wake());
    match &outcome {
        Err(Error::NotFound("key")) => state
            .abuse
            .unknown_key(client.ip(), crate::abuse::Scope::ClientSecret(secret_hash)),
        Ok(reset) => state.abuse.report(
            client.ip(),
            crate::abuse::Scope::of_license(&reset.license),
            Seen::HwidReset {
                license_id: reset.license.id.clone(),
            },
        ),
        Err(_) => {}
    }
    outcome
}

/// Unbinds every machine of the license and ends its sessions, so it can be activated on a
/// new machine; records `event` (a `key.reset_hwid`) with the count. Returns the count.
fn unbind_machines(
    c: &Connection,
    license: &License,
    event: AuditEvent,
    now: i64,
) -> Result<usize, Error> {
    let machines = activations::repo::for_license(c, &license.id)?;
    let unbound = activations::repo::delete_all(c, &license.id)?;
    for m in &machines {
        events::emit(
            c,
            &license.tenant_id,
            Some(&license.product_id),
            EventType::MachineDeactivated,
            events::machine_data(license, m, Some("HWID_RESET")),
        )?;
    }
    sessions::repo::delete_for_license(c, &license.id)?;
    licenses::repo::set_hwid_reset_at(c, &license.id, now)?;
    audit::repo::insert(
        c,
        &event
            .license(&license.product_id, &license.id)
            .detail(json!({"unbound": unbound})),
    )?;
    Ok(unbound)
}
