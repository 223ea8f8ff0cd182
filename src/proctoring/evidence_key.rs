//! The instance's Ed25519 key that signs evidence bundles, and the public
//! half that anyone verifying a bundle pins.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The signing key (kept 0600 in the data directory by the caller).
pub struct EvidenceKey(SigningKey);

impl EvidenceKey {
    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        EvidenceKey(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EvidenceKey({})", self.public().fingerprint())
    }
}

/// A public key that verifies bundles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses base64 (as `invigil export --show-key` prints it) or hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            B64.decode(text)
                .map_err(|_| "not base64 or hex".to_string())?
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an Ed25519 public key has 32 bytes".to_string())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "not a valid Ed25519 public key".to_string())
    }

    /// Base64 of the 32 key bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as SSH shows keys.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// Whether `signature` is this key's signature over `message` (strict
    /// verification: no malleable or small-order forms).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_parse_both_forms() {
        let key = EvidenceKey::from_seed(&[7; 32]);
        let public = key.public();
        let sig = key.sign(b"manifest");
        assert!(public.verifies(b"manifest", &sig));
        assert!(!public.verifies(b"manifesT", &sig));
        assert!(!public.verifies(b"manifest", &sig[..63]));
        assert_eq!(PublicKey::parse(&public.to_base64()).unwrap(), public);
        assert_eq!(
            PublicKey::parse(&hex::encode(public.0.as_bytes())).unwrap(),
            public
        );
        assert!(PublicKey::parse("abc").is_err());
        assert!(public.fingerprint().starts_with("SHA256:"));
        let other = EvidenceKey::from_seed(&[8; 32]).public();
        assert!(!other.verifies(b"manifest", &sig));
    }
}
