//! `keyvault demo`: the Python prototype's scenario, run for real on a temporary vault
//! that is deleted afterwards. It needs no passphrase input: the temporary vault gets a
//! random passphrase and fast KDF parameters (it lives for a second and holds nothing).

use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::random_bytes;
use keyvault::{Error, KeyType, Result, Vault};

use super::output::Out;
use super::report::{Demo, Receipt};
use super::{CmdResult, SUCCESS};

const USER: &str = "User123";

/// Runs the scenario and prints what happens.
pub(crate) fn run(out: &mut Out) -> CmdResult {
    let dir = tempfile::Builder::new()
        .prefix("keyvault-demo-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a temporary directory", e))?;
    let path = dir.path().join("vault");
    let result = scenario(&path);
    let vault = path.display().to_string();
    let removed = dir.close().is_ok();
    let lines = result?;
    out.emit(&Demo {
        details: lines.details,
        prototype_output: lines.prototype,
        removed,
        vault,
    })?;
    Ok(SUCCESS)
}

struct Lines {
    prototype: Vec<String>,
    details: Vec<String>,
}

fn scenario(path: &std::path::Path) -> Result<Lines> {
    let mut passphrase = zeroize::Zeroizing::new([0u8; 32]);
    random_bytes(passphrase.as_mut())?;
    let fast = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    let vault = Vault::create(path, passphrase.as_ref(), fast, true)?;
    let mut prototype = Vec::new();
    let mut details = vec![format!(
        "created a vault (format v{}, Argon2id {fast}: demo only; `init` defaults to m=64 MiB, t=3, p=4)",
        keyvault::vault::CURRENT_FORMAT
    )];

    let sym = vault.generate(USER, None, KeyType::Fernet)?;
    prototype.push(format!("Stored symmetric key for {USER}"));
    details.push(format!(
        "gen {USER} --type fernet: key {:?}, id {}, {}",
        sym.name, sym.id, sym.fingerprint
    ));

    let pair = vault.generate(USER, None, KeyType::Rsa2048)?;
    prototype.push(format!("Stored private key for {USER}"));
    prototype.push(format!("Stored public key for {USER}"));
    details.push(format!(
        "gen {USER} --type rsa-2048: key {:?}, id {}, public key {}",
        pair.name, pair.id, pair.fingerprint
    ));

    let listed = vault.list(Some(USER))?;
    details.push(format!("list {USER}: {} keys", listed.len()));

    let outcome = vault.revoke(USER, Some("demo"))?;
    prototype.push(format!("Revoked all keys for {USER}"));
    for line in Receipt(&outcome).to_string().lines() {
        details.push(format!("revoke: {}", line.trim()));
    }

    prototype.push("Revoked Keys List:".to_string());
    for r in vault.revoked_users()? {
        prototype.push(format!("- {}", r.user));
    }

    match vault.generate(USER, None, KeyType::Fernet) {
        Err(e @ Error::UserRevoked { .. }) => details.push(format!(
            "gen {USER} after the revocation: refused (exit {}): {e}",
            e.exit_code().code()
        )),
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::Internal("a revoked user was given a new key".into()));
        }
    }
    // Listing a revoked user's keys says the user is revoked: none are left.
    let left = match vault.list(Some(USER)) {
        Ok(keys) => keys.len(),
        Err(Error::UserRevoked { .. }) => 0,
        Err(e) => return Err(e),
    };
    details.push(format!("keys left for {USER}: {left}"));
    Ok(Lines { prototype, details })
}
