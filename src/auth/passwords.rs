//! Password hashing: argon2id with m=19 MiB, t=2, p=1 (the argon2 crate's
//! defaults, OWASP's minimum), salts from the OS CSPRNG, PHC strings at rest.
//!
//! Hashing is deliberately slow and memory-hungry, so at most
//! `MAX_CONCURRENT` run at once: a burst of logins queues instead of
//! exhausting memory. Unknown users are verified against a dummy hash so a
//! login costs the same whether or not the name exists.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{Error, Result};

const MAX_CONCURRENT: usize = 2;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 8;

struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

fn semaphore() -> &'static Semaphore {
    static SEM: OnceLock<Semaphore> = OnceLock::new();
    SEM.get_or_init(|| Semaphore {
        free: Mutex::new(MAX_CONCURRENT),
        freed: Condvar::new(),
    })
}

/// Runs `f` holding one of the hashing permits.
fn limited<T>(f: impl FnOnce() -> T) -> T {
    let sem = semaphore();
    let mut free = sem.free.lock().expect("semaphore");
    while *free == 0 {
        free = sem.freed.wait(free).expect("semaphore");
    }
    *free -= 1;
    drop(free);
    let out = f();
    *sem.free.lock().expect("semaphore") += 1;
    sem.freed.notify_one();
    out
}

pub fn check_strength(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LENGTH {
        return Err(Error::invalid(format!(
            "password must be at least {MIN_LENGTH} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("password must be at most 1024 bytes"));
    }
    Ok(())
}

/// An argon2id PHC string for `password`.
pub fn hash(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::invalid(e.to_string()))?;
    limited(|| {
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .map_err(|e| Error::invalid(format!("cannot hash password: {e}")))
}

/// Checks `password` against a stored hash; `None` (unknown user) costs the
/// same as a real check and fails.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("cfgstore-dummy-password").expect("dummy hash"));
    let phc = stored.unwrap_or(dummy);
    let ok = match PasswordHash::new(phc) {
        Ok(parsed) => limited(|| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        }),
        Err(_) => false,
    };
    ok && stored.is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify("correct horse", Some(&h)));
        assert!(!super::verify("wrong horse", Some(&h)));
        assert!(!super::verify("correct horse", None));
        assert!(!super::verify("x", Some("not a hash")));
        assert!(super::check_strength("short").is_err());
    }
}
