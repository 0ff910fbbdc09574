//! Background upkeep: mark expired licenses, cull machines whose heartbeats stopped, and let
//! rate limiters forget idle clients.

use serde_json::json;

use crate::domain::audit::AuditEvent;
use crate::domain::{activations, licenses, now_ms, products};
use crate::error::Error;
use crate::state::AppState;

pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&state).await {
            Ok((expired, culled)) if expired + culled > 0 => {
                tracing::info!(
                    "maintenance: {expired} license(s) expired, {culled} machine(s) culled"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("maintenance sweep failed: {e}"),
        }
        state.limits.per_ip.forget_idle();
        state.limits.per_api_key.forget_idle();
        state.limits.failed_auth_per_ip.forget_idle();
        state.limits.login_per_ip.forget_idle();
        state.limits.login_per_account.forget_idle();
        state.limits.login_per_device.forget_idle();
        state.limits.per_license_key.forget_idle();
        state.limits.update_checks_per_license.forget_idle();
        state.limits.downloads_per_license.forget_idle();
        state.limits.downloads_per_ip.forget_idle();
        state.abuse.sweep();
    }
}

/// One pass, in one writer job: returns (licenses expired, machines culled).
pub async fn sweep(state: &AppState) -> Result<(usize, usize), Error> {
    state
        .db
        .write(|c| {
            let now = now_ms();
            crate::domain::operators::repo::purge_expired_revocations(c, now / 1000)?;
            crate::domain::sessions::repo::purge_seen_requests(c, now)?;
            crate::domain::sessions::repo::purge_ended(
                c,
                now - crate::domain::sessions::ENDED_KEPT_MS,
            )?;
            crate::domain::portal_users::repo::purge_expired_sessions(c, now)?;
            let expired = licenses::repo::expire_overdue(c, now)?;
            for (tenant_id, product_id, license_id) in &expired {
                crate::domain::audit::repo::insert(
                    c,
                    &AuditEvent::new(
                        tenant_id,
                        "system",
                        crate::domain::audit::AuditAction::LicenseExpire,
                    )
                    .license(product_id, license_id),
                )?;
            }
            let mut culled = 0;
            for product in products::repo::with_cull_policy(c)? {
                let Some(policy) = product.heartbeat else {
                    continue;
                };
                for dead in activations::repo::cull_dead(c, &product.id, policy.dead_before(now))? {
                    culled += 1;
                    crate::domain::audit::repo::insert(
                        c,
                        &AuditEvent::new(
                            &dead.tenant_id,
                            "system",
                            crate::domain::audit::AuditAction::MachineCull,
                        )
                        .license(&product.id, &dead.license_id)
                        .machine(&dead.machine_id)
                        .detail(json!({"lastSeenAt": dead.last_seen_at})),
                    )?;
                }
            }
            Ok((expired.len(), culled))
        })
        .await
}
