//! ed25519 keys: a secret key is kept as its 32-byte seed (base64 in a file of its owner's), a
//! public key travels as base64 in `public-key` headers and is named by its id.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer;
use sha3::{Digest, Sha3_384};

use super::AssertionError;

/// A signing key.
pub struct SecretKey(ed25519_dalek::SigningKey);

/// A key that checks signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl SecretKey {
    /// A new key from the kernel's random numbers.
    pub fn generate() -> Result<SecretKey, AssertionError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| AssertionError(format!("cannot get random numbers for a key: {e}")))?;
        Ok(SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The key whose seed is `text` (base64, as [`Self::to_text`] writes it).
    pub fn from_text(text: &str) -> Result<SecretKey, AssertionError> {
        let seed: [u8; 32] = STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AssertionError("not a packd secret key (32 bytes of base64)".into()))?;
        Ok(SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn to_text(&self) -> String {
        format!("{}\n", STANDARD.encode(self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl PublicKey {
    /// Its id: the SHA3-384 of its 32 bytes, unpadded URL-safe base64.
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha3_384::digest(self.0.as_bytes()))
    }

    /// Base64 of its 32 bytes.
    pub fn encode(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    pub fn decode(text: &str) -> Result<PublicKey, AssertionError> {
        let bytes: [u8; 32] = STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                AssertionError("not an ed25519 public key (32 bytes of base64)".into())
            })?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| AssertionError("not a valid ed25519 public key".into()))
    }

    /// Whether `signature` is this key's over `message` (strict: no malleable signatures).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(message, &sig).is_ok()
    }
}
