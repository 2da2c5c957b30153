//! The command line, as clap definitions. Completions and the manual page are generated
//! from these.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use keyvault::KeyType;
use keyvault::crypto::kdf::{KdfChange, KdfParams, KdfProfile};
use keyvault::crypto::keys::ExportFormat;
use keyvault::crypto::sign::RsaScheme;

/// A local, offline key vault: generate, store, use and revoke keys for named users,
/// encrypted at rest under a passphrase.
#[derive(Parser, Debug)]
#[command(name = "keyvault", version, about, long_about = None, max_term_width = 100)]
pub(crate) struct Cli {
    /// The vault directory [default: the platform data dir, e.g. ~/.local/share/keyvault/default]
    #[arg(long, global = true, env = "KEYVAULT_PATH", value_name = "DIR")]
    pub vault: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase from the first line of FILE (also env KEYVAULT_PASSPHRASE_FILE;
    /// env KEYVAULT_PASSPHRASE is read too, for automation, and is less safe)
    #[arg(
        long,
        global = true,
        env = "KEYVAULT_PASSPHRASE_FILE",
        value_name = "FILE"
    )]
    pub passphrase_file: Option<PathBuf>,

    /// Open the vault even though this machine has seen a newer copy of it (an older
    /// copy was put back on purpose); recorded in the audit log
    #[arg(long, global = true)]
    pub accept_rollback: bool,

    /// The command
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new vault (asks the passphrase twice on a terminal)
    Init(InitArgs),
    /// Start the agent holding the unlocked vault; later commands need no passphrase
    Unlock {
        /// Lock after this long without use (e.g. 30s, 15m, 1h) [default: 15m; an
        /// unlocked vault keeps its current timeout unless this is given]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Lock after this long in any case, even while in use
        #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = parse_duration)]
        max_lifetime: Duration,
    },
    /// Wipe the keys from memory and stop the agent (every agent holding this vault)
    Lock {
        /// Stop every agent of yours, whatever vault it holds
        #[arg(long)]
        all: bool,
    },
    /// Show whether the vault is unlocked, where it is, its format and counts
    Status,
    /// Generate and store a key; prints its id and fingerprint, never the secret
    Gen {
        /// The user who owns the key
        user: String,
        /// The key type
        #[arg(long = "type", short = 't', value_name = "TYPE", default_value = "fernet", value_parser = parse_key_type)]
        key_type: KeyType,
        /// The key name [default: the type]
        #[arg(long, short = 'n', value_name = "NAME")]
        name: Option<String>,
        /// Serve the key to ssh while the vault is unlocked (ed25519 and rsa keys)
        #[arg(long)]
        ssh: bool,
    },
    /// Store an existing key: PEM (PKCS#8, PKCS#1, SPKI with --public), DER, or base64
    Import {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// The key type
        #[arg(long = "type", short = 't', value_name = "TYPE", value_parser = parse_key_type)]
        key_type: KeyType,
        /// Read the key from FILE, or from stdin with `-` [default: stdin]
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        /// Accept a public key alone (it can then only verify and encrypt)
        #[arg(long)]
        public: bool,
        /// Serve the key to ssh while the vault is unlocked (ed25519 and rsa keys)
        #[arg(long)]
        ssh: bool,
        /// Read the passphrase of a protected OpenSSH key file from FILE [default:
        /// $KEYVAULT_KEY_PASSPHRASE, else asked on the terminal]
        #[arg(long, value_name = "FILE", env = "KEYVAULT_KEY_PASSPHRASE_FILE")]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Print or write key material (files are created 0600)
    Export {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// Export only the public key (SPKI) of an RSA or Ed25519 key
        #[arg(long)]
        public: bool,
        /// The version [default: the primary one]
        #[arg(long, value_name = "V")]
        version: Option<u32>,
        /// The encoding [default: base64 for symmetric keys, pem for RSA and Ed25519]
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatArg>,
        /// Write to FILE (created 0600, never overwritten) instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List users and keys: type, versions, created, fingerprint; no secrets
    List {
        /// Only this user's keys
        user: Option<String>,
    },
    /// Destroy one key, all of its versions (or one version with --version)
    Delete {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// Destroy only this version (never the only one)
        #[arg(long, value_name = "V")]
        version: Option<u32>,
    },
    /// Add a new version of a key; it becomes primary, older versions still decrypt and verify
    Rotate {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
    },
    /// Encrypt with a key, without exporting it (stdin to stdout by default)
    Encrypt {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// Read the plaintext from FILE [default: stdin]
        #[arg(long = "in", short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
        /// Write the result to FILE (created 0600, never overwritten) [default: stdout]
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Decrypt with a key (a Fernet token, an AEAD envelope or an RSA-OAEP ciphertext)
    Decrypt {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// Read the ciphertext from FILE [default: stdin]
        #[arg(long = "in", short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
        /// Write the plaintext to FILE (created 0600, only once all of it authenticated)
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// Refuse Fernet tokens made more than SECONDS ago
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
    },
    /// Sign with a key (RSA-PSS-SHA256 by default, or PKCS#1 v1.5; Ed25519)
    Sign {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// Read the message from FILE [default: stdin]
        #[arg(long = "in", short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
        /// Write the signature to FILE [default: stdout]
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// The RSA signature scheme
        #[arg(long, value_enum, value_name = "SCHEME")]
        scheme: Option<SchemeArg>,
    },
    /// Verify a signature: exit 0 if valid, 1 if not
    Verify {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
        /// The signature file
        #[arg(long, short = 's', value_name = "FILE")]
        signature: PathBuf,
        /// Read the message from FILE [default: stdin]
        #[arg(long = "in", short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
        /// The RSA signature scheme
        #[arg(long, value_enum, value_name = "SCHEME")]
        scheme: Option<SchemeArg>,
    },
    /// Destroy all of a user's keys and mark the user revoked; prints a receipt
    Revoke {
        /// The user to revoke
        user: String,
        /// Why (kept, sealed, in the vault)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Also compact the vault, so the destroyed records leave its files
        #[arg(long)]
        purge: bool,
    },
    /// Exit 0 and print `revoked` if the user is revoked; exit 1 and print `not revoked` otherwise
    IsRevoked {
        /// The user
        user: String,
    },
    /// List revoked users with time and reason
    Revoked,
    /// Change the passphrase (and optionally the KDF parameters); no key is re-encrypted
    Passwd {
        /// Read the new passphrase from the first line of FILE (also env
        /// KEYVAULT_NEW_PASSPHRASE_FILE; env KEYVAULT_NEW_PASSPHRASE is read too)
        #[arg(long, env = "KEYVAULT_NEW_PASSPHRASE_FILE", value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// New KDF parameters (default: keep the current ones)
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Write a consistent, self-contained, encrypted backup file (safe while unlocked)
    Backup {
        /// The file to create (never overwritten; created 0600)
        file: PathBuf,
    },
    /// Create a vault from a backup (with the passphrase current when it was made)
    Restore {
        /// The backup file
        file: PathBuf,
        /// The directory of the new vault (must not exist)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Re-apply every revocation this (newer) vault holds, whatever its date
        #[arg(long, value_name = "VAULT")]
        revocations_from: Option<PathBuf>,
        /// The passphrase of the --revocations-from vault, from this file (else
        /// KEYVAULT_REVOCATIONS_PASSPHRASE, the terminal, or the backup's passphrase)
        #[arg(
            long,
            value_name = "FILE",
            env = "KEYVAULT_REVOCATIONS_PASSPHRASE_FILE",
            requires = "revocations_from"
        )]
        revocations_passphrase_file: Option<PathBuf>,
    },
    /// Verify that every record of the vault (or of a backup) opens and the audit chain holds
    Check {
        /// Check this backup file instead of the vault
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
    },
    /// Rewrite the vault into a fresh database, so destroyed records leave its files
    Compact,
    /// Show the audit log (who, what, when; never secrets)
    Audit {
        /// Only verify the chain and report
        #[arg(long)]
        verify: bool,
        /// Only entries from this time on (YYYY-MM-DD or RFC 3339)
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        since: Option<u64>,
    },
    /// Run the prototype's scenario on a temporary vault and print what happens
    Demo,
    /// Run the agent (started by `unlock`; not for direct use)
    #[command(hide = true)]
    Agent {
        /// Idle timeout in seconds
        #[arg(long)]
        idle_secs: u64,
        /// Maximum lifetime in seconds
        #[arg(long)]
        lifetime_secs: u64,
    },
    /// Serve vault keys to ssh: mark keys, show the agent's SSH socket
    Ssh {
        /// What to do
        #[command(subcommand)]
        command: SshCommand,
    },
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. into ~/.local/share/man/man1/keyvault.1
    Man,
}

/// KDF choices of `init`.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// The KDF parameters
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// KDF parameters on the command line.
#[derive(Args, Debug)]
pub(crate) struct KdfArgs {
    /// A KDF profile: interactive (m=19 MiB, t=2, p=1), moderate (m=64 MiB, t=3, p=4,
    /// the default), sensitive (m=1 GiB, t=4, p=4)
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub kdf: Option<ProfileArg>,
    /// Argon2id memory in MiB (overrides the profile)
    #[arg(long, value_name = "MIB")]
    pub kdf_memory: Option<u32>,
    /// Argon2id passes (overrides the profile)
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
    /// Argon2id lanes (overrides the profile)
    #[arg(long, value_name = "N")]
    pub kdf_parallelism: Option<u32>,
    /// Accept parameters below OWASP's floor (m=19 MiB, t=2, p=1); for tests only
    #[arg(long)]
    pub allow_weak_kdf: bool,
}

impl KdfArgs {
    /// The parameters asked for, starting from `base` (the default profile for `init`,
    /// the current parameters for `passwd`).
    pub(crate) fn params_from(&self, base: KdfParams) -> KdfParams {
        let mut p = self.kdf.map(|k| k.profile().params()).unwrap_or(base);
        if let Some(m) = self.kdf_memory {
            p.memory_kib = m.saturating_mul(1024);
        }
        if let Some(t) = self.kdf_iterations {
            p.iterations = t;
        }
        if let Some(par) = self.kdf_parallelism {
            p.parallelism = par;
        }
        p
    }

    /// The parameters for a new vault.
    pub(crate) fn params(&self) -> KdfParams {
        self.params_from(KdfProfile::Moderate.params())
    }

    /// The change asked for (for `passwd`): what is not given keeps the vault's value.
    pub(crate) fn change(&self) -> KdfChange {
        KdfChange {
            base: self.kdf.map(|k| k.profile().params()),
            memory_kib: self.kdf_memory.map(|m| m.saturating_mul(1024)),
            iterations: self.kdf_iterations,
            parallelism: self.kdf_parallelism,
        }
    }
}

/// `--kdf` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ProfileArg {
    /// m=19 MiB, t=2, p=1
    Interactive,
    /// m=64 MiB, t=3, p=4
    Moderate,
    /// m=1 GiB, t=4, p=4
    Sensitive,
}

impl ProfileArg {
    fn profile(self) -> KdfProfile {
        match self {
            ProfileArg::Interactive => KdfProfile::Interactive,
            ProfileArg::Moderate => KdfProfile::Moderate,
            ProfileArg::Sensitive => KdfProfile::Sensitive,
        }
    }
}

/// `--format` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum FormatArg {
    /// PEM text
    Pem,
    /// binary DER (or raw bytes for symmetric keys)
    Der,
    /// base64 text
    Base64,
    /// a JSON Web Key (RFC 7517/7518; OKP per RFC 8037)
    Jwk,
    /// OpenSSH: the public key line, or an OpenSSH private key file
    Openssh,
}

/// `ssh` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum SshCommand {
    /// Serve a key to ssh while the vault is unlocked (ed25519 and rsa keys)
    Enable {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
    },
    /// Stop serving a key to ssh
    Disable {
        /// The user who owns the key
        user: String,
        /// The key name
        name: String,
    },
    /// Print the path of the unlocked vault's SSH agent socket (for SSH_AUTH_SOCK)
    Socket,
    /// List the keys served to ssh, with their SSH fingerprints and public keys
    List,
}

/// `--scheme` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum SchemeArg {
    /// RSASSA-PSS, SHA-256, 32-byte salt (verify accepts any salt length)
    Pss,
    /// RSASSA-PKCS1-v1_5, SHA-256
    Pkcs1v15,
}

impl From<SchemeArg> for RsaScheme {
    fn from(s: SchemeArg) -> Self {
        match s {
            SchemeArg::Pss => RsaScheme::Pss,
            SchemeArg::Pkcs1v15 => RsaScheme::Pkcs1v15,
        }
    }
}

impl From<FormatArg> for ExportFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Pem => ExportFormat::Pem,
            FormatArg::Der => ExportFormat::Der,
            FormatArg::Base64 => ExportFormat::Base64,
            FormatArg::Jwk => ExportFormat::Jwk,
            FormatArg::Openssh => ExportFormat::Openssh,
        }
    }
}

fn parse_key_type(s: &str) -> Result<KeyType, String> {
    s.parse::<KeyType>().map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 15m, 2h)"))?;
    if d.as_secs() == 0 {
        return Err("the duration must be at least one second".into());
    }
    Ok(d)
}

fn parse_date(s: &str) -> Result<u64, String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .map_err(|e| format!("{e}: expected YYYY-MM-DD or an RFC 3339 time"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "the date is before 1970".to_string())
}
