//! Key generation, sealing secrets at rest, signatures, hashing, constant-time comparison.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// Symbols for generated license keys: upper-case letters and digits without the look-alikes
/// 0/O and 1/I, so a key read aloud or retyped survives. 32 symbols = 5 bits each.
pub const KEY_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Lower-case letters and digits, for identifiers and API-key secrets.
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` symbols drawn uniformly from `alphabet` with the thread's CSPRNG (ChaCha12, seeded
/// and periodically reseeded from the operating system). Asking the OS for every symbol
/// cost a system call each, a measurable share of an activation.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh identifier such as `lic_k3x9…` (20 random symbols, ~103 bits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_string(ID_ALPHABET, 20))
}

/// Random lower-case alphanumeric text, for secrets.
pub fn random_secret(len: usize) -> String {
    random_string(ID_ALPHABET, len)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares two byte strings without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn base64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    B64.decode(text).ok()
}

/// The master key: 32 random bytes in `<data-dir>/master.key` (mode 0600), never in the
/// database, so a copied database alone reveals no signing or encryption key.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    raw: [u8; 32],
}

/// The master key's file name inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

impl MasterKey {
    /// The master key in `data_dir`, or `None` if there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, Error> {
        let path = data_dir.join(MASTER_KEY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Self::load_or_create(data_dir).map(Some)
    }

    pub fn load_or_create(data_dir: &Path) -> Result<Self, Error> {
        let path = data_dir.join(MASTER_KEY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                write_private_file(&path, &key)?;
                key.to_vec()
            }
            Err(e) => {
                return Err(Error::Storage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::Storage(format!(
                "{} is not a 32-byte key; restore it from a backup",
                path.display()
            ))
        })?;
        Ok(Self {
            cipher: Aes256Gcm::new(&raw.into()),
            raw,
        })
    }

    /// A key for one purpose (e.g. signing admin tokens), derived so that no second secret
    /// file is needed: SHA-256(label || 0 || master key).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0u8]);
        h.update(self.raw);
        h.finalize().into()
    }

    /// AES-256-GCM with a random nonce: `nonce (12) || ciphertext || tag (16)`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| Error::Storage("cannot seal a secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() < 12 + 16 {
            return Err(Error::Storage("a sealed secret is truncated".into()));
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| {
                Error::Storage("a sealed secret does not open with this master key".into())
            })
    }
}

fn write_private_file(path: &Path, data: &[u8]) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::Storage(format!("cannot write {}: {e}", path.display())))
}

/// A product's Ed25519 key pair: (public key, secret seed).
pub fn generate_signing_key() -> ([u8; 32], [u8; 32]) {
    let key = SigningKey::generate(&mut OsRng);
    (key.verifying_key().to_bytes(), key.to_bytes())
}

/// Ed25519 signature over `message`, base64.
pub fn sign(secret: &SigningKey, message: &[u8]) -> String {
    B64.encode(secret.sign(message).to_bytes())
}

/// A signing key made ready for many signatures. `SigningKey::sign` hashes the seed with
/// SHA-512 again for every signature to get the scalar and the nonce prefix; this keeps them,
/// so an answer costs only the signature itself (issue 16). The signature is the same bytes.
pub struct AnswerSigner {
    expanded: ed25519_dalek::hazmat::ExpandedSecretKey,
    public: ed25519_dalek::VerifyingKey,
}

impl AnswerSigner {
    pub fn new(key: &SigningKey) -> Self {
        Self {
            expanded: ed25519_dalek::hazmat::ExpandedSecretKey::from(&key.to_bytes()),
            public: key.verifying_key(),
        }
    }

    /// Ed25519 over `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        let signature =
            ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&self.expanded, message, &self.public);
        B64.encode(signature.to_bytes())
    }
}

/// Ed25519 over a file's exact bytes, base64, without holding the file in memory. Ed25519
/// hashes the message twice (once for the nonce, once for the challenge), so the file is
/// read twice; the signature is the ordinary one `openssl pkeyutl -verify -rawin` accepts.
pub fn sign_file(secret: &SigningKey, path: &std::path::Path) -> Result<String, Error> {
    use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign_byupdate};
    use std::io::Read;

    let expanded = ExpandedSecretKey::from(&secret.to_bytes());
    let failure = std::sync::Mutex::new(None::<std::io::Error>);
    let feed = |digest: &mut sha2::Sha512| -> Result<(), ed25519_dalek::SignatureError> {
        use sha2::Digest;
        let mut read = || -> std::io::Result<()> {
            let mut file = std::fs::File::open(path)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                digest.update(&buf[..n]);
            }
        };
        read().map_err(|e| {
            if let Ok(mut slot) = failure.lock() {
                *slot = Some(e);
            }
            ed25519_dalek::SignatureError::new()
        })
    };
    let signature = raw_sign_byupdate::<sha2::Sha512, _>(&expanded, feed, &secret.verifying_key())
        .map_err(|_| {
            let cause = failure
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .map_or_else(|| "unknown".to_owned(), |e| e.to_string());
            Error::Storage(format!("cannot sign {}: {cause}", path.display()))
        })?;
    Ok(B64.encode(signature.to_bytes()))
}

pub fn signing_key_from_seed(seed: &[u8]) -> Result<SigningKey, Error> {
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| Error::Storage("a signing key is not 32 bytes".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The key/HWID face's encrypted envelope: base64(12-byte IV ‖ AES-256-GCM ciphertext ‖
/// 16-byte tag) under the project's payload key, no associated data.
pub fn envelope_open(key: &[u8], payload_b64: &str) -> Result<Vec<u8>, Error> {
    let sealed = from_base64(payload_b64.trim())
        .ok_or_else(|| Error::Invalid("payload is not valid base64".into()))?;
    if sealed.len() < 12 + 16 {
        return Err(Error::Invalid(
            "payload is too short to hold IV, ciphertext and tag".into(),
        ));
    }
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|_| Error::Storage("a payload key is not 32 bytes".into()))?;
    let (iv, ct) = sealed.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(iv), ct)
        .map_err(|_| Error::Invalid("payload does not decrypt with this project's key".into()))
}

pub fn envelope_seal(key: &[u8], plaintext: &[u8]) -> Result<String, Error> {
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|_| Error::Storage("a payload key is not 32 bytes".into()))?;
    let iv = random_bytes::<12>();
    let ct = cipher
        .encrypt(Nonce::from_slice(&iv), plaintext)
        .map_err(|_| Error::Storage("cannot encrypt a payload".into()))?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    Ok(base64(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeping the key expanded changes how an answer is signed, not what is signed.
    #[test]
    fn the_answer_signer_makes_the_signing_keys_own_signature() -> Result<(), Error> {
        let key = signing_key_from_seed(&[7u8; 32])?;
        let signer = AnswerSigner::new(&key);
        for message in [&b""[..], b"{\"valid\":true}", &[0xA5; 700][..]] {
            assert_eq!(signer.sign(message), sign(&key, message));
        }
        Ok(())
    }
}
