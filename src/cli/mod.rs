//! The command layer: turns parsed arguments into vault requests and renders the
//! results. It never touches the store or raw key bytes beyond passing them through.

pub mod advice;
mod agent_cmds;
pub mod args;
mod checks;
mod demo;
mod keyuse_cmds;
mod lifecycle_cmds;
mod output;
mod passphrase;

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use zeroize::Zeroizing;

use keyvault::agent::client::{AgentClient, OpOutcome};
use keyvault::agent::server::{AgentOptions, DEFAULT_IDLE_TIMEOUT};
use keyvault::ops::{Request, Response};
use keyvault::vault::{self, ExportOptions, Vault};
use keyvault::{Error, Result};

use args::{Cli, Command};
use checks::{check_lookup, check_new_file, check_vault_dir_free, visible_commands};
use output::Out;
use passphrase::{ENV_PASSPHRASE, PassphraseSource};

/// The largest key file `import` reads.
const MAX_IMPORT_BYTES: u64 = 1024 * 1024;

/// Set when this command opened its vault read-only (its filesystem takes no writes):
/// the binary then says so after the command's output.
pub static OPENED_READ_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// How a command ended when it did not fail: 0, or 1 for a negative answer.
pub type ExitCode = i32;

/// Where requests go: the agent of the vault when one runs, else a vault this process
/// opens itself (one-shot, asking for the passphrase).
struct Session {
    path: PathBuf,
    options: vault::OpenOptions,
    source: PassphraseSource,
    vault: Option<Vault>,
    agent: Option<AgentClient>,
    agent_checked: bool,
}

impl Session {
    fn new(cli: &Cli) -> Result<Session> {
        Ok(Session {
            path: vault_path(cli)?,
            options: open_options(cli),
            source: PassphraseSource {
                file: cli.passphrase_file.clone(),
                env_var: ENV_PASSPHRASE,
            },
            vault: None,
            agent: None,
            agent_checked: false,
        })
    }

    fn vault(&mut self) -> Result<&Vault> {
        if self.vault.is_none() {
            // Say "no vault" before asking for a passphrase that cannot help.
            if !keyvault::Vault::exists(&self.path) {
                return Err(Error::VaultNotFound(self.path.clone()));
            }
            let passphrase = self.source.unlock()?;
            let vault = Vault::open_with(&self.path, &passphrase, self.options)?;
            if vault.is_read_only() {
                OPENED_READ_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            self.vault = Some(vault);
        }
        self.vault
            .as_ref()
            .ok_or_else(|| Error::Internal("vault not open".into()))
    }

    /// Closes the vault this process opened (flushing it and letting go of its lock),
    /// once a command has what it needs from it: so that a command that then writes a
    /// large output into a pipe does not hold the vault while the reader, another
    /// keyvault command, waits to open it. Nothing to do through the agent.
    fn release(&mut self) {
        self.vault = None;
    }

    fn agent(&mut self) -> Result<Option<&mut AgentClient>> {
        if !self.agent_checked {
            self.agent_checked = true;
            self.agent = AgentClient::connect(&self.path)?;
        }
        Ok(self.agent.as_mut())
    }

    fn call(&mut self, request: Request) -> Result<Response> {
        let request = match self.agent()? {
            None => request,
            Some(agent) => match agent.op_or_back(request)? {
                OpOutcome::Answered(response) => return Ok(response),
                // The agent locked itself without carrying the request out (its vault
                // directory was moved, deleted or replaced): carry it out here.
                OpOutcome::NotCarriedOut(e, request) => {
                    eprintln!("note: {e}; opening the vault directly");
                    self.agent = None;
                    *request
                }
            },
        };
        if request.needs_exclusive() {
            self.vault()?;
            let vault = self
                .vault
                .take()
                .ok_or_else(|| Error::Internal("vault not open".into()))?;
            let (back, result) = keyvault::ops::execute_owned(vault, request);
            self.vault = back;
            return result;
        }
        self.vault()?.execute(request)
    }
}

/// The vault directory: `--vault`, `KEYVAULT_PATH`, or the platform default.
fn vault_path(cli: &Cli) -> Result<PathBuf> {
    match &cli.vault {
        Some(p) => Ok(p.clone()),
        None => vault::default_path().ok_or_else(|| {
            Error::Usage("cannot find the platform data directory; pass --vault DIR".into())
        }),
    }
}

/// How to open a vault, from the global flags.
fn open_options(cli: &Cli) -> vault::OpenOptions {
    vault::OpenOptions {
        accept_rollback: cli.accept_rollback,
    }
}

fn unexpected() -> Error {
    Error::Internal("unexpected response".into())
}

/// Runs one command. I/O errors on stdout come back as `io::Error` so that the caller
/// can treat a closed pipe as success.
pub fn run(cli: Cli) -> std::result::Result<ExitCode, RunError> {
    let mut out = Out::new(cli.json);
    match &cli.command {
        Command::Init(a) => {
            let path = vault_path(&cli)?;
            let params = a.kdf.params();
            params.validate(a.kdf.allow_weak_kdf)?;
            if keyvault::Vault::exists(&path) {
                return Err(Error::AlreadyExists(format!(
                    "a vault already exists at {}",
                    path.display()
                ))
                .into());
            }
            check_vault_dir_free(&path)?;
            let source = PassphraseSource {
                file: cli.passphrase_file.clone(),
                env_var: ENV_PASSPHRASE,
            };
            let passphrase = source.new_passphrase("New passphrase: ")?;
            passphrase::warn_if_weak(&passphrase);
            if params.is_weak() {
                // `validate` refused it unless --allow-weak-kdf was given.
                passphrase::warn(format!(
                    "KDF parameters {params} are below OWASP's floor (m=19 MiB, t=2, p=1): the passphrase is easier to guess from a copy of the vault"
                ));
            }
            let v = Vault::create(&path, &passphrase, params, a.kdf.allow_weak_kdf)?;
            if out.json() {
                out.doc(&json!({
                    "created": v.path().display().to_string(),
                    "format_version": keyvault::vault::CURRENT_FORMAT,
                    "kdf": v.kdf_params(),
                    "warnings": passphrase::take_warnings(),
                }))?;
            } else {
                out.text(&format!(
                    "Created a vault at {} (Argon2id {})\n",
                    v.path().display(),
                    v.kdf_params()
                ))?;
            }
        }
        Command::Status => agent_cmds::status(&mut out, &vault_path(&cli)?)?,
        Command::Unlock {
            timeout,
            max_lifetime,
        } => {
            let source = PassphraseSource {
                file: cli.passphrase_file.clone(),
                env_var: ENV_PASSPHRASE,
            };
            agent_cmds::unlock(
                &mut out,
                &vault_path(&cli)?,
                &source,
                *timeout,
                AgentOptions {
                    idle_timeout: timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
                    max_lifetime: *max_lifetime,
                    accept_rollback: cli.accept_rollback,
                },
            )?;
        }
        Command::Lock { all } => agent_cmds::lock(&mut out, &vault_path(&cli)?, *all)?,
        Command::Agent {
            idle_secs,
            lifetime_secs,
        } => agent_cmds::serve(
            &vault_path(&cli)?,
            *idle_secs,
            *lifetime_secs,
            cli.accept_rollback,
        )?,
        Command::Gen {
            user,
            key_type,
            name,
        } => {
            vault::validate::new_user_id(user)?;
            vault::validate::key_name(name.as_deref().unwrap_or(key_type.as_str()))?;
            let mut s = Session::new(&cli)?;
            let Response::Key(k) = s.call(Request::Generate {
                user: user.clone(),
                name: name.clone(),
                key_type: *key_type,
            })?
            else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&k)?;
            } else {
                out.text(&output::stored_key("Stored", &k))?;
            }
        }
        Command::Import {
            user,
            name,
            key_type,
            file,
            public,
        } => {
            vault::validate::new_user_id(user)?;
            vault::validate::key_name(name)?;
            let material = read_input(file.as_deref())?;
            // The key is read and checked before the passphrase is asked for; the vault
            // reads it again to store it.
            keyvault::crypto::keys::import(*key_type, &material, *public)?;
            let mut s = Session::new(&cli)?;
            let Response::Key(k) = s.call(Request::Import {
                user: user.clone(),
                name: name.clone(),
                key_type: *key_type,
                material,
                public_only: *public,
            })?
            else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&k)?;
            } else {
                out.text(&output::stored_key("Imported", &k))?;
            }
        }
        Command::Export {
            user,
            name,
            public,
            version,
            format,
            out: out_file,
        } => {
            check_lookup(user, Some(name))?;
            if let Some(f) = out_file {
                check_new_file(f)?;
            } else if matches!(format, Some(args::FormatArg::Der)) && !out.json() {
                checks::refuse_binary_to_terminal("export --format der")?;
            }
            let options = ExportOptions {
                public: *public,
                version: *version,
                format: format.map(Into::into),
            };
            let mut s = Session::new(&cli)?;
            let Response::Material(material) = s.call(Request::Export {
                user: user.clone(),
                name: name.clone(),
                options: options.clone(),
            })?
            else {
                return Err(unexpected().into());
            };
            let written = write_export(&mut out, out_file.as_deref(), user, name, &material);
            if let Err(e) = written {
                // The key left the vault but reached nothing: the audit log says so.
                let error = match &e {
                    RunError::Vault(e) | RunError::Reported(e) => e.to_string(),
                    RunError::Stdout(e) => format!("cannot write to stdout: {e}"),
                };
                let _ = s.call(Request::ExportFailed {
                    user: user.clone(),
                    name: name.clone(),
                    options,
                    error,
                });
                return Err(e);
            }
            if let (Some(f), true) = (out_file, out.json()) {
                out.doc(&json!({ "written": f.display().to_string() }))?;
            }
        }
        Command::List { user } => {
            if let Some(user) = user {
                check_lookup(user, None)?;
            }
            let mut s = Session::new(&cli)?;
            let Response::Keys(keys) = s.call(Request::List { user: user.clone() })? else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&json!({ "keys": keys }))?;
            } else {
                out.text(&output::key_table(&keys))?;
            }
        }
        Command::Delete {
            user,
            name,
            version,
        } => {
            check_lookup(user, Some(name))?;
            let mut s = Session::new(&cli)?;
            let request = match version {
                Some(v) => Request::DeleteVersion {
                    user: user.clone(),
                    name: name.clone(),
                    version: *v,
                },
                None => Request::Delete {
                    user: user.clone(),
                    name: name.clone(),
                },
            };
            let Response::Deleted(k) = s.call(request)? else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&json!({ "deleted": k, "version": version }))?;
            } else if let Some(v) = version {
                out.text(&format!(
                    "Deleted version {v} of {} key {:?} of {}; versions left: {}\n",
                    k.key_type.0,
                    k.name,
                    output::escape(&k.user),
                    output::version_list(&k)
                ))?;
            } else {
                out.text(&format!(
                    "Deleted {} key {:?} of {} ({}, {})\n",
                    k.key_type.0,
                    k.name,
                    output::escape(&k.user),
                    output::count(k.versions.len(), "version", "versions"),
                    k.fingerprint
                ))?;
            }
        }
        Command::Rotate { user, name } => {
            check_lookup(user, Some(name))?;
            let mut s = Session::new(&cli)?;
            let Response::Key(k) = s.call(Request::Rotate {
                user: user.clone(),
                name: name.clone(),
            })?
            else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&k)?;
            } else {
                out.text(&format!(
                    "Rotated {} key {:?} of {}: version {} is primary ({}); versions: {}\n",
                    k.key_type.0,
                    k.name,
                    output::escape(&k.user),
                    k.primary_version,
                    k.fingerprint,
                    output::version_list(&k)
                ))?;
            }
        }
        Command::Encrypt {
            user,
            name,
            input,
            out: output,
        } => keyuse_cmds::encrypt(
            &mut out,
            &mut Session::new(&cli)?,
            user,
            name,
            input.as_deref(),
            output.as_deref(),
        )?,
        Command::Decrypt {
            user,
            name,
            input,
            out: output,
            ttl,
        } => keyuse_cmds::decrypt(
            &mut out,
            &mut Session::new(&cli)?,
            user,
            name,
            input.as_deref(),
            output.as_deref(),
            *ttl,
        )?,
        Command::Sign {
            user,
            name,
            input,
            out: output,
            scheme,
        } => keyuse_cmds::sign(
            &mut out,
            &mut Session::new(&cli)?,
            user,
            name,
            input.as_deref(),
            output.as_deref(),
            scheme.map(Into::into),
        )?,
        Command::Verify {
            user,
            name,
            signature,
            input,
            scheme,
        } => {
            let code = keyuse_cmds::verify(
                &mut out,
                &mut Session::new(&cli)?,
                user,
                name,
                signature,
                input.as_deref(),
                scheme.map(Into::into),
            )?;
            out.flush()?;
            return Ok(code);
        }
        Command::Revoke {
            user,
            reason,
            purge,
        } => {
            check_lookup(user, None)?;
            if let Some(reason) = reason {
                vault::validate::reason(reason)?;
            }
            let mut s = Session::new(&cli)?;
            let response = s.call(Request::Revoke {
                user: user.clone(),
                reason: reason.clone(),
                purge: *purge,
            })?;
            let (outcome, compacted, purge_failed) = match response {
                Response::Revoke(o) => (o, None, None),
                Response::Compacted(Some(o), report) => (o, Some(report), None),
                Response::PurgeFailed { outcome, error } => (outcome, None, Some(error)),
                _ => return Err(unexpected().into()),
            };
            if out.json() {
                let mut doc =
                    serde_json::to_value(&outcome).map_err(|e| Error::Internal(e.to_string()))?;
                if let Some(report) = &compacted {
                    doc["compacted"] = json!(report);
                }
                if let Some(error) = &purge_failed {
                    doc["purge_failed"] = json!(error);
                }
                out.doc(&doc)?;
            } else {
                out.text(&output::receipt(&outcome))?;
                if let Some(report) = &compacted {
                    out.text(&output::compacted(report))?;
                }
            }
            if let Some(error) = purge_failed {
                out.flush()?;
                return Err(Error::PurgeFailed(error).into());
            }
        }
        Command::Passwd {
            new_passphrase_file,
            kdf,
        } => lifecycle_cmds::passwd(&mut out, &mut Session::new(&cli)?, new_passphrase_file, kdf)?,
        Command::Backup { file } => {
            check_new_file(file)?;
            lifecycle_cmds::backup(&mut out, &mut Session::new(&cli)?, file)?
        }
        Command::Restore {
            file,
            to,
            revocations_from,
            revocations_passphrase_file,
        } => lifecycle_cmds::restore(
            &mut out,
            &cli,
            file,
            to,
            revocations_from.as_deref(),
            revocations_passphrase_file.as_deref(),
        )?,
        Command::Check { backup } => {
            let code = match backup {
                Some(file) => lifecycle_cmds::check_backup(&mut out, &cli, file)?,
                None => lifecycle_cmds::check(&mut out, &mut Session::new(&cli)?)?,
            };
            out.flush()?;
            return Ok(code);
        }
        Command::Compact => {
            let mut s = Session::new(&cli)?;
            let Response::Compacted(_, report) = s.call(Request::Compact)? else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&report)?;
            } else {
                out.text(&output::compacted(&report))?;
            }
        }
        Command::Audit { verify, since } => {
            lifecycle_cmds::audit(&mut out, &mut Session::new(&cli)?, *verify, *since)?
        }
        Command::IsRevoked { user } => {
            check_lookup(user, None)?;
            let mut s = Session::new(&cli)?;
            let Response::Revocation(r) = s.call(Request::IsRevoked { user: user.clone() })? else {
                return Err(unexpected().into());
            };
            let revoked = r.is_some();
            if out.json() {
                out.doc(&json!({ "user": user, "revoked": revoked, "revocation": r }))?;
            } else {
                out.text(if revoked {
                    "revoked\n"
                } else {
                    "not revoked\n"
                })?;
            }
            return Ok(if revoked { 0 } else { 1 });
        }
        Command::Revoked => {
            let mut s = Session::new(&cli)?;
            let Response::Revocations(list) = s.call(Request::Revoked)? else {
                return Err(unexpected().into());
            };
            if out.json() {
                out.doc(&json!({ "revoked": list }))?;
            } else {
                out.text(&output::revocations(&list))?;
            }
        }
        Command::Demo => demo::run(&mut out)?,
        Command::Completions { shell } => {
            let mut cmd = visible_commands();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "keyvault", &mut buf);
            out.bytes(&buf)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// Why a command failed: a vault error, or stdout went away.
pub enum RunError {
    /// A library error, mapped to its exit code.
    Vault(Error),
    /// A failure whose `--json` document was already printed (stderr still gets the
    /// `error:` line; stdout gets no second document).
    Reported(Error),
    /// Writing to stdout failed.
    Stdout(io::Error),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Vault(e)
    }
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Stdout(e)
    }
}

fn read_input(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    match file {
        None => {
            io::stdin()
                .take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read stdin", e))?;
        }
        Some(p) if p == Path::new("-") => {
            io::stdin()
                .take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read stdin", e))?;
        }
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::FileNotFound(p.to_path_buf()),
                _ => Error::io(format!("cannot read {}", p.display()), e),
            })?;
            f.take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
        }
    }
    if buf.len() as u64 > MAX_IMPORT_BYTES {
        return Err(Error::Usage("the key input is larger than 1 MiB".into()));
    }
    Ok(buf)
}

/// Writes exported material: to a new file, as a JSON document, or raw to stdout.
fn write_export(
    out: &mut Out,
    file: Option<&Path>,
    user: &str,
    name: &str,
    material: &[u8],
) -> std::result::Result<(), RunError> {
    if let Some(f) = file {
        return Ok(write_secret_file(f, material)?);
    }
    if !out.json() {
        return Ok(out.bytes(material)?);
    }
    // Text material as it is, less its final newline (as `encrypt --json` gives a
    // token); binary material in base64.
    let text = match std::str::from_utf8(material) {
        Ok(t) => Zeroizing::new(t.trim_end_matches('\n').to_string()),
        Err(_) => {
            use base64::Engine as _;
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(material))
        }
    };
    Ok(out.doc(&json!({
        "user": user,
        "name": name,
        "material": &*text,
    }))?)
}

/// Writes secret material to a new file created 0600; never overwrites.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!(
                "{} exists; refusing to overwrite it",
                path.display()
            )),
            _ => Error::io(format!("cannot create {}", path.display()), e),
        })?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}
