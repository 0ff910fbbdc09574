//! Reminders before a subscription license expires: a maintenance sweep queues one per
//! license per expiry date (a renewal moves the date, and the next reminder is due again).

use serde_json::json;

use crate::domain::audit::{self, AuditAction, AuditEvent};
use crate::domain::mail::{self, MailKind};
use crate::domain::{DAY_MS, licenses, now_ms, products};
use crate::error::Error;
use crate::state::AppState;

/// Reminders queued per sweep at most (the rest follow at the next sweep).
const PER_SWEEP: u32 = 500;

/// Queues the reminders now due; returns how many.
pub async fn sweep(state: &AppState) -> Result<usize, Error> {
    let days = state.config.expiry_reminder_days;
    if days == 0 {
        return Ok(0);
    }
    state
        .db
        .write(move |c| {
            let now = now_ms();
            let due = mail::repo::reminders_due(c, now, now + i64::from(days) * DAY_MS, PER_SWEEP)?;
            let mut queued = 0;
            for d in due {
                mail::repo::record_reminder(c, &d.license_id, d.valid_until, now)?;
                let Some(license) = licenses::repo::find_in(c, None, &d.license_id)? else {
                    continue;
                };
                let Some(email) = license.customer_email.as_deref() else {
                    continue;
                };
                // An address the checks refuse is skipped (recorded: it is not retried).
                let Ok(email) = mail::normalize_address("customer e-mail", email) else {
                    continue;
                };
                let Some(product) =
                    products::repo::find(c, &license.tenant_id, &license.product_id)?
                else {
                    continue;
                };
                let mut values = super::license_values(c, &product, &license)?;
                let days_left = ((d.valid_until - now) + DAY_MS - 1) / DAY_MS;
                values.push(("days_left", days_left.max(1).to_string()));
                let id = super::queue(
                    c,
                    &license.tenant_id,
                    Some(&product),
                    Some(&license.id),
                    MailKind::ExpiryReminder,
                    &email,
                    &values,
                )?;
                audit::repo::insert(
                    c,
                    &AuditEvent::new(&license.tenant_id, "system", AuditAction::MailSend)
                        .license(&license.product_id, &license.id)
                        .detail(json!({"kind": MailKind::ExpiryReminder, "messageId": id})),
                )?;
                queued += 1;
            }
            Ok(queued)
        })
        .await
}
