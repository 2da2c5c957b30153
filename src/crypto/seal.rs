//! The key hierarchy and record sealing.
//!
//! A random 256-bit master key (MK) is wrapped under the passphrase-derived KEK. From
//! the MK, HKDF-SHA256 derives one subkey per purpose: sealing records, computing the
//! lookup index, and MACing the audit chain and backups. Every record is sealed with
//! XChaCha20-Poly1305 under a random 192-bit nonce, with its tree name and database key
//! as associated data, so a record moved elsewhere fails to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::random_bytes;
use crate::error::{Error, Result};

/// Bytes of nonce in front of every sealed value.
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of authentication tag at the end of every sealed value.
pub(crate) const TAG_LEN: usize = 16;

/// An XChaCha20-Poly1305 key that seals and opens values with associated data.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        SealKey(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The key is exactly 32 bytes by type, so this cannot fail.
        XChaCha20Poly1305::new(&(*self.0).into())
    }

    /// Seals `plaintext`: returns nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        self.seal_with_nonce(nonce, aad, plaintext)
    }

    /// [`SealKey::seal`] under a nonce the caller drew from the system CSPRNG (e.g. from a
    /// [`crate::crypto::RandomBlock`]): it must never have been used before.
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice_ref(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Internal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a sealed value. Any change to it or to `aad` is an integrity error.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Integrity("sealed value is too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice_ref(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Integrity("a sealed value failed to authenticate".into()))
    }
}

trait FromSliceRef {
    fn from_slice_ref(slice: &[u8]) -> &Self;
}

impl FromSliceRef for XNonce {
    fn from_slice_ref(slice: &[u8]) -> &Self {
        // Callers pass exactly NONCE_LEN bytes (split_at / fixed array).
        <&XNonce>::try_from(slice).unwrap_or_else(|_| unreachable!("nonce length is fixed"))
    }
}

/// An HMAC-SHA256 key for one purpose (the lookup index, or the audit/backup MAC).
pub struct MacKey(Zeroizing<[u8; 32]>);

type HmacSha256 = Hmac<Sha256>;

impl MacKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        MacKey(bytes)
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        <HmacSha256 as hmac::KeyInit>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The MAC of a sequence of fields, each length-prefixed so the encoding is
    /// unambiguous.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.hmac();
        for part in parts {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m.finalize().into_bytes().into()
    }

    /// An incremental MAC over a stream of bytes (a backup file), under a domain label.
    pub fn stream(&self, domain: &[u8]) -> MacStream {
        let mut m = self.hmac();
        m.update(&(domain.len() as u64).to_be_bytes());
        m.update(domain);
        MacStream(m)
    }

    /// Checks a MAC in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.mac(parts);
        expected.ct_eq(tag).into()
    }
}

/// An HMAC-SHA256 computed over bytes as they stream by.
pub struct MacStream(HmacSha256);

impl MacStream {
    /// Feeds `bytes` to the MAC, in the order they are written.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The HMAC-SHA256 over everything fed to it.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }

    /// Checks the MAC against `tag` in constant time.
    pub fn verify(self, tag: &[u8]) -> bool {
        self.finish().ct_eq(tag).into()
    }
}

/// The vault's 256-bit master key.
pub struct MasterKey(Zeroizing<[u8; 32]>);

/// The subkeys derived from the master key, one per purpose.
pub struct Keyring {
    /// Seals every record of the database (format 4 and later).
    pub records: SealKey,
    /// Computes database keys from user ids and key names.
    pub index: MacKey,
    /// MACs the audit chain and backup files.
    pub mac: MacKey,
    /// MACs the vault's header file (format version, vault id, KDF parameters).
    pub header: MacKey,
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self> {
        let mut mk = Zeroizing::new([0u8; 32]);
        random_bytes(mk.as_mut())?;
        Ok(MasterKey(mk))
    }

    /// Rebuilds a master key from its bytes (as passed from `unlock` to the agent over
    /// a pipe).
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        MasterKey(bytes)
    }

    /// The key's bytes, to hand to the agent over a pipe. Never log or store them.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0)
    }

    /// Seals the master key under a KEK.
    pub(crate) fn wrap(&self, kek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>> {
        SealKey(Zeroizing::new(*kek)).seal(aad, self.0.as_ref())
    }

    /// Opens a wrapped master key. `None` means the KEK (the passphrase) is wrong or the
    /// wrapped key was altered; the two cannot be told apart.
    pub fn unwrap(kek: &[u8; 32], aad: &[u8], wrapped: &[u8]) -> Option<Self> {
        let plain = SealKey(Zeroizing::new(*kek)).open(aad, wrapped).ok()?;
        let bytes: [u8; 32] = plain.as_slice().try_into().ok()?;
        Some(MasterKey(Zeroizing::new(bytes)))
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"keyvault master key v1"), self.0.as_ref());
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(info, okm.as_mut())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
        okm
    }

    /// Derives the subkeys of the current vault format (4 and later).
    ///
    /// Format 4 seals records under a sealing key of its own: no record of a format-4
    /// vault opens under the key of formats 1 to 3, so an older format's migration step
    /// can never be made to run over newer data by relabelling the format.
    pub fn keyring(&self) -> Keyring {
        Keyring {
            records: SealKey(self.derive(b"keyvault v4 record sealing")),
            ..self.legacy_keyring()
        }
    }

    /// The subkeys of formats 1 to 3 (read only by the migration to format 4 and by
    /// backups made from such vaults). The lookup index and audit MAC keys are the same
    /// in every format, so database keys and the audit chain carry over unchanged.
    pub(crate) fn legacy_keyring(&self) -> Keyring {
        Keyring {
            records: SealKey(self.derive(b"keyvault v1 record sealing")),
            index: MacKey(self.derive(b"keyvault v1 lookup index")),
            mac: MacKey(self.derive(b"keyvault v1 audit and backup mac")),
            header: MacKey(self.derive(b"keyvault v4 header mac")),
        }
    }

    /// The subkeys of a vault of `format`.
    pub(crate) fn keyring_for_format(&self, format: u32) -> Keyring {
        if format >= 4 {
            self.keyring()
        } else {
            self.legacy_keyring()
        }
    }
}

/// The associated data of a record: the tree it lives in and its database key.
pub(crate) fn record_aad(tree: &str, db_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + tree.len() + db_key.len());
    aad.extend_from_slice(b"keyvault/v1\0");
    aad.extend_from_slice(tree.as_bytes());
    aad.push(0);
    aad.extend_from_slice(db_key);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey(Zeroizing::new([7u8; 32]))
    }

    #[test]
    fn seal_open_round_trip() {
        let sealed = key().seal(b"aad", b"secret").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(key().open(b"aad", &sealed).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn other_aad_or_flipped_bit_fails() {
        let sealed = key().seal(&record_aad("keys", b"a"), b"secret").unwrap();
        assert!(key().open(&record_aad("keys", b"b"), &sealed).is_err());
        assert!(key().open(&record_aad("revoked", b"a"), &sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key().open(&record_aad("keys", b"a"), &bad).is_err());
        }
        assert!(key().open(b"", &sealed[..10]).is_err());
    }

    #[test]
    fn wrap_unwrap_and_subkeys_differ() {
        let mk = MasterKey::generate().unwrap();
        let wrapped = mk.wrap(&[1u8; 32], b"h").unwrap();
        assert!(MasterKey::unwrap(&[2u8; 32], b"h", &wrapped).is_none());
        let back = MasterKey::unwrap(&[1u8; 32], b"h", &wrapped).unwrap();
        assert_eq!(*back.0, *mk.0);
        let ring = mk.keyring();
        assert_ne!(*ring.records.0, *ring.index.0);
        assert_ne!(*ring.index.0, *ring.mac.0);
    }

    #[test]
    fn mac_fields_are_unambiguous() {
        let k = MacKey(Zeroizing::new([3u8; 32]));
        assert_ne!(k.mac(&[b"ab", b"c"]), k.mac(&[b"a", b"bc"]));
        let t = k.mac(&[b"x"]);
        assert!(k.verify(&[b"x"], &t));
        assert!(!k.verify(&[b"y"], &t));
    }
}
