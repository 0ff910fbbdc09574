//! argon2id password hashing in a bounded pool of preallocated memory.
//!
//! Each argon2id run needs 19 MiB of working memory. Allocated per call, that memory is freed
//! into the allocator of whichever blocking thread ran the hash, and glibc keeps it per thread
//! arena: resident memory grew from 26 MB to over 400 MB after a few thousand failed logins.
//! Here the memory is allocated once per slot and reused; at most [`SLOTS`] hashes run at once
//! (the same bound as `AppState::password_hashing`), further callers wait for a slot.
//!
//! The pool is process-wide rather than in `AppState`: it bounds the process's memory, which
//! is one resource however many servers or commands run in it.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{Error, Result};

/// Concurrent hashes, each holding one slot of memory.
pub const SLOTS: usize = 2;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;
const OUTPUT_LEN: usize = 32;

fn params() -> Result<Params> {
    Params::new(MEMORY_KIB, ITERATIONS, LANES, Some(OUTPUT_LEN))
        .map_err(|e| Error::Storage(format!("argon2 parameters: {e}")))
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`). Slow on purpose (tens of
/// milliseconds): call it off the async runtime.
pub fn hash(password: &str) -> Result<String> {
    let params = params()?;
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| Error::Storage(format!("cannot hash a password: {e}")))?;
    let mut out = [0u8; OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_memory(params.block_count(), |blocks| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, blocks)
            .map_err(|e| Error::Storage(format!("cannot hash a password: {e}")))
    })?;
    let failed =
        |e: argon2::password_hash::Error| Error::Storage(format!("cannot encode a hash: {e}"));
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(failed)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (any argon2 variant and parameters; the
/// comparison is constant-time).
pub fn verify(password: &str, phc: &str) -> bool {
    verify_inner(password, phc).unwrap_or(false)
}

fn verify_inner(password: &str, phc: &str) -> Result<bool> {
    fn bad<E>(_: E) -> Error {
        Error::Invalid("not an argon2 hash".into())
    }
    let parsed = PasswordHash::new(phc).map_err(bad)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(bad)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(bad)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(bad)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(bad)?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    with_memory(params.block_count(), |blocks| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, blocks)
            .map_err(|e| Error::Storage(format!("cannot verify a password: {e}")))
    })?;
    Ok(crate::crypto::constant_time_eq(&out, expected.as_bytes()))
}

/// Runs `f` on `blocks` blocks of pooled memory, waiting for a free slot.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> Result<T>) -> Result<T> {
    let pool = pool();
    if blocks > pool.blocks_per_slot {
        // A hash made elsewhere with a larger memory cost: rare, so it gets its own memory.
        let mut own = vec![Block::default(); blocks];
        return f(&mut own);
    }
    let mut lease = Lease {
        pool,
        slot: Some(pool.take()?),
    };
    match lease.slot.as_deref_mut() {
        Some(slot) => f(&mut slot[..blocks]),
        None => Err(Error::Storage(
            "the password-hashing pool is unusable".into(),
        )),
    }
}

/// A slot in use; returned to the pool even if the hash panics.
struct Lease {
    pool: &'static Pool,
    slot: Option<Box<[Block]>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.pool.give_back(slot);
        }
    }
}

struct Pool {
    blocks_per_slot: usize,
    /// Slots allocated so far and those free now.
    state: Mutex<(usize, Vec<Box<[Block]>>)>,
    freed: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        blocks_per_slot: params()
            .map(|p| p.block_count())
            .unwrap_or(MEMORY_KIB as usize),
        state: Mutex::new((0, Vec::with_capacity(SLOTS))),
        freed: Condvar::new(),
    })
}

impl Pool {
    /// A free slot; the memory of a slot is allocated on its first use and kept for good.
    fn take(&self) -> Result<Box<[Block]>> {
        let poisoned = |_| Error::Storage("the password-hashing pool is unusable".into());
        let mut state = self.state.lock().map_err(poisoned)?;
        loop {
            if let Some(slot) = state.1.pop() {
                return Ok(slot);
            }
            if state.0 < SLOTS {
                state.0 += 1;
                drop(state);
                return Ok(vec![Block::default(); self.blocks_per_slot].into_boxed_slice());
            }
            state = self.freed.wait(state).map_err(poisoned)?;
        }
    }

    fn give_back(&self, slot: Box<[Block]>) {
        if let Ok(mut state) = self.state.lock() {
            state.1.push(slot);
        }
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoy costs what a real account's check costs: same algorithm and parameters.
    #[test]
    fn the_decoy_hash_has_the_parameters_of_a_new_hash() -> Result<()> {
        let decoy = crate::domain::operators::decoy_hash();
        let fresh = hash("any password")?;
        let params_of = |phc: &str| phc.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(params_of(decoy), params_of(&fresh));
        assert!(PasswordHash::new(decoy).is_ok());
        assert!(!verify("decoy-password-nobody-has", decoy));
        Ok(())
    }

    #[test]
    fn hashes_verify_and_interoperate_with_the_argon2_crate()
    -> Result<(), Box<dyn std::error::Error>> {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let phc = hash("correct horse")?;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        let parsed = PasswordHash::new(&phc).map_err(|e| e.to_string())?;
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // Hashes made by the crate's own hasher (as stored before the pool) still verify.
        let salt = SaltString::generate(&mut OsRng);
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params()?);
        let old = argon
            .hash_password(b"old password", &salt)
            .map_err(|e| e.to_string())?
            .to_string();
        assert!(verify("old password", &old));
        assert!(!verify("old passwore", &old));
        assert!(!verify("x", "not a hash"));
        Ok(())
    }
}
