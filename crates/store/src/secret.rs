//! API key secrets: generation and hashing.
//!
//! A secret is `sy_<kind>_<32 base62 characters>` from the operating
//! system's CSPRNG (about 190 bits). The store keeps only its SHA-256 in
//! hex: a token with that much entropy cannot be brute-forced, so a slow
//! password KDF would only slow every request down.

use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::types::ApiKeyKind;

const HEX: &[u8; 16] = b"0123456789abcdef";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random base62 characters, without modulo bias (bytes of 248 and
/// above are thrown away: 248 = 4 * 62).
pub(crate) fn random_base62(n: usize) -> Result<String> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf)
            .map_err(|e| StoreError::Backend(format!("no system randomness: {e}")))?;
        for b in buf {
            if b < 248 && out.len() < n {
                out.push(BASE62[usize::from(b % 62)] as char);
            }
        }
    }
    Ok(out)
}

pub(crate) fn kind_tag(kind: ApiKeyKind) -> &'static str {
    match kind {
        ApiKeyKind::Admin(_) => "admin",
        ApiKeyKind::Server => "server",
        ApiKeyKind::Client => "client",
    }
}

pub(crate) fn generate(kind: ApiKeyKind) -> Result<String> {
    Ok(format!("sy_{}_{}", kind_tag(kind), random_base62(32)?))
}

/// What is shown of a key after creation: its kind and four characters.
pub(crate) fn prefix(secret: &str) -> String {
    let tail_start = secret.rfind('_').map_or(0, |i| i + 1);
    let end = (tail_start + 4).min(secret.len());
    secret.get(..end).unwrap_or_default().to_string()
}

/// Whether `secret` has the shape [`generate`] gives every secret (kind
/// tag and 32 base62 characters). Anything else cannot be a key, and needs
/// no lookup.
pub fn is_well_formed(secret: &str) -> bool {
    let tail = ["sy_admin_", "sy_server_", "sy_client_"]
        .iter()
        .find_map(|tag| secret.strip_prefix(tag));
    tail.is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The SHA-256 of a secret in lowercase hex: what the store keeps.
pub fn hash(secret: &str) -> String {
    hash_bytes(secret.as_bytes())
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_names_its_kind_and_has_32_base62_characters() {
        let s = generate(ApiKeyKind::Server).unwrap();
        let tail = s.strip_prefix("sy_server_").unwrap();
        assert_eq!(tail.len(), 32);
        assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(prefix(&s).len(), "sy_server_".len() + 4);
    }

    #[test]
    fn only_secrets_of_the_generated_shape_are_well_formed() {
        for kind in [
            ApiKeyKind::Server,
            ApiKeyKind::Client,
            ApiKeyKind::Admin(crate::Role::Viewer),
        ] {
            assert!(is_well_formed(&generate(kind).unwrap()));
        }
        let good = generate(ApiKeyKind::Server).unwrap();
        for bad in [
            "",
            "sy_server_",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replace("sy_server_", "sy_other_"),
            &format!("{}-", &good[..good.len() - 1]),
            "sy_server_ääääääääääääääää",
        ] {
            assert!(!is_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_hash_is_sha256_in_lowercase_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
