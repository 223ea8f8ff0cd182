//! Password hashing (argon2id with OWASP's parameters) and generation.

use super::AuthError;
use crate::config::PasswordRule;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

/// OWASP's argon2id recommendation: 19 MiB memory, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…`).
pub fn hash(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random password that satisfies `rule` when the rule allows it: 20
/// characters from an alphabet without look-alikes (0/O, 1/l/I).
pub fn generate(rule: &PasswordRule) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.";
    let mut rng = rand::rng();
    let mut candidate = String::new();
    for _ in 0..1000 {
        candidate = (0..20)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        if rule.is_satisfied_by(&candidate) {
            break;
        }
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let phc = hash("Correct horse 9").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("Correct horse 9", &phc));
        assert!(!verify("correct horse 9", &phc));
        assert!(!verify("Correct horse 9", "not a hash"));
        assert_ne!(phc, hash("Correct horse 9").unwrap(), "salted");
    }

    #[test]
    fn generated_passwords_follow_the_rule_and_differ() {
        let rule = PasswordRule::default();
        let a = generate(&rule);
        assert_eq!(a.len(), 20);
        assert!(rule.is_satisfied_by(&a));
        assert_ne!(a, generate(&rule));
    }
}
