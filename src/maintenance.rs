//! Background upkeep: mark expired licenses, cull machines whose heartbeats stopped, prune audit
//! rows past their retention (giving the space back), and let rate limiters forget idle clients.

use std::collections::HashMap;

use serde_json::json;

use crate::domain::audit::repo::PruneCursor;
use crate::domain::audit::{self, AuditEvent, RetentionClass};
use crate::domain::webhooks::EventType;
use crate::domain::{activations, licenses, now_ms, products};
use crate::error::Error;
use crate::service::events;
use crate::state::AppState;
use crate::storage;

/// Audit rows looked at per writer job while pruning: a job of this size takes a few
/// milliseconds, so writes queued behind it (activations, admin changes) barely wait.
const PRUNE_BATCH: u32 = 2_000;

/// Free pages given back to the file system per writer job (8 MiB of 4 KiB pages).
const RECLAIM_PAGES: u32 = 2_048;

pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruner = AuditPruner::default();
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
        // After the sweep: a backlog of rows to prune (the first start after an upgrade) must
        // not delay expiry.
        match pruner.run(&state).await {
            Ok(p) if p.rows + p.pages_freed > 0 => tracing::debug!(
                "maintenance: {} audit row(s) past their retention pruned, {} page(s) freed",
                p.rows,
                p.pages_freed
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("audit pruning failed: {e}"),
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
        state.limits.mail_requests_per_ip.forget_idle();
        state.limits.mail_requests_per_address.forget_idle();
        match crate::service::mail::reminders::sweep(&state).await {
            Ok(n) if n > 0 => tracing::info!("maintenance: {n} expiry reminder(s) queued"),
            Ok(_) => {}
            Err(e) => tracing::warn!("expiry reminders failed: {e}"),
        }
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
            crate::domain::webhooks::repo::prune(
                c,
                now - crate::domain::webhooks::DELIVERIES_KEPT_MS,
            )?;
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
                // Once per license: the sweep only picks ACTIVE licenses past their expiry.
                if let Some(license) = licenses::repo::find(c, tenant_id, license_id)? {
                    events::license_event(c, &license, EventType::LicenseExpired)?;
                }
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
                    if let Some(license) =
                        licenses::repo::find(c, &dead.tenant_id, &dead.license_id)?
                    {
                        events::emit(
                            c,
                            &dead.tenant_id,
                            Some(&product.id),
                            EventType::MachineCulled,
                            events::machine_data(&license, &dead, Some("HEARTBEAT_DEAD")),
                        )?;
                    }
                }
            }
            Ok((expired.len(), culled))
        })
        .await
        .inspect(|(expired, culled)| {
            if expired + culled > 0 {
                state.webhooks.wake();
            }
        })
}

/// What one pruning pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Audit rows counted into the daily aggregates and deleted.
    pub rows: u64,
    /// Pages cut off the end of the database file.
    pub pages_freed: u64,
}

/// Prunes audit rows past their kind's retention (`Config::audit_retention`), in many short
/// writer jobs, then gives the freed pages back. It remembers, per tenant and kind, how far it
/// has looked, so rows kept for a longer retention are stepped over once, not at every pass.
#[derive(Debug, Default)]
pub struct AuditPruner {
    cursors: HashMap<(String, RetentionClass), PruneCursor>,
}

impl AuditPruner {
    pub async fn run(&mut self, state: &AppState) -> Result<Pruned, Error> {
        let now = now_ms();
        let mut pruned = Pruned::default();
        for class in RetentionClass::ALL {
            let Some(keep) = state.config.audit_retention.of(class) else {
                continue;
            };
            let before = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
            let mut tenant: Option<String> = None;
            while let Some(t) = state
                .db
                .read(|c| audit::repo::next_tenant(c, tenant.as_deref()))?
            {
                let key = (t.clone(), class);
                loop {
                    let after = self
                        .cursors
                        .get(&key)
                        .copied()
                        .unwrap_or(PruneCursor::START);
                    let id = t.clone();
                    let batch = state
                        .db
                        .write(move |c| {
                            audit::repo::prune_batch(c, &id, class, before, after, PRUNE_BATCH)
                        })
                        .await?;
                    self.cursors.insert(key.clone(), batch.next);
                    pruned.rows += batch.pruned;
                    if !batch.more {
                        break;
                    }
                    // Let the writer take the jobs queued meanwhile before the next batch.
                    tokio::task::yield_now().await;
                }
                tenant = Some(t);
            }
        }
        loop {
            let freed = state
                .db
                .write(|c| storage::vacuum::reclaim(c, RECLAIM_PAGES))
                .await?;
            pruned.pages_freed += freed;
            if freed < u64::from(RECLAIM_PAGES) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(pruned)
    }
}
