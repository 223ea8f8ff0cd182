//! Instance secrets kept in the data directory.

use super::datadir;
use crate::config::Config;
use crate::proctoring::evidence_key::EvidenceKey;
use base64::Engine;
use rand::RngCore;

/// File that keeps the generated session key (mode 0600).
pub const SESSION_KEY_FILE: &str = "session.key";

/// The session key: `SESSION_KEY` when set, else the one generated at first
/// start (32 random bytes) and kept in `DATA_DIR/session.key`.
pub fn session_key(config: &Config) -> Result<Vec<u8>, String> {
    if let Some(key) = &config.session_key {
        return Ok(key.expose().as_bytes().to_vec());
    }
    let path = config.data_dir.join(SESSION_KEY_FILE);
    let b64 = base64::engine::general_purpose::STANDARD;
    match datadir::read_secret_file(&path).map_err(|e| format!("{}: {e}", path.display()))? {
        Some(text) => {
            let key = b64.decode(text.trim_ascii()).map_err(|_| {
                format!(
                    "{} is not base64; remove it to have a new key made",
                    path.display()
                )
            })?;
            if key.len() < 32 {
                return Err(format!(
                    "{} holds a key shorter than 32 bytes; remove it to have a new key made",
                    path.display()
                ));
            }
            Ok(key)
        }
        None => {
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            datadir::write_secret_file(&path, format!("{}\n", b64.encode(&key)).as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!("generated a session key in {}", path.display());
            Ok(key)
        }
    }
}

/// File that keeps the generated TURN credential secret (mode 0600).
pub const TURN_SECRET_FILE: &str = "turn.secret";

/// The TURN credential secret: `TURN_AUTH_SECRET` when set, else generated at
/// first start and kept in `DATA_DIR/turn.secret`, so credentials minted
/// before a restart stay valid.
pub fn turn_secret(config: &Config) -> Result<Vec<u8>, String> {
    if let Some(secret) = &config.turn_auth_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let path = config.data_dir.join(TURN_SECRET_FILE);
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    match datadir::read_secret_file(&path).map_err(shown)? {
        Some(text) if text.trim_ascii().len() >= 32 => Ok(text.trim_ascii().to_vec()),
        Some(_) => Err(format!(
            "{} holds a secret shorter than 32 characters; remove it to have a new one made",
            path.display()
        )),
        None => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            // Kept as text: coturn's static-auth-secret is a string, so an
            // external coturn can be given the same value.
            let text = hex::encode(key);
            datadir::write_secret_file(&path, format!("{text}\n").as_bytes()).map_err(shown)?;
            tracing::info!("generated a TURN secret in {}", path.display());
            Ok(text.into_bytes())
        }
    }
}

/// File that keeps the instance's evidence signing key (mode 0600).
pub const EVIDENCE_KEY_FILE: &str = "evidence.key";

/// The Ed25519 key that signs evidence bundles: generated at first use and
/// kept in `DATA_DIR/evidence.key` (base64 of the 32-byte seed), so every
/// bundle of an instance carries the same public key.
pub fn evidence_key(data_dir: &std::path::Path) -> Result<EvidenceKey, String> {
    let path = data_dir.join(EVIDENCE_KEY_FILE);
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let b64 = base64::engine::general_purpose::STANDARD;
    match datadir::read_secret_file(&path).map_err(shown)? {
        Some(text) => {
            let seed: [u8; 32] = b64
                .decode(text.trim_ascii())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "{} is not a base64 32-byte key; bundles signed with it can no longer be \
                         checked against a new one, so restore it from a backup",
                        path.display()
                    )
                })?;
            Ok(EvidenceKey::from_seed(&seed))
        }
        None => {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            datadir::write_secret_file(&path, format!("{}\n", b64.encode(seed)).as_bytes())
                .map_err(shown)?;
            tracing::info!("generated an evidence signing key in {}", path.display());
            Ok(EvidenceKey::from_seed(&seed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap().config;
        config.data_dir = dir.path().to_path_buf();
        let first = session_key(&config).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(session_key(&config).unwrap(), first);
        let meta = std::fs::metadata(dir.path().join(SESSION_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.path().join(SESSION_KEY_FILE), "c2hvcnQ=").unwrap();
        assert!(session_key(&config).unwrap_err().contains("shorter"));
    }

    #[test]
    fn evidence_key_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = evidence_key(dir.path()).unwrap().public();
        assert_eq!(evidence_key(dir.path()).unwrap().public(), first);
        let meta = std::fs::metadata(dir.path().join(EVIDENCE_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.path().join(EVIDENCE_KEY_FILE), "c2hvcnQ=").unwrap();
        assert!(evidence_key(dir.path()).unwrap_err().contains("backup"));
    }

    #[test]
    fn turn_secret_generated_once_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap().config;
        config.data_dir = dir.path().to_path_buf();
        let first = turn_secret(&config).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(turn_secret(&config).unwrap(), first);
        let meta = std::fs::metadata(dir.path().join(TURN_SECRET_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        config.turn_auth_secret = Some(crate::config::Secret::new("operator-chosen-secret"));
        assert_eq!(turn_secret(&config).unwrap(), b"operator-chosen-secret");
    }
}
