//! The typed facts some errors carry: which kind of key, which part of it, which kind
//! of record, what is wrong with an envelope. Each says in words what it stands for;
//! none names a flag or a command of the binary.

use serde::{Deserialize, Serialize};

use crate::keytype::{KeyType, KeyUse};

/// The kinds of asymmetric key whose encodings keyvault reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyFamily {
    /// RSA keys of any size.
    Rsa,
    /// Ed25519 keys.
    Ed25519,
}

impl std::fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyFamily::Rsa => "RSA",
            KeyFamily::Ed25519 => "ed25519",
        })
    }
}

/// How a public key came where a private one was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicKeyForm {
    /// 32 raw bytes (hex or base64): an Ed25519 public key without any encoding.
    RawEd25519,
    /// A `PUBLIC KEY` (SubjectPublicKeyInfo) or PKCS#1 public key, as PEM or DER.
    Encoded,
    /// An RSASSA-PSS SubjectPublicKeyInfo, which verifies PSS signatures only.
    RsaPss,
    /// A JWK without its private member `d`.
    Jwk,
    /// An OpenSSH public key line (`ssh-ed25519 AAAA…`).
    OpensshLine,
}

pub(super) fn public_key_given(key_type: KeyType, form: PublicKeyForm) -> String {
    match form {
        PublicKeyForm::RawEd25519 => "the input is 32 raw bytes (hex or base64), an Ed25519 public key; a private key must come as PKCS#8".to_string(),
        PublicKeyForm::Encoded => {
            let encodings = if key_type.is_rsa() {
                "PKCS#8 or PKCS#1"
            } else {
                "PKCS#8"
            };
            format!("expected a private key for type {key_type} ({encodings}), found a public key")
        }
        PublicKeyForm::RsaPss => {
            format!("expected a private key for type {key_type}, found an RSASSA-PSS public key")
        }
        PublicKeyForm::Jwk => {
            format!("expected a private key for type {key_type}, found a public JWK (no \"d\")")
        }
        PublicKeyForm::OpensshLine => {
            format!("expected a private key for type {key_type}, found an OpenSSH public key")
        }
    }
}

/// Which part of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyPart {
    /// The private key (PKCS#8).
    Private,
    /// The public key (SPKI).
    Public,
}

pub(super) fn key_part_name(family: Option<KeyFamily>, part: KeyPart) -> String {
    let family = match family {
        None => "",
        Some(KeyFamily::Rsa) => "RSA ",
        Some(KeyFamily::Ed25519) => "Ed25519 ",
    };
    let part = match part {
        KeyPart::Private => "private ",
        KeyPart::Public => "public ",
    };
    format!("{family}{part}")
}

/// The kinds of record the vault indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordKind {
    /// A user's key, with its versions.
    Key,
    /// A user's revocation.
    Revocation,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordKind::Key => "key",
            RecordKind::Revocation => "revocation",
        })
    }
}

/// What is wrong with an AEAD envelope (see `crypto::envelope` for its layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvelopeProblem {
    /// The input is empty.
    Empty,
    /// The input does not start with the envelope's magic.
    NotAnEnvelope,
    /// The header is shorter than a header: the envelope was cut short.
    ShortHeader {
        /// The bytes there are.
        len: usize,
        /// The length of a header.
        header_len: usize,
    },
    /// A format version this keyvault does not know.
    UnknownFormat(u8),
    /// An algorithm byte this keyvault does not know.
    UnknownAlgorithm(u8),
    /// A chunk size of zero or over the limit.
    ChunkSize(u32),
    /// The envelope was made with a key of another type.
    WrongKeyType {
        /// The type the header names.
        made_with: KeyType,
        /// The type of the key asked to open it.
        key_type: KeyType,
    },
    /// A chunk is missing or cut short.
    Truncated {
        /// The chunk's position.
        chunk: u32,
    },
    /// A chunk failed to authenticate.
    Forged {
        /// The chunk's position.
        chunk: u32,
    },
    /// More chunks than the nonce counter allows.
    TooManyChunks,
}

impl std::fmt::Display for EnvelopeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeProblem::Empty => {
                f.write_str("the input is empty: expected a keyvault envelope")
            }
            EnvelopeProblem::NotAnEnvelope => {
                f.write_str("the input is not a keyvault envelope (no KVE1 magic)")
            }
            EnvelopeProblem::ShortHeader { len, header_len } => write!(
                f,
                "the envelope is truncated: {len} bytes, shorter than its {header_len}-byte header"
            ),
            EnvelopeProblem::UnknownFormat(v) => write!(
                f,
                "the envelope has format version {v}, which this keyvault does not know"
            ),
            EnvelopeProblem::UnknownAlgorithm(a) => {
                write!(f, "the envelope names an unknown algorithm {a}")
            }
            EnvelopeProblem::ChunkSize(n) => {
                write!(f, "the envelope's chunk size {n} is out of range")
            }
            EnvelopeProblem::WrongKeyType {
                made_with,
                key_type,
            } => write!(
                f,
                "the envelope names {made_with}, but the key is {key_type}: it is another key's envelope, or its header was altered"
            ),
            EnvelopeProblem::Truncated { chunk } => write!(
                f,
                "the envelope is truncated: chunk {chunk} is missing or cut short"
            ),
            EnvelopeProblem::Forged { chunk } => write!(
                f,
                "the envelope failed to authenticate at chunk {chunk}: wrong key version, or the data was altered, reordered or truncated"
            ),
            EnvelopeProblem::TooManyChunks => f.write_str("the envelope has more than 2^32 chunks"),
        }
    }
}

/// The key types that can do `wanted`, in words.
pub(super) fn use_instead(wanted: KeyUse) -> &'static str {
    match wanted {
        KeyUse::Encrypt | KeyUse::Decrypt => {
            "use a fernet or aead (aes256-gcm, chacha20-poly1305) key to encrypt"
        }
        KeyUse::Sign | KeyUse::Verify => "use an rsa or ed25519 key to sign",
    }
}

/// What is wrong with a stored record that does not decode (see `store::records`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordProblem {
    /// The bytes are not a record of the kind expected.
    DoesNotDecode,
    /// Bytes follow the record.
    TrailingBytes,
    /// A record format version this keyvault does not know.
    UnknownVersion(u8),
    /// No bytes at all.
    Empty,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::DoesNotDecode => f.write_str("does not decode"),
            RecordProblem::TrailingBytes => f.write_str("has trailing bytes"),
            RecordProblem::UnknownVersion(v) => {
                write!(f, "has unknown record format version {v}")
            }
            RecordProblem::Empty => f.write_str("is empty"),
        }
    }
}

/// What is wrong with a user id (see `vault::validate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserIdProblem {
    /// The id is empty.
    Empty,
    /// The id is longer than allowed.
    TooLong {
        /// Its length, in bytes.
        len: usize,
        /// The longest allowed, in bytes.
        max: usize,
    },
    /// The id holds a control character.
    ControlCharacter(char),
    /// The id starts with whitespace.
    LeadingWhitespace(char),
    /// The id ends with whitespace.
    TrailingWhitespace(char),
    /// The id holds a character that prints as something else, or as nothing.
    Misleading {
        /// The character.
        found: char,
        /// What kind of character it is, in words.
        what: String,
    },
}

impl std::fmt::Display for UserIdProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::vault::validate::code_point;
        match self {
            UserIdProblem::Empty => f.write_str("the user id is empty"),
            UserIdProblem::TooLong { len, max } => write!(
                f,
                "the user id is {len} bytes long; at most {max} are allowed"
            ),
            UserIdProblem::ControlCharacter(c) => write!(
                f,
                "the user id contains the control character {} (such as a newline); these are not allowed",
                code_point(*c)
            ),
            UserIdProblem::LeadingWhitespace(c) => write!(
                f,
                "the user id starts with whitespace ({}); remove it",
                code_point(*c)
            ),
            UserIdProblem::TrailingWhitespace(c) => write!(
                f,
                "the user id ends with whitespace ({}); remove it",
                code_point(*c)
            ),
            UserIdProblem::Misleading { found, what } => write!(
                f,
                "the user id contains {}, {what}: user ids must print as what they are",
                code_point(*found)
            ),
        }
    }
}

/// What is wrong with the agent's answer, as its client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentAnswerProblem {
    /// The agent closed the connection before answering.
    Closed,
    /// The answer is longer than the client accepts.
    TooLarge(u32),
    /// The answer does not decode.
    Malformed,
    /// The answer decodes, but is not one to the request sent.
    Unexpected,
}

impl std::fmt::Display for AgentAnswerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentAnswerProblem::Closed => f.write_str(
                "the agent closed the connection before answering (the request may or may not have been carried out)",
            ),
            AgentAnswerProblem::TooLarge(n) => write!(f, "the agent sent a {n}-byte message"),
            AgentAnswerProblem::Malformed => f.write_str("the agent sent a malformed message"),
            AgentAnswerProblem::Unexpected => f.write_str("unexpected answer from the agent"),
        }
    }
}

/// What is wrong with the vault's header file (see `vault::header`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeaderProblem {
    /// It does not start as a keyvault header does.
    NotAHeader,
    /// Its length is not the one its fields add up to.
    WrongLength,
    /// Its body does not decode.
    BodyDoesNotDecode,
    /// It names a format older than header files (which have one from format 4 on).
    FormatWithoutHeaderFile(u32),
    /// Its MAC does not match: a field was altered.
    FailsToAuthenticate,
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let damaged = "the vault's header file is damaged";
        match self {
            HeaderProblem::NotAHeader => write!(f, "{damaged}: not a keyvault header"),
            HeaderProblem::WrongLength => write!(f, "{damaged}: wrong length"),
            HeaderProblem::BodyDoesNotDecode => write!(f, "{damaged}: its body does not decode"),
            HeaderProblem::FormatWithoutHeaderFile(format) => write!(
                f,
                "the vault's header file says format {format}, which has no header file: it was altered"
            ),
            HeaderProblem::FailsToAuthenticate => f.write_str(
                "the vault's header file fails to authenticate: its format version, vault id or another field was altered",
            ),
        }
    }
}

/// What keeps an OpenSSH key from being read or written (see `ssh::format`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpensshProblem {
    /// Keys of this type have no OpenSSH form.
    NoOpensshForm(KeyType),
    /// An RSASSA-PSS key cannot make ssh's RSA signatures.
    PssKey,
    /// The private key file does not parse.
    UnreadablePrivate(String),
    /// The file asks for more bcrypt-pbkdf rounds than allowed.
    TooManyRounds {
        /// The rounds asked for.
        rounds: u32,
        /// The most allowed.
        max: u32,
    },
    /// The private key could not be decrypted for another reason than the passphrase.
    CannotDecrypt(String),
    /// The private key is protected by a passphrase.
    Encrypted,
    /// An Ed25519 key whose public half is not that of its private half.
    MismatchedHalves,
    /// An RSA key with a negative number.
    NegativeNumber,
    /// An RSA key whose numbers do not make a key.
    InvalidRsa(String),
    /// A private key of another type than asked for.
    PrivateKeyType {
        /// The algorithm the file names.
        found: String,
        /// The key type asked for.
        wanted: KeyType,
    },
    /// A public key line that is not UTF-8.
    PublicNotText,
    /// A public key line that does not parse.
    UnreadablePublic(String),
    /// An Ed25519 public key that is not a valid point.
    NotAPoint,
    /// A public key of another type than asked for.
    PublicKeyType {
        /// The algorithm the line names.
        found: String,
        /// The key type asked for.
        wanted: KeyType,
    },
}

impl std::fmt::Display for OpensshProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpensshProblem::NoOpensshForm(key_type) => write!(
                f,
                "{key_type} keys have no OpenSSH form: only ed25519 and rsa keys work with ssh"
            ),
            OpensshProblem::PssKey => f.write_str(
                "an RSASSA-PSS key cannot sign for ssh (ssh's RSA signatures are PKCS#1 v1.5)",
            ),
            OpensshProblem::UnreadablePrivate(e) => write!(
                f,
                "cannot read the OpenSSH private key: {e}; expected a file as ssh-keygen writes it"
            ),
            OpensshProblem::TooManyRounds { rounds, max } => write!(
                f,
                "the OpenSSH key asks for {rounds} bcrypt-pbkdf rounds, over the {max} keyvault allows (ssh-keygen uses 16 unless given -a)"
            ),
            OpensshProblem::CannotDecrypt(e) => {
                write!(f, "cannot decrypt the OpenSSH private key: {e}")
            }
            OpensshProblem::Encrypted => f.write_str(
                "the OpenSSH private key is protected by a passphrase: decrypt it first",
            ),
            OpensshProblem::MismatchedHalves => {
                f.write_str("the OpenSSH Ed25519 key's public half does not match its private half")
            }
            OpensshProblem::NegativeNumber => {
                f.write_str("the OpenSSH RSA key has a negative number")
            }
            OpensshProblem::InvalidRsa(e) => write!(f, "the OpenSSH RSA key is not valid: {e}"),
            OpensshProblem::PrivateKeyType { found, wanted } => {
                write!(f, "the OpenSSH key is of type {found}, not {wanted}")
            }
            OpensshProblem::PublicNotText => f.write_str("the OpenSSH public key is not text"),
            OpensshProblem::UnreadablePublic(e) => {
                write!(f, "cannot read the OpenSSH public key: {e}")
            }
            OpensshProblem::NotAPoint => {
                f.write_str("the OpenSSH Ed25519 public key is not a valid point")
            }
            OpensshProblem::PublicKeyType { found, wanted } => {
                write!(f, "the OpenSSH public key is of type {found}, not {wanted}")
            }
        }
    }
}
