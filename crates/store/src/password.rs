//! Passwords of web UI users: Argon2id with the `argon2` crate's default
//! (recommended) parameters, kept as a PHC string. Hashing and checking
//! take tens of milliseconds of CPU and about 19 MiB each, on a blocking
//! thread, never on the async runtime's workers.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{Result, StoreError};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (bytes), so a client cannot make hashing costly.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Fails with `InvalidField` (`password`) unless the password may be set.
pub fn check_strength(password: &str) -> Result<()> {
    let invalid = |message: String| StoreError::InvalidField {
        field: "password".into(),
        message,
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| StoreError::Backend(format!("no system randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| StoreError::Backend(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Backend(format!("password hashing failed: {e}")))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The Argon2id PHC string of `password` (after [`check_strength`]).
pub async fn hash(password: &str) -> Result<String> {
    check_strength(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| StoreError::Backend(format!("password hashing task: {e}")))?
}

/// A hash of a random password, to check against when the email is
/// unknown: a failed sign-in then costs the same either way.
fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut bytes = [0u8; 24];
        let _ = getrandom::fill(&mut bytes);
        let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        hash_blocking(&random).unwrap_or_default()
    })
}

/// Whether `password` matches `hash`; with no hash (an unknown or disabled
/// user) it is checked against a dummy hash and is never a match, so both
/// failures take as long.
pub async fn verify(hash: Option<String>, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_blocking(&h, &password),
        None => {
            let _ = verify_blocking(dummy(), &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A fresh password of 20 base62 characters (about 119 bits), for
/// `switchyard user add` when none is given.
pub fn generate() -> Result<String> {
    crate::secret::random_base62(20)
}

/// A random token of 43 base62 characters (256 bits), e.g. for a CSRF
/// cookie.
pub fn random_token() -> Result<String> {
    crate::secret::random_base62(43)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify(Some(h.clone()), "correct horse battery").await);
        assert!(!verify(Some(h), "correct horse batterz").await);
        assert!(!verify(None, "correct horse battery").await);
        assert!(hash("short").await.is_err());
    }
}
