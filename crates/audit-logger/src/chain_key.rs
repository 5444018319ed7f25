//! The secret that makes the trail authentic, not only consistent.
//!
//! A plain hash chain proves only that entries agree with each other: whoever can write the
//! store can edit an entry and recompute every hash after it. Keying every link with
//! HMAC-SHA256 under a secret that lives outside the store (`AUDIT_CHAIN_KEY`, a Kubernetes
//! Secret in production) means a forged or re-linked entry cannot carry a valid hash without
//! the key. The MAC input also names the trail, so an entry (or a whole chain) copied from one
//! trail into another does not verify there, and a domain tag keeps entry MACs and checkpoint
//! MACs ([`crate::checkpoint`]) from ever being interchangeable.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

/// The shortest key accepted: HMAC-SHA256 keys shorter than the hash add no strength.
pub const MIN_CHAIN_KEY_LEN: usize = 32;

/// What a MAC authenticates; part of the MAC input so the two kinds never collide.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    Entry,
    Checkpoint,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Entry => b"audit-entry/v1",
            Self::Checkpoint => b"audit-checkpoint/v1",
        }
    }
}

/// The key is too short to be trusted.
#[derive(Debug, thiserror::Error)]
#[error("AUDIT_CHAIN_KEY must be at least {MIN_CHAIN_KEY_LEN} bytes, got {0}")]
pub struct KeyTooShort(pub usize);

/// The chain key, ready to MAC. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct ChainKey {
    /// HMAC state with the key already absorbed; cloned per MAC.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey([REDACTED])")
    }
}

impl ChainKey {
    pub fn new(secret: &SecretString) -> Result<Self, KeyTooShort> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_CHAIN_KEY_LEN {
            return Err(KeyTooShort(bytes.len()));
        }
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(bytes).map_err(|_| KeyTooShort(bytes.len()))?;
        Ok(Self { keyed })
    }

    /// HMAC-SHA256 (lower-case hex) of `text` as a `domain` item of `trail`.
    pub fn mac(&self, domain: Domain, trail: &str, text: &str) -> String {
        hex::encode(self.absorb(domain, trail, text).finalize().into_bytes())
    }

    /// Whether `mac_hex` is the MAC of `text`, compared in constant time.
    pub fn verify(&self, domain: Domain, trail: &str, text: &str, mac_hex: &str) -> bool {
        match hex::decode(mac_hex) {
            Ok(bytes) => self
                .absorb(domain, trail, text)
                .verify_slice(&bytes)
                .is_ok(),
            Err(_) => false,
        }
    }

    fn absorb(&self, domain: Domain, trail: &str, text: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        // Length-prefixed fields: no two (trail, text) pairs feed the same bytes.
        for field in [domain.tag(), trail.as_bytes(), text.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(text: &str) -> ChainKey {
        ChainKey::new(&SecretString::from(text.to_owned())).unwrap()
    }

    #[test]
    fn short_keys_are_refused_and_the_key_is_not_printed() {
        let err = ChainKey::new(&SecretString::from("short".to_owned())).unwrap_err();
        assert!(err.to_string().contains("AUDIT_CHAIN_KEY"), "{err}");
        let k = key("0123456789abcdef0123456789abcdef");
        assert!(!format!("{k:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_mac_depends_on_key_trail_domain_and_text() {
        let a = key("0123456789abcdef0123456789abcdef");
        let b = key("0123456789abcdef0123456789abcdeX");
        let m = a.mac(Domain::Entry, "trail:task:1", "{}");
        assert_eq!(m.len(), 64);
        assert!(a.verify(Domain::Entry, "trail:task:1", "{}", &m));
        assert_ne!(m, b.mac(Domain::Entry, "trail:task:1", "{}"));
        assert_ne!(m, a.mac(Domain::Entry, "trail:task:2", "{}"));
        assert_ne!(m, a.mac(Domain::Checkpoint, "trail:task:1", "{}"));
        assert!(!a.verify(Domain::Entry, "trail:task:1", "{} ", &m));
        assert!(!a.verify(Domain::Entry, "trail:task:1", "{}", "not hex"));
    }
}
