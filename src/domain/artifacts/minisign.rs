//! minisign signatures, as Tauri's updater verifies them: the "ED" (prehashed) algorithm,
//! Ed25519 over the BLAKE2b-512 digest of the file, plus a global signature over the signature
//! and its trusted comment. The key is the product's Ed25519 signing key; its minisign key id is
//! the key's kid (the first 8 bytes of SHA-256 of the public key), so a rotation gives a new
//! minisign key whose id names the same key the kid does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey};

use crate::error::{Error, Result};

/// The 8 key-id bytes minisign puts in public keys and signatures: the kid, hex-decoded.
fn key_id(kid: &str) -> Result<[u8; 8]> {
    hex::decode(kid)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| Error::Storage(format!("kid {kid:?} is not 16 hex characters")))
}

/// How minisign prints a key id: the 8 bytes as a little-endian number, upper-case hex.
pub fn key_id_text(kid: &str) -> Result<String> {
    Ok(format!("{:016X}", u64::from_le_bytes(key_id(kid)?)))
}

/// A minisign public key: its base64 line (what `minisign -P` takes) and the text of its
/// `.pub` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub base64: String,
    pub file: String,
}

impl PublicKey {
    /// What `tauri.conf.json` wants in `plugins.updater.pubkey`: base64 of the `.pub` text.
    pub fn tauri(&self) -> String {
        B64.encode(self.file.as_bytes())
    }
}

pub fn public_key(public_key: &[u8; 32], kid: &str) -> Result<PublicKey> {
    let id = key_id(kid)?;
    let key_id = key_id_text(kid)?;
    let base64 = B64.encode([b"Ed".as_slice(), &id, public_key].concat());
    let file = format!("untrusted comment: minisign public key {key_id}\n{base64}\n");
    Ok(PublicKey {
        key_id,
        base64,
        file,
    })
}

/// The BLAKE2b-512 digest minisign's prehashed signatures sign, fed by the caller as it reads
/// the file.
pub fn hasher() -> Blake2b512 {
    Blake2b512::new()
}

/// The trusted comment of an artifact's signature: when it was signed and the file's name, as
/// minisign writes it (tab-separated). `filename` is already a safe name (no tabs or newlines).
pub fn trusted_comment(signed_at_secs: i64, filename: &str) -> String {
    format!("timestamp:{signed_at_secs}\tfile:{filename}\thashed")
}

/// The text of a minisign `.sig` file for a file whose BLAKE2b-512 digest is `digest`.
pub fn signature_file(
    secret: &SigningKey,
    kid: &str,
    digest: &[u8; 64],
    trusted_comment: &str,
) -> Result<String> {
    if trusted_comment.contains(['\n', '\r']) {
        return Err(Error::Storage("a trusted comment cannot span lines".into()));
    }
    let id = key_id(kid)?;
    let signature = secret.sign(digest).to_bytes();
    let global = secret
        .sign(&[signature.as_slice(), trusted_comment.as_bytes()].concat())
        .to_bytes();
    let line = B64.encode([b"ED".as_slice(), &id, &signature].concat());
    Ok(format!(
        "untrusted comment: signature from keyward, key {}\n{line}\ntrusted comment: \
         {trusted_comment}\n{}\n",
        key_id_text(kid)?,
        B64.encode(global)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn a_signature_is_ed25519_over_the_blake2b_digest_and_the_comment() -> Result<()> {
        let secret = SigningKey::from_bytes(&[7u8; 32]);
        let public = secret.verifying_key();
        let kid = crate::domain::signing_keys::kid(public.as_bytes());
        let key = public_key(public.as_bytes(), &kid)?;
        assert!(key.file.ends_with(&format!("{}\n", key.base64)));
        let raw = B64
            .decode(&key.base64)
            .map_err(|e| Error::Storage(e.to_string()))?;
        assert_eq!(&raw[..2], b"Ed");
        assert_eq!(hex::encode(&raw[2..10]), kid);

        let digest: [u8; 64] = Blake2b512::digest(b"the file").into();
        let comment = trusted_comment(1_700_000_000, "app.tar.gz");
        let text = signature_file(&secret, &kid, &digest, &comment)?;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let sig = B64
            .decode(lines[1])
            .map_err(|e| Error::Storage(e.to_string()))?;
        assert_eq!(&sig[..2], b"ED");
        assert_eq!(hex::encode(&sig[2..10]), kid);
        let sig_bytes: [u8; 64] = sig[10..].try_into().map_err(|_| Error::NotFound("sig"))?;
        assert!(
            public
                .verify(&digest, &Signature::from_bytes(&sig_bytes))
                .is_ok()
        );
        assert_eq!(lines[2], format!("trusted comment: {comment}"));
        let global = B64
            .decode(lines[3])
            .map_err(|e| Error::Storage(e.to_string()))?;
        let global: [u8; 64] = global.try_into().map_err(|_| Error::NotFound("sig"))?;
        let signed = [sig_bytes.as_slice(), comment.as_bytes()].concat();
        assert!(
            public
                .verify(&signed, &Signature::from_bytes(&global))
                .is_ok()
        );
        Ok(())
    }
}
