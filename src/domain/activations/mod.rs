//! Activations: machines bound to a license (the key/HWID face calls the machine id a HWID).
//! Seats are counted and taken inside one writer job, so they are never double-booked.

pub mod repo;

use rusqlite::Connection;

use super::licenses::{self, License, LicenseStatus, Verdict};
use super::products::Product;
use crate::crypto;
use crate::error::{Error, LicenseProblem, Result};

#[derive(Debug, Clone)]
pub struct Activation {
    pub id: String,
    pub tenant_id: String,
    pub license_id: String,
    pub machine_id: String,
    pub machine_name: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub ip: Option<String>,
    pub activated_at: i64,
    pub last_seen_at: i64,
}

/// What a client tells about the machine it activates.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    pub machine_id: String,
    pub machine_name: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub ip: Option<String>,
}

pub struct Activated {
    pub license: License,
    pub activation: Activation,
    /// False when the machine was already activated (activation is idempotent).
    pub new: bool,
}

/// Binds `machine` to the license, unless the license may not be used or has no free seat.
/// Activating an already activated machine returns its existing activation. The first
/// activation of a plan key starts its clock. Must run inside a writer job.
pub fn activate_machine(
    conn: &Connection,
    license: &License,
    machine: &MachineInfo,
    now: i64,
) -> Result<Activated> {
    if let Some(problem) = license.problem(now) {
        return Err(Error::License(problem));
    }
    if let Some(existing) = repo::find(conn, &license.id, &machine.machine_id)? {
        repo::touch(conn, &existing.id, now)?;
        return Ok(Activated {
            license: license.clone(),
            activation: Activation {
                last_seen_at: now,
                ..existing
            },
            new: false,
        });
    }
    if repo::count(conn, &license.id)? >= license.max_activations as u64 {
        return Err(Error::License(LicenseProblem::ActivationLimitReached));
    }
    let activation = Activation {
        id: crypto::new_id("act"),
        tenant_id: license.tenant_id.clone(),
        license_id: license.id.clone(),
        machine_id: machine.machine_id.clone(),
        machine_name: machine.machine_name.clone(),
        os_name: machine.os_name.clone(),
        os_version: machine.os_version.clone(),
        app_version: machine.app_version.clone(),
        ip: machine.ip.clone(),
        activated_at: now,
        last_seen_at: now,
    };
    repo::insert(conn, &activation)?;
    let mut license = license.clone();
    if license.valid_until.is_none()
        && let Some(until) = licenses::plan_expiry(&license, now)
    {
        licenses::repo::set_valid_until(conn, &license.id, until, LicenseStatus::Active, now)?;
        license.valid_until = Some(until);
    }
    Ok(Activated {
        license,
        activation,
        new: true,
    })
}

/// Records a heartbeat; the machine must be activated and the license usable.
pub fn heartbeat(
    conn: &Connection,
    license: &License,
    machine_id: &str,
    now: i64,
) -> Result<Activation> {
    if let Some(problem) = license.problem(now) {
        return Err(Error::License(problem));
    }
    let activation = repo::find(conn, &license.id, machine_id)?
        .ok_or(Error::License(LicenseProblem::NotActivated))?;
    repo::touch(conn, &activation.id, now)?;
    Ok(Activation {
        last_seen_at: now,
        ..activation
    })
}

/// Read-only judgement of a license on a machine, as `/validate` reports it.
pub fn assess(
    license: &License,
    product: &Product,
    activation: Option<&Activation>,
    now: i64,
) -> Verdict {
    match license.problem(now) {
        Some(LicenseProblem::Revoked) => return Verdict::Revoked,
        Some(LicenseProblem::Suspended | LicenseProblem::Banned) => return Verdict::Suspended,
        Some(LicenseProblem::Expired) => return Verdict::Expired,
        _ => {}
    }
    let Some(activation) = activation else {
        return Verdict::NotActivated;
    };
    match product.heartbeat {
        Some(policy) if activation.last_seen_at < policy.dead_before(now) => Verdict::HeartbeatDead,
        _ => Verdict::Valid,
    }
}

/// When the machine should next check in, if the product expects heartbeats.
pub fn next_heartbeat_at(product: &Product, now: i64) -> Option<i64> {
    product
        .heartbeat
        .map(|policy| now + policy.interval_secs as i64 * 1000)
}
