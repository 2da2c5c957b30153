//! JSON Web Keys (RFC 7517): export and import of every key type.
//!
//! - RSA (RFC 7518, section 6.3): `{"kty":"RSA","n","e"}` for a public key; a private key adds
//!   `d`, `p`, `q`, `dp`, `dq`, `qi` (two-prime keys only; `oth` is refused).
//! - Ed25519 (RFC 8037, section 2): `{"kty":"OKP","crv":"Ed25519","x"}`, and `d` (the 32-byte seed)
//!   for a private key.
//! - Symmetric keys (RFC 7518, section 6.4): `{"kty":"oct","k"}` with the 32 key bytes.
//!
//! Every binary member is base64url without padding (RFC 7515, section 2; integers big-endian with
//! no leading zero octets, RFC 7518, section 2). Exports add `"kid"`, the key's fingerprint, the
//! same for a private key and its public half. The document is compact JSON and a newline,
//! built in a zeroizing buffer (no `serde_json::Value` holds a secret).
//!
//! Import reads the same documents (a JWK we exported re-imports to the same key), ignores
//! members it does not use (`kid`, `alg`, `use`, `key_ops`, …), and refuses with a usage
//! error a JWK whose `kty`, `crv` or size does not fit the requested key type, saying what
//! was expected. An RSA private JWK must be consistent: its `dp`, `dq` and `qi` must be the
//! ones its `d`, `p` and `q` give.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use rsa::pkcs1::{RsaPrivateKeyRef, RsaPublicKeyRef, UintRef};
use rsa::pkcs8::der::Decode as _;
use rsa::pkcs8::{PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use serde::Deserialize;
use serde::de::IgnoredAny;
use zeroize::Zeroizing;

use super::ed25519_keys;
use super::material::{self, KeyMaterial};
use super::rsa_keys::{self, Parsed};
use crate::error::{Error, KeyFamily, KeyPart, PublicKeyForm, Result};
use crate::keytype::KeyType;

/// Whether `input` looks like a JSON object (its first non-blank byte is `{`), so that
/// import reads it as a JWK.
pub(crate) fn looks_like_jwk(input: &[u8]) -> bool {
    input
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// A JSON document being written: members are appended in order. The buffer is reserved
/// up front so that it never reallocates (a reallocation would leave a copy of secrets).
struct Writer {
    out: Zeroizing<Vec<u8>>,
    first: bool,
}

impl Writer {
    fn new() -> Self {
        let mut out = Zeroizing::new(Vec::with_capacity(8192));
        out.push(b'{');
        Writer { out, first: true }
    }

    /// Makes room for `extra` more bytes. Growing moves the text into a fresh zeroizing
    /// buffer (the old one is wiped on drop), so a reallocation leaves no copy behind.
    fn reserve(&mut self, extra: usize) {
        let needed = self.out.len() + extra;
        if self.out.capacity() < needed {
            let mut bigger = Zeroizing::new(Vec::with_capacity(2 * needed));
            bigger.extend_from_slice(&self.out);
            self.out = bigger;
        }
    }

    fn key(&mut self, name: &str) {
        self.reserve(name.len() + 5);
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":\"");
    }

    /// A member whose value is plain text that needs no JSON escaping (a name or a
    /// fingerprint: letters, digits, `-`, `+`, `/`, `:`, `=`).
    fn text(&mut self, name: &str, value: &str) {
        debug_assert!(!value.contains(['"', '\\']));
        self.key(name);
        self.reserve(value.len() + 1);
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// A member whose value is base64url (no padding) of `bytes`.
    fn bytes(&mut self, name: &str, bytes: &[u8]) {
        self.key(name);
        let len = bytes.len().div_ceil(3) * 4;
        self.reserve(len + 1);
        let start = self.out.len();
        self.out.resize(start + len, 0);
        // Room for the padded length, which is at least the unpadded one.
        let written = URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut self.out[start..])
            .unwrap_or(0);
        self.out.truncate(start + written);
        self.out.push(b'"');
    }

    fn finish(mut self) -> Zeroizing<Vec<u8>> {
        self.reserve(2);
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

/// The PKCS#1 fields of a stored RSA private key (PKCS#8 DER).
fn rsa_private_fields(pkcs8: &[u8]) -> Result<RsaPrivateKeyRef<'_>> {
    let bad = || Error::DamagedKey {
        family: Some(KeyFamily::Rsa),
        part: KeyPart::Private,
    };
    let info = PrivateKeyInfoRef::from_der(pkcs8).map_err(|_| bad())?;
    RsaPrivateKeyRef::try_from(info.private_key).map_err(|_| bad())
}

/// The PKCS#1 fields of a stored RSA public key (SPKI DER).
fn rsa_public_fields(spki: &[u8]) -> Result<RsaPublicKeyRef<'_>> {
    let bad = || Error::DamagedKey {
        family: Some(KeyFamily::Rsa),
        part: KeyPart::Public,
    };
    let info = SubjectPublicKeyInfoRef::from_der(spki).map_err(|_| bad())?;
    let bits = info.subject_public_key.as_bytes().ok_or_else(bad)?;
    RsaPublicKeyRef::from_der(bits).map_err(|_| bad())
}

/// Exports a key as a JWK: the private key, or with `public` its public half only.
pub fn export(
    key_type: KeyType,
    material: &KeyMaterial,
    public: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    let kid = material::fingerprint(key_type, material);
    let mut w = Writer::new();
    if !key_type.is_asymmetric() {
        if public {
            return Err(Error::Usage(format!(
                "{key_type} keys are symmetric and have no public part"
            )));
        }
        w.text("kty", "oct");
        w.bytes("k", &material.secret);
        w.text("kid", &kid);
        return Ok(w.finish());
    }
    if !public && material.secret.is_empty() {
        return Err(Error::NoPrivatePart);
    }
    let spki = material.public.as_deref().ok_or(Error::MissingPublicKey)?;
    if key_type == KeyType::Ed25519 {
        let verifying = ed25519_keys::verifying_key(material)?;
        w.text("kty", "OKP");
        w.text("crv", "Ed25519");
        w.bytes("x", verifying.as_bytes());
        if !public {
            let seed = ed25519_keys::seed(material)?;
            w.bytes("d", seed.as_ref());
        }
    } else if public {
        let k = rsa_public_fields(spki)?;
        w.text("kty", "RSA");
        w.bytes("n", k.modulus.as_bytes());
        w.bytes("e", k.public_exponent.as_bytes());
    } else {
        let k = rsa_private_fields(&material.secret)?;
        if k.other_prime_infos.is_some() {
            return Err(Error::Usage(
                "multi-prime RSA keys cannot be exported as JWK".into(),
            ));
        }
        w.text("kty", "RSA");
        w.bytes("n", k.modulus.as_bytes());
        w.bytes("e", k.public_exponent.as_bytes());
        w.bytes("d", k.private_exponent.as_bytes());
        w.bytes("p", k.prime1.as_bytes());
        w.bytes("q", k.prime2.as_bytes());
        w.bytes("dp", k.exponent1.as_bytes());
        w.bytes("dq", k.exponent2.as_bytes());
        w.bytes("qi", k.coefficient.as_bytes());
    }
    w.text("kid", &kid);
    Ok(w.finish())
}

/// The members of a JWK that import reads; the others are ignored.
#[derive(Deserialize)]
struct JwkIn {
    kty: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    d: Option<Zeroizing<String>>,
    p: Option<Zeroizing<String>>,
    q: Option<Zeroizing<String>>,
    dp: Option<Zeroizing<String>>,
    dq: Option<Zeroizing<String>>,
    qi: Option<Zeroizing<String>>,
    k: Option<Zeroizing<String>>,
    oth: Option<IgnoredAny>,
    keys: Option<IgnoredAny>,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// A base64url member, decoded (trailing `=` padding is tolerated).
fn member(name: &str, value: Option<&str>) -> Result<Zeroizing<Vec<u8>>> {
    let value = value.ok_or_else(|| usage(format!("the JWK has no {name:?} member")))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| {
            usage(format!(
                "the JWK member {name:?} is not base64url (RFC 7515, section 2)"
            ))
        })
}

fn expected(key_type: KeyType) -> &'static str {
    if key_type == KeyType::Ed25519 {
        "kty \"OKP\" with crv \"Ed25519\""
    } else if key_type.is_rsa() {
        "kty \"RSA\""
    } else {
        "kty \"oct\" with a 256-bit \"k\""
    }
}

/// Parses a JWK (RFC 7517) holding a key of `key_type`. A public JWK (RSA or Ed25519 with
/// no `d`) needs `allow_public_only`.
pub fn import(key_type: KeyType, input: &[u8], allow_public_only: bool) -> Result<KeyMaterial> {
    let jwk: JwkIn = serde_json::from_slice(input).map_err(|e| {
        // The error's text may quote the input: give only its position.
        usage(format!(
            "cannot read the JWK: {} at line {}, column {}; expected a JSON object (RFC 7517) with {}",
            match e.classify() {
                serde_json::error::Category::Data => "a member has the wrong type",
                serde_json::error::Category::Eof => "the JSON is truncated",
                _ => "the JSON is malformed",
            },
            e.line(),
            e.column(),
            expected(key_type)
        ))
    })?;
    if jwk.keys.is_some() {
        return Err(usage(
            "this is a JWK Set (a \"keys\" array): import one key of it as a single JWK object",
        ));
    }
    let kty = jwk.kty.as_deref().unwrap_or("");
    let crv = jwk.crv.as_deref();
    let fits = match key_type {
        KeyType::Ed25519 => kty == "OKP" && crv == Some("Ed25519"),
        t if t.is_rsa() => kty == "RSA",
        _ => kty == "oct",
    };
    if !fits {
        let found = match crv {
            Some(c) => format!("kty {kty:?} with crv {c:?}"),
            None if kty.is_empty() => "no kty".to_string(),
            None => format!("kty {kty:?}"),
        };
        return Err(usage(format!(
            "the JWK does not hold a {key_type} key: type {key_type} expects {}, found {found}",
            expected(key_type)
        )));
    }
    match key_type {
        KeyType::Ed25519 => import_ed25519(&jwk, allow_public_only),
        t => match t.rsa_bits() {
            Some(bits) => import_rsa(t, bits, &jwk, allow_public_only),
            None => import_oct(t, &jwk),
        },
    }
}

fn import_oct(key_type: KeyType, jwk: &JwkIn) -> Result<KeyMaterial> {
    let k = member("k", jwk.k.as_ref().map(|s| s.as_str()))?;
    if k.len() != 32 {
        return Err(usage(format!(
            "the JWK's key is {} bits: type {key_type} expects a 256-bit key",
            k.len() * 8
        )));
    }
    Ok(KeyMaterial {
        secret: k,
        public: None,
    })
}

fn import_ed25519(jwk: &JwkIn, allow_public_only: bool) -> Result<KeyMaterial> {
    let x = member("x", jwk.x.as_deref())?;
    let x: [u8; 32] = x.as_slice().try_into().map_err(|_| {
        usage(format!(
            "the JWK's \"x\" is {} bytes: an Ed25519 public key is 32 bytes",
            x.len()
        ))
    })?;
    let Some(d) = jwk.d.as_ref() else {
        if !allow_public_only {
            return Err(Error::PublicKeyGiven {
                key_type: KeyType::Ed25519,
                form: PublicKeyForm::Jwk,
            });
        }
        let public = ed25519_dalek::VerifyingKey::from_bytes(&x)
            .map_err(|_| usage("the JWK's \"x\" is not an Ed25519 public key"))?;
        ed25519_keys::check_public(&public)?;
        return ed25519_keys::material_from_public(&public);
    };
    let d = member("d", Some(d.as_str()))?;
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(d.as_slice().try_into().map_err(|_| {
        usage(format!(
            "the JWK's \"d\" is {} bytes: an Ed25519 private key is 32 bytes",
            d.len()
        ))
    })?);
    if SigningKey::from_bytes(&seed).verifying_key().to_bytes() != x {
        return Err(usage("the JWK's \"x\" is not the public key of its \"d\""));
    }
    ed25519_keys::material_from_seed(&seed)
}

fn uint<'a>(name: &str, bytes: &'a [u8]) -> Result<UintRef<'a>> {
    if bytes.is_empty() {
        return Err(usage(format!("the JWK member {name:?} is empty")));
    }
    UintRef::new(bytes).map_err(|_| usage(format!("the JWK member {name:?} is too long")))
}

fn import_rsa(
    key_type: KeyType,
    bits: usize,
    jwk: &JwkIn,
    allow_public_only: bool,
) -> Result<KeyMaterial> {
    let n = member("n", jwk.n.as_deref())?;
    let e = member("e", jwk.e.as_deref())?;
    let invalid = || usage("the RSA JWK does not hold a valid RSA key");
    let Some(d) = jwk.d.as_ref() else {
        let public = rsa::PublicKey::try_from(RsaPublicKeyRef {
            modulus: uint("n", &n)?,
            public_exponent: uint("e", &e)?,
        })
        .map_err(|_| invalid())?;
        return rsa_keys::import_rsa_parsed(
            key_type,
            bits,
            Parsed::Public(public),
            allow_public_only,
        );
    };
    if jwk.oth.is_some() {
        return Err(usage("multi-prime RSA keys (\"oth\") are not supported"));
    }
    if jwk.p.is_none() || jwk.q.is_none() {
        return Err(usage(
            "the RSA private JWK has no \"p\" and \"q\": keys without their primes are not supported",
        ));
    }
    let d = member("d", Some(d.as_str()))?;
    let p = member("p", jwk.p.as_ref().map(|s| s.as_str()))?;
    let q = member("q", jwk.q.as_ref().map(|s| s.as_str()))?;
    let dp = member("dp", jwk.dp.as_ref().map(|s| s.as_str()))?;
    let dq = member("dq", jwk.dq.as_ref().map(|s| s.as_str()))?;
    let qi = member("qi", jwk.qi.as_ref().map(|s| s.as_str()))?;
    let given = RsaPrivateKeyRef {
        modulus: uint("n", &n)?,
        public_exponent: uint("e", &e)?,
        private_exponent: uint("d", &d)?,
        prime1: uint("p", &p)?,
        prime2: uint("q", &q)?,
        exponent1: uint("dp", &dp)?,
        exponent2: uint("dq", &dq)?,
        coefficient: uint("qi", &qi)?,
        other_prime_infos: None,
    };
    let private = rsa::PrivateKey::try_from(given.clone()).map_err(|_| invalid())?;
    let material =
        rsa_keys::import_rsa_parsed(key_type, bits, Parsed::Private(Box::new(private)), false)?;
    // The rsa crate recomputes dp, dq and qi: check the JWK's are those.
    let stored = rsa_private_fields(&material.secret)?;
    let same = [
        (given.modulus, stored.modulus),
        (given.public_exponent, stored.public_exponent),
        (given.private_exponent, stored.private_exponent),
        (given.prime1, stored.prime1),
        (given.prime2, stored.prime2),
        (given.exponent1, stored.exponent1),
        (given.exponent2, stored.exponent2),
        (given.coefficient, stored.coefficient),
    ]
    .iter()
    .all(|(a, b)| a.as_bytes() == b.as_bytes());
    if !same {
        return Err(usage(
            "the RSA JWK is inconsistent: its \"dp\", \"dq\" or \"qi\" do not match its \"d\", \"p\" and \"q\"",
        ));
    }
    Ok(material)
}

#[cfg(test)]
mod tests;
