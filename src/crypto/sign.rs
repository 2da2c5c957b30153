//! Signatures: RSA (PSS-SHA256 by default, or PKCS#1 v1.5-SHA256) and Ed25519.
//!
//! - RSA-PSS signs with MGF1-SHA256 and a salt as long as the digest (32 bytes), what
//!   RFC 8017 recommends and Python's `PSS.DIGEST_LENGTH` gives. Verification accepts any
//!   salt length, recovered from the encoded message, so signatures made with Python's
//!   `PSS.MAX_LENGTH` (the salt its documentation recommends) verify too; the rsa crate's
//!   plain `pss_verify` requires a 32-byte salt and would reject them.
//! - RSA PKCS#1 v1.5 with SHA-256 (`--scheme pkcs1v15`): deterministic.
//! - Ed25519 (RFC 8032, pure): verification is `verify_strict` (canonical S, no small-order
//!   key or R), which every signature from an honest signer passes.
//!
//! RSA signs a SHA-256 digest, so [`sign_digest`] and [`verify_digest`] take the digest
//! computed elsewhere (a client hashes a large file and sends the agent 32 bytes);
//! Ed25519 hashes the whole message twice inside the algorithm and has no such form.
//!
//! Verification answers `Ok(true)` or `Ok(false)`; `Ok(false)` covers every signature that
//! does not verify, whatever its length (exit 1 at the command line). Errors are for the
//! rest: a key type that does not sign, a scheme that does not fit the key, or a stored
//! key that does not decode. An empty signature is one that does not verify.

use ed25519_dalek::Signer as _;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::hazmat::PrehashVerifier as _;
use sha2::Digest as _;
use sha2::Sha256;

use super::ed25519_keys;
use super::keys::{KeyMaterial, PssConstraints};
use crate::error::{Error, KeyFamily, KeyPart, Result};
use crate::keytype::{KeyType, KeyUse};

/// The RSA signature scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RsaScheme {
    /// RSASSA-PSS with SHA-256, MGF1-SHA256 and a 32-byte salt (the default).
    #[default]
    Pss,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (deterministic; for verifiers that know no PSS).
    Pkcs1v15,
}

impl RsaScheme {
    /// The name users type (`--scheme`).
    pub fn as_str(self) -> &'static str {
        match self {
            RsaScheme::Pss => "pss",
            RsaScheme::Pkcs1v15 => "pkcs1v15",
        }
    }
}

impl std::str::FromStr for RsaScheme {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pss" => Ok(RsaScheme::Pss),
            "pkcs1v15" => Ok(RsaScheme::Pkcs1v15),
            other => Err(Error::Usage(format!(
                "unknown signature scheme {other:?}; expected pss or pkcs1v15"
            ))),
        }
    }
}

/// The RSA private key of stored material.
pub(crate) fn rsa_private(key_type: KeyType, material: &KeyMaterial) -> Result<rsa::PrivateKey> {
    if material.secret.is_empty() {
        return Err(Error::Usage(format!(
            "this {key_type} key is public-only: it has no private key"
        )));
    }
    rsa::PrivateKey::from_pkcs8_der(&material.secret).map_err(|_| Error::DamagedKey {
        family: Some(KeyFamily::Rsa),
        part: KeyPart::Private,
    })
}

/// The RSA public key of stored material, for encryption: an RSASSA-PSS key (which
/// verifies PSS signatures only) is refused.
pub(crate) fn rsa_public(material: &KeyMaterial) -> Result<rsa::PublicKey> {
    match rsa_public_constrained(material)? {
        (key, None) => Ok(key),
        (_, Some(_)) => Err(Error::PssOnlyKey),
    }
}

/// The RSA public key of stored material, with the constraints of an RSASSA-PSS key.
fn rsa_public_constrained(
    material: &KeyMaterial,
) -> Result<(rsa::PublicKey, Option<PssConstraints>)> {
    let der = material.public.as_ref().ok_or(Error::MissingPublicKey)?;
    super::keys::rsa_public_spki(der)
}

/// The salt length of a PSS signature that verified (RFC 8017, 9.1.2): the public-key
/// operation gives the encoded message, whose data block, unmasked, is zeros, 0x01 and
/// the salt.
fn pss_salt_len(key: &rsa::PublicKey, signature: &[u8]) -> Option<usize> {
    use rsa::traits::PublicKeyParts as _;
    let s = rsa::BoxedUint::from_be_slice(signature, key.n_bits_precision()).ok()?;
    let m = rsa::hazmat::rsa_encrypt(key, &s).ok()?.to_be_bytes();
    let em_bits = (key.n().as_ref().bit_width() as usize).checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    let em = m.get(m.len().checked_sub(em_len)?..)?;
    let db_len = em_len.checked_sub(32 + 1)?;
    let (masked, rest) = em.split_at(db_len);
    let h = rest.get(..32)?;
    let mut db = masked.to_vec();
    super::oaep::mgf1_xor(h, &mut db);
    if let Some(first) = db.first_mut() {
        *first &= 0xff >> (8 * em_len - em_bits);
    }
    let one = db.iter().position(|&b| b != 0)?;
    (db[one] == 1).then(|| db_len - one - 1)
}

fn check_scheme(key_type: KeyType, scheme: Option<RsaScheme>) -> Result<RsaScheme> {
    match scheme {
        Some(scheme) if !key_type.is_rsa() => Err(Error::SchemeNotApplicable { scheme, key_type }),
        s => Ok(s.unwrap_or_default()),
    }
}

/// Signs `message` with the private key of `material`. `scheme` is for RSA keys only
/// (`None`: PSS). Returns the raw signature (RSA: the modulus size; Ed25519: 64 bytes).
pub fn sign(
    key_type: KeyType,
    material: &KeyMaterial,
    scheme: Option<RsaScheme>,
    message: &[u8],
) -> Result<Vec<u8>> {
    key_type.check_use(KeyUse::Sign)?;
    let scheme = check_scheme(key_type, scheme)?;
    if key_type == KeyType::Ed25519 {
        let key = ed25519_keys::signing_key(material)?;
        return Ok(key.sign(message).to_bytes().to_vec());
    }
    // RSA signs the message's SHA-256 digest: one code path for both.
    sign_digest(key_type, material, Some(scheme), &Sha256::digest(message))
}

/// Verifies `signature` over `message` with the public key of `material`: `Ok(true)` if
/// it verifies, `Ok(false)` if not. RSA-PSS accepts any salt length.
pub fn verify(
    key_type: KeyType,
    material: &KeyMaterial,
    scheme: Option<RsaScheme>,
    message: &[u8],
    signature: &[u8],
) -> Result<bool> {
    key_type.check_use(KeyUse::Verify)?;
    let scheme = check_scheme(key_type, scheme)?;
    if signature.is_empty() {
        return Ok(false);
    }
    if key_type == KeyType::Ed25519 {
        let key = ed25519_keys::verifying_key(material)?;
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return Ok(false);
        };
        return Ok(key.verify_strict(message, &sig).is_ok());
    }
    verify_digest(
        key_type,
        material,
        Some(scheme),
        &Sha256::digest(message),
        signature,
    )
}

/// The length of the digest [`sign_digest`] and [`verify_digest`] take (SHA-256).
pub(crate) const DIGEST_LEN: usize = 32;

fn digest_signer(key_type: KeyType, digest: &[u8]) -> Result<()> {
    if !key_type.is_rsa() {
        return Err(Error::Usage(format!(
            "{key_type} keys sign the whole message, not a digest of it"
        )));
    }
    if digest.len() != DIGEST_LEN {
        return Err(Error::Usage(format!(
            "a SHA-256 digest is {DIGEST_LEN} bytes, not {}",
            digest.len()
        )));
    }
    Ok(())
}

/// Signs the SHA-256 `digest` of a message with the private key of `material` (RSA
/// only): the same signature [`sign`] makes over the message.
pub fn sign_digest(
    key_type: KeyType,
    material: &KeyMaterial,
    scheme: Option<RsaScheme>,
    digest: &[u8],
) -> Result<Vec<u8>> {
    key_type.check_use(KeyUse::Sign)?;
    let scheme = check_scheme(key_type, scheme)?;
    digest_signer(key_type, digest)?;
    let key = rsa_private(key_type, material)?;
    match scheme {
        RsaScheme::Pss => key.pss_sign_prehash::<Sha256>(digest),
        RsaScheme::Pkcs1v15 => key.pkcs1v15_sign_prehash::<Sha256>(digest),
    }
    .map_err(|e| Error::Internal(format!("RSA signing failed: {e}")))
}

/// Verifies `signature` over the message whose SHA-256 digest is `digest` (RSA only),
/// as [`verify`] does over the message.
pub fn verify_digest(
    key_type: KeyType,
    material: &KeyMaterial,
    scheme: Option<RsaScheme>,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool> {
    key_type.check_use(KeyUse::Verify)?;
    let scheme = check_scheme(key_type, scheme)?;
    digest_signer(key_type, digest)?;
    if signature.is_empty() {
        return Ok(false);
    }
    let (key, constraints) = rsa_public_constrained(material)?;
    if constraints.is_some() && scheme != RsaScheme::Pss {
        return Err(Error::PssOnlyKey);
    }
    Ok(match scheme {
        RsaScheme::Pss => {
            let Ok(sig) = rsa::pss::Signature::try_from(signature) else {
                return Ok(false);
            };
            let valid = rsa::pss::VerifyingKey::<Sha256>::new_with_auto_salt_len(key.clone())
                .verify_prehash(digest, &sig)
                .is_ok();
            // The key's parameters set the shortest salt its signatures may have.
            valid
                && constraints.is_none_or(|c| {
                    pss_salt_len(&key, signature).is_some_and(|n| n >= c.min_salt_len)
                })
        }
        RsaScheme::Pkcs1v15 => key
            .pkcs1v15_verify_prehash::<Sha256>(digest, signature)
            .is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::{generate, import};
    use crate::crypto::python_vectors as py;
    use rsa::signature::RandomizedSigner as _;
    use rsa::traits::PublicKeyParts as _;

    fn python_rsa() -> KeyMaterial {
        import(KeyType::Rsa2048, py::pem(0).as_bytes(), false).unwrap()
    }

    #[test]
    fn python_signatures_verify_including_pss_max_length() {
        let m = python_rsa();
        for (name, scheme) in [
            ("PSSMAX", None),
            ("PSSDIG", Some(RsaScheme::Pss)),
            ("PKCS", Some(RsaScheme::Pkcs1v15)),
        ] {
            let sig = py::bytes(name);
            assert!(
                verify(KeyType::Rsa2048, &m, scheme, py::MESSAGE, &sig).unwrap(),
                "{name}"
            );
            assert!(
                !verify(KeyType::Rsa2048, &m, scheme, b"another message", &sig).unwrap(),
                "{name}"
            );
        }
        // The trap: the crate's default PSS verifier insists on a 32-byte salt.
        let public = rsa_public(&m).unwrap();
        assert!(
            public
                .pss_verify::<Sha256>(py::MESSAGE, &py::bytes("PSSMAX"))
                .is_err()
        );
        // Schemes are not interchangeable.
        assert!(
            !verify(
                KeyType::Rsa2048,
                &m,
                Some(RsaScheme::Pkcs1v15),
                py::MESSAGE,
                &py::bytes("PSSMAX")
            )
            .unwrap()
        );
        let ed = import(KeyType::Ed25519, py::pem(1).as_bytes(), false).unwrap();
        assert!(verify(KeyType::Ed25519, &ed, None, py::MESSAGE, &py::bytes("ESIG")).unwrap());
    }

    #[test]
    fn pss_verify_accepts_any_salt_length() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let private = rsa_private(KeyType::Rsa2048, &m).unwrap();
        let em_len = (private.n().as_ref().bit_width() as usize - 1).div_ceil(8);
        let max_salt = em_len - 32 - 2;
        assert_eq!(max_salt, 222);
        for salt in [0, 20, 32, 64, max_salt] {
            let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(private.clone(), salt);
            let sig = signer
                .try_sign_with_rng(&mut getrandom::SysRng, b"msg")
                .unwrap();
            let sig: Box<[u8]> = sig.into();
            assert!(
                verify(KeyType::Rsa2048, &m, None, b"msg", &sig).unwrap(),
                "salt {salt}"
            );
            let strict = rsa_public(&m).unwrap().pss_verify::<Sha256>(b"msg", &sig);
            assert_eq!(strict.is_ok(), salt == 32, "salt {salt}");
        }
    }

    #[test]
    fn a_digest_signs_and_verifies_as_its_message_does() {
        use sha2::Digest as _;
        let m = generate(KeyType::Rsa2048).unwrap();
        let digest = Sha256::digest(b"a long file");
        for scheme in [None, Some(RsaScheme::Pkcs1v15)] {
            let sig = sign_digest(KeyType::Rsa2048, &m, scheme, &digest).unwrap();
            assert!(verify(KeyType::Rsa2048, &m, scheme, b"a long file", &sig).unwrap());
            let whole = sign(KeyType::Rsa2048, &m, scheme, b"a long file").unwrap();
            assert!(verify_digest(KeyType::Rsa2048, &m, scheme, &digest, &whole).unwrap());
            assert!(!verify_digest(KeyType::Rsa2048, &m, scheme, &[0; 32], &whole).unwrap());
        }
        // PKCS#1 v1.5 is deterministic: the very same bytes.
        let p = python_rsa();
        let digest = Sha256::digest(py::MESSAGE);
        assert_eq!(
            sign_digest(KeyType::Rsa2048, &p, Some(RsaScheme::Pkcs1v15), &digest).unwrap(),
            py::bytes("PKCS")
        );
        let ed = generate(KeyType::Ed25519).unwrap();
        assert!(matches!(
            sign_digest(KeyType::Ed25519, &ed, None, &digest),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        assert!(matches!(
            sign_digest(KeyType::Rsa2048, &m, None, &digest[..31]),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
    }

    #[test]
    fn our_pss_uses_a_32_byte_salt() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let sig = sign(KeyType::Rsa2048, &m, None, b"data").unwrap();
        assert_eq!(sig.len(), 256);
        // The crate's strict verifier (salt = digest length) accepts it.
        assert!(
            rsa_public(&m)
                .unwrap()
                .pss_verify::<Sha256>(b"data", &sig)
                .is_ok()
        );
        // PSS is randomized.
        assert_ne!(sig, sign(KeyType::Rsa2048, &m, None, b"data").unwrap());
        // PKCS#1 v1.5 is deterministic and verifies against the python key too.
        let p = python_rsa();
        let a = sign(KeyType::Rsa2048, &p, Some(RsaScheme::Pkcs1v15), py::MESSAGE).unwrap();
        assert_eq!(a, py::bytes("PKCS"), "same bytes as OpenSSL");
    }

    #[test]
    fn tampered_or_malformed_signatures_are_false() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let ed = generate(KeyType::Ed25519).unwrap();
        for (kt, mat, scheme) in [
            (KeyType::Rsa2048, &m, None),
            (KeyType::Rsa2048, &m, Some(RsaScheme::Pkcs1v15)),
            (KeyType::Ed25519, &ed, None),
        ] {
            let sig = sign(kt, mat, scheme, b"hello").unwrap();
            assert!(verify(kt, mat, scheme, b"hello", &sig).unwrap());
            for i in [0, sig.len() / 2, sig.len() - 1] {
                let mut bad = sig.clone();
                bad[i] ^= 0x04;
                assert!(
                    !verify(kt, mat, scheme, b"hello", &bad).unwrap(),
                    "{kt} byte {i}"
                );
            }
            assert!(!verify(kt, mat, scheme, b"hello", &sig[..sig.len() - 1]).unwrap());
            let mut long = sig.clone();
            long.push(0);
            assert!(!verify(kt, mat, scheme, b"hello", &long).unwrap());
            assert!(!verify(kt, mat, scheme, b"hello", &vec![0xff; 100_000]).unwrap());
            // An empty signature is one that does not verify (exit 1), not a usage error.
            assert!(!verify(kt, mat, scheme, b"hello", &[]).unwrap());
        }
        // Another key's signature.
        let other = generate(KeyType::Ed25519).unwrap();
        let sig = sign(KeyType::Ed25519, &other, None, b"x").unwrap();
        assert!(!verify(KeyType::Ed25519, &ed, None, b"x", &sig).unwrap());
    }

    /// DER: a tag, its length, its content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// The SPKI of an RSASSA-PSS key as OpenSSL writes it (`genpkey -algorithm RSA-PSS`
    /// with SHA-256, MGF1-SHA-256 and a salt length), or with another hash.
    fn pss_spki(key: &rsa::PublicKey, salt: u8, hash_oid: &[u8]) -> Vec<u8> {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        let oid = |der: &[u8]| tlv(0x06, der);
        let sha = [oid(hash_oid), vec![0x05, 0x00]].concat();
        let sha_ai = tlv(0x30, &sha);
        let mgf1 = oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08]);
        let params = [
            tlv(0xa0, &sha_ai),
            tlv(0xa1, &tlv(0x30, &[mgf1, sha_ai.clone()].concat())),
            tlv(0xa2, &tlv(0x02, &[salt])),
        ]
        .concat();
        let pss = oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]);
        let ai = tlv(0x30, &[pss, tlv(0x30, &params)].concat());
        let pkcs1 = key.to_pkcs1_der().unwrap().as_bytes().to_vec();
        let bits = tlv(0x03, &[&[0u8][..], &pkcs1].concat());
        tlv(0x30, &[ai, bits].concat())
    }

    const SHA256_OID: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

    #[test]
    fn an_rsassa_pss_public_key_verifies_pss_only_with_its_salt_constraint() {
        use crate::crypto::keys::{ExportFormat, export};
        let m = generate(KeyType::Rsa2048).unwrap();
        let private = rsa_private(KeyType::Rsa2048, &m).unwrap();
        let spki = pss_spki(&private.to_public_key(), 32, &SHA256_OID);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        for input in [pem.as_bytes(), spki.as_slice(), b64.as_bytes()] {
            // Public only, and kept as given (its parameters are its constraints).
            assert!(matches!(
                import(KeyType::Rsa2048, input, false),
                Err(e) if e.exit_code() == crate::error::Exit::Usage
            ));
            let k = import(KeyType::Rsa2048, input, true).unwrap();
            assert_eq!(k.public.as_deref(), Some(spki.as_slice()));
        }
        let k = import(KeyType::Rsa2048, pem.as_bytes(), true).unwrap();
        let sign_with = |salt: usize| {
            let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(private.clone(), salt);
            let sig: Box<[u8]> = signer
                .try_sign_with_rng(&mut getrandom::SysRng, b"msg")
                .unwrap()
                .into();
            sig.to_vec()
        };
        assert!(verify(KeyType::Rsa2048, &k, None, b"msg", &sign_with(32)).unwrap());
        assert!(verify(KeyType::Rsa2048, &k, None, b"msg", &sign_with(64)).unwrap());
        assert!(!verify(KeyType::Rsa2048, &k, None, b"other", &sign_with(32)).unwrap());
        // A salt shorter than the key allows: invalid, though the plain key takes it.
        assert!(!verify(KeyType::Rsa2048, &k, None, b"msg", &sign_with(20)).unwrap());
        assert!(verify(KeyType::Rsa2048, &m, None, b"msg", &sign_with(20)).unwrap());
        // The same from the message's digest (as through the agent).
        let digest = <Sha256 as sha2::Digest>::digest(b"msg");
        assert!(verify_digest(KeyType::Rsa2048, &k, None, &digest, &sign_with(32)).unwrap());
        assert!(!verify_digest(KeyType::Rsa2048, &k, None, &digest, &sign_with(20)).unwrap());
        assert!(!verify_digest(KeyType::Rsa2048, &k, None, &digest, &[]).unwrap());
        let v15 = sign(KeyType::Rsa2048, &m, Some(RsaScheme::Pkcs1v15), b"msg").unwrap();
        assert!(matches!(
            verify(
                KeyType::Rsa2048,
                &k,
                Some(RsaScheme::Pkcs1v15),
                b"msg",
                &v15
            ),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        // It neither encrypts nor loses its parameters on export.
        assert!(matches!(
            crate::crypto::oaep::encrypt(KeyType::Rsa2048, &k, b"x"),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let out = export(KeyType::Rsa2048, &k, true, ExportFormat::Pem).unwrap();
        assert_eq!(out.as_slice(), pem_lines(&b64).as_bytes());
        assert_eq!(
            export(KeyType::Rsa2048, &k, true, ExportFormat::Der)
                .unwrap()
                .as_slice(),
            spki.as_slice()
        );
        assert!(matches!(
            export(KeyType::Rsa2048, &k, true, ExportFormat::Jwk),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        // Parameters asking for SHA-1 (or with none: SHA-1 by default) are refused.
        let sha1 = [0x2b, 0x0e, 0x03, 0x02, 0x1a];
        let spki1 = pss_spki(&private.to_public_key(), 32, &sha1);
        match import(KeyType::Rsa2048, &spki1, true) {
            Err(Error::Usage(msg)) => assert!(msg.contains("SHA-256"), "{msg}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    fn pem_lines(b64: &str) -> String {
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(line).unwrap());
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    #[test]
    fn ed25519_rfc8032_test_1() {
        let seed: [u8; 32] =
            py_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let m = ed25519_keys::material_from_seed(&seed).unwrap();
        let sig = sign(KeyType::Ed25519, &m, None, b"").unwrap();
        let expected: [u8; 64] = py_hex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        );
        assert_eq!(sig, expected);
        assert!(verify(KeyType::Ed25519, &m, None, b"", &sig).unwrap());
    }

    fn py_hex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn wrong_key_type_scheme_or_public_only_is_usage() {
        let f = generate(KeyType::Fernet).unwrap();
        match sign(KeyType::Fernet, &f, None, b"x") {
            Err(e @ Error::UnsupportedUse { .. }) => {
                let m = e.to_string();
                assert!(m.contains("use an rsa or ed25519 key"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verify(KeyType::Aes256Gcm, &f, None, b"x", b"sig"),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let ed = generate(KeyType::Ed25519).unwrap();
        assert!(matches!(
            sign(KeyType::Ed25519, &ed, Some(RsaScheme::Pkcs1v15), b"x"),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let p = python_rsa();
        let public_only = KeyMaterial {
            secret: zeroize::Zeroizing::new(Vec::new()),
            public: p.public.clone(),
        };
        assert!(matches!(
            sign(KeyType::Rsa2048, &public_only, None, b"x"),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        assert!(
            verify(
                KeyType::Rsa2048,
                &public_only,
                None,
                py::MESSAGE,
                &py::bytes("PSSMAX")
            )
            .unwrap()
        );
        assert_eq!(
            "pkcs1v15".parse::<RsaScheme>().unwrap(),
            RsaScheme::Pkcs1v15
        );
        assert!(
            matches!("pss2".parse::<RsaScheme>(), Err(e) if e.exit_code() == crate::error::Exit::Usage)
        );
    }
}
