//! `keyvault._native`: the keyvault library as a CPython extension module.
//!
//! This crate owns the boundary between Python and the library: it turns Python
//! arguments into [`keyvault::ops::Request`]s, runs them on a vault this process opened
//! itself or through the vault's running agent (the same requests the command line
//! sends), and turns the answers and errors back into Python values. The Python package
//! (`python/keyvault/`) builds the user-facing API on top of it.
//!
//! What it must never do: let a Rust panic reach Python (every call runs under
//! `catch_unwind` and a panic becomes a `KeyvaultError`), put a secret in an error
//! message or a `repr`, or hold the GIL while deriving a key, doing crypto or I/O.

mod dicts;
mod errors;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use zeroize::Zeroizing;

use keyvault::agent::client::{AgentClient, OpOutcome};
use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::keys::ExportFormat;
use keyvault::crypto::sign::RsaScheme;
use keyvault::error::Exit;
use keyvault::ops::{Request, Response};
use keyvault::vault::{self, OpenOptions};
use keyvault::{Error, ExportOptions, KeyType, Result, Vault};

use dicts::{key_dict, key_of, revocation_dict, status_dict};
use errors::{
    AlreadyExists, IntegrityError, InternalError, KeyvaultError, Locked, NotFound, Refused,
    Revoked, UsageError, VaultInUse, WrongPassphrase, to_py,
};

/// A Rust panic, caught before it reaches Python: reported as an internal error that
/// says where, never what (a panic message could quote data).
fn panicked() -> Error {
    Error::Internal(match keyvault::error::take_panic_location() {
        Some(at) => format!("keyvault failed unexpectedly at {at}"),
        None => "keyvault failed unexpectedly".into(),
    })
}

/// Runs `f` without the GIL (it derives keys, does crypto or I/O), catching panics.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    let result =
        py.detach(|| catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(panicked())));
    result.map_err(|e| to_py(py, &e))
}

/// Where requests go.
enum Backend {
    /// A vault this process opened with its passphrase; `None` once closed. Operations
    /// share the read lock (the vault serializes its own writes); closing takes the
    /// write lock, so it waits for operations under way.
    Direct(Box<RwLock<Option<Vault>>>),
    /// A connection to the agent holding the vault; `None` once closed. One request at
    /// a time goes over it.
    Agent(Mutex<Option<AgentClient>>),
}

/// An open vault: one this process unlocked, or the running agent of an unlocked one.
/// Safe to share between threads: calls on one handle are serialized where they must
/// be (the agent connection) and run side by side where the vault allows it.
#[pyclass(frozen, module = "keyvault._native", name = "VaultHandle")]
struct Handle {
    backend: Backend,
    path: PathBuf,
}

fn closed() -> Error {
    Error::Usage("the vault was closed".into())
}

impl Handle {
    /// Runs one request.
    fn run(&self, request: Request) -> Result<Response> {
        match &self.backend {
            Backend::Direct(lock) => {
                let guard = lock.read().unwrap_or_else(|p| p.into_inner());
                guard.as_ref().ok_or_else(closed)?.execute(request)
            }
            Backend::Agent(lock) => {
                let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let client = guard.as_mut().ok_or_else(closed)?;
                let user = request.user().map(str::to_string);
                let new_key = match &request {
                    Request::Generate { name, key_type, .. } => Some(
                        name.clone()
                            .unwrap_or_else(|| key_type.as_str().to_string()),
                    ),
                    Request::Import { name, .. } => Some(name.clone()),
                    _ => None,
                };
                match client.op_or_back(request) {
                    Ok(OpOutcome::Answered(response)) => Ok(response),
                    // The agent locked (its socket is gone): this handle's vault is
                    // locked, whatever broke on the way.
                    Ok(OpOutcome::NotCarriedOut(..)) | Err(_) if !client.socket_path().exists() => {
                        Err(Error::Locked(self.path.clone()))
                    }
                    Ok(OpOutcome::NotCarriedOut(e, _)) => Err(e),
                    Err(e) => Err(refine_remote(client, e, user, new_key)),
                }
            }
        }
    }

    /// Runs one request without the GIL.
    fn call(&self, py: Python<'_>, request: Request) -> PyResult<Response> {
        detached(py, || self.run(request))
    }
}

/// The agent answers an error with its exit code and text. A refusal is made the same
/// typed error a directly opened vault gives, so that Python sees the same class on
/// both paths: `Revoked` when the user is revoked, `AlreadyExists` when a new key's
/// name is taken (asked of the agent after the refusal; other refusals stay `Refused`).
fn refine_remote(
    client: &mut AgentClient,
    e: Error,
    user: Option<String>,
    new_key: Option<String>,
) -> Error {
    let (
        Error::Remote {
            code: Exit::Refused,
            message,
            ..
        },
        Some(user),
    ) = (&e, user)
    else {
        return e;
    };
    let message = message.clone();
    match client.op(Request::IsRevoked { user: user.clone() }) {
        Ok(Response::Revocation(Some(r))) => {
            return Error::UserRevoked {
                user: r.user,
                revoked_at: r.revoked_at.to_string(),
            };
        }
        Ok(Response::Revocation(None)) => {}
        _ => return e,
    }
    if let Some(name) = new_key
        && let Ok(Response::Key(_)) = client.op(Request::KeyInfo { user, name })
    {
        return Error::AlreadyExists(message);
    }
    e
}

fn unexpected() -> PyErr {
    PyErr::new::<InternalError, _>("unexpected answer from the vault")
}

fn parse_key_type(s: &str) -> Result<KeyType> {
    s.parse()
}

fn parse_scheme(s: Option<&str>) -> Result<Option<RsaScheme>> {
    s.map(str::parse).transpose()
}

fn parse_format(s: Option<&str>) -> Result<Option<ExportFormat>> {
    s.map(|f| match f {
        "pem" => Ok(ExportFormat::Pem),
        "der" => Ok(ExportFormat::Der),
        "base64" => Ok(ExportFormat::Base64),
        "jwk" => Ok(ExportFormat::Jwk),
        other => Err(Error::Usage(format!(
            "unknown export format {other:?}; expected pem, der, base64 or jwk"
        ))),
    })
    .transpose()
}

/// Converts a parse error to a Python exception (with the GIL held).
fn arg<T>(py: Python<'_>, r: Result<T>) -> PyResult<T> {
    r.map_err(|e| to_py(py, &e))
}

#[pymethods]
impl Handle {
    /// Whether requests go to the vault's running agent (else this process opened it).
    #[getter]
    fn via_agent(&self) -> bool {
        matches!(self.backend, Backend::Agent(_))
    }

    /// The vault directory.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        match &self.backend {
            Backend::Direct(l) => l.read().unwrap_or_else(|p| p.into_inner()).is_none(),
            Backend::Agent(l) => l.lock().unwrap_or_else(|p| p.into_inner()).is_none(),
        }
    }

    /// Closes the vault (flushing it and letting other processes open it) or the
    /// connection to the agent (which keeps running). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || {
            match &self.backend {
                Backend::Direct(l) => {
                    let vault = l.write().unwrap_or_else(|p| p.into_inner()).take();
                    drop(vault);
                }
                Backend::Agent(l) => {
                    let client = l.lock().unwrap_or_else(|p| p.into_inner()).take();
                    drop(client);
                }
            }
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<keyvault handle {} ({})>",
            self.path.display(),
            if self.via_agent() { "agent" } else { "direct" }
        )
    }

    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match self.call(py, Request::Status)? {
            Response::Status(s) => status_dict(py, &s),
            _ => Err(unexpected()),
        }
    }

    #[pyo3(signature = (user, key_type, name=None))]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        user: String,
        key_type: &str,
        name: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let key_type = arg(py, parse_key_type(key_type))?;
        let r = self.call(
            py,
            Request::Generate {
                user,
                name,
                key_type,
            },
        )?;
        key_of(py, r)
    }

    #[pyo3(signature = (user, name, key_type, material, public_only=false))]
    fn import_key<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
        key_type: &str,
        material: &[u8],
        public_only: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let key_type = arg(py, parse_key_type(key_type))?;
        let r = self.call(
            py,
            Request::Import {
                user,
                name,
                key_type,
                material: Zeroizing::new(material.to_vec()),
                public_only,
            },
        )?;
        key_of(py, r)
    }

    #[pyo3(signature = (user, name, public=false, version=None, format=None))]
    fn export<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
        public: bool,
        version: Option<u32>,
        format: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let format = arg(py, parse_format(format))?;
        let options = ExportOptions {
            public,
            version,
            format,
        };
        match self.call(
            py,
            Request::Export {
                user,
                name,
                options,
            },
        )? {
            Response::Material(m) => Ok(PyBytes::new(py, &m)),
            _ => Err(unexpected()),
        }
    }

    #[pyo3(signature = (user=None))]
    fn list<'py>(&self, py: Python<'py>, user: Option<String>) -> PyResult<Bound<'py, PyList>> {
        match self.call(py, Request::List { user })? {
            Response::Keys(keys) => {
                let out = PyList::empty(py);
                for k in &keys {
                    out.append(key_dict(py, k)?)?;
                }
                Ok(out)
            }
            _ => Err(unexpected()),
        }
    }

    fn key_info<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.call(py, Request::KeyInfo { user, name })?;
        key_of(py, r)
    }

    fn delete<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.call(py, Request::Delete { user, name })?;
        key_of(py, r)
    }

    fn rotate<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.call(py, Request::Rotate { user, name })?;
        key_of(py, r)
    }

    #[pyo3(signature = (user, reason=None))]
    fn revoke<'py>(
        &self,
        py: Python<'py>,
        user: String,
        reason: Option<String>,
    ) -> PyResult<(bool, Bound<'py, PyDict>)> {
        match self.call(
            py,
            Request::Revoke {
                user,
                reason,
                purge: false,
            },
        )? {
            Response::Revoke(o) => Ok((o.already_revoked, revocation_dict(py, &o.receipt)?)),
            _ => Err(unexpected()),
        }
    }

    fn revocation<'py>(
        &self,
        py: Python<'py>,
        user: String,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        match self.call(py, Request::IsRevoked { user })? {
            Response::Revocation(r) => r.as_ref().map(|r| revocation_dict(py, r)).transpose(),
            _ => Err(unexpected()),
        }
    }

    fn revoked<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        match self.call(py, Request::Revoked)? {
            Response::Revocations(all) => {
                let out = PyList::empty(py);
                for r in &all {
                    out.append(revocation_dict(py, r)?)?;
                }
                Ok(out)
            }
            _ => Err(unexpected()),
        }
    }

    fn encrypt<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
        plaintext: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let request = Request::Encrypt {
            user,
            name,
            plaintext: Zeroizing::new(plaintext.to_vec()),
        };
        match self.call(py, request)? {
            Response::Produced(used) => Ok(PyBytes::new(py, &used.value)),
            _ => Err(unexpected()),
        }
    }

    #[pyo3(signature = (user, name, ciphertext, ttl=None))]
    fn decrypt<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
        ciphertext: &[u8],
        ttl: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let request = Request::Decrypt {
            user,
            name,
            ciphertext: ciphertext.to_vec(),
            ttl,
        };
        match self.call(py, request)? {
            Response::Plaintext { plaintext, .. } => Ok(PyBytes::new(py, &plaintext)),
            _ => Err(unexpected()),
        }
    }

    #[pyo3(signature = (user, name, message, scheme=None))]
    fn sign<'py>(
        &self,
        py: Python<'py>,
        user: String,
        name: String,
        message: &[u8],
        scheme: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let scheme = arg(py, parse_scheme(scheme))?;
        let request = Request::Sign {
            user,
            name,
            scheme,
            message: Zeroizing::new(message.to_vec()),
        };
        match self.call(py, request)? {
            Response::Produced(used) => Ok(PyBytes::new(py, &used.value)),
            _ => Err(unexpected()),
        }
    }

    #[pyo3(signature = (user, name, message, signature, scheme=None))]
    fn verify(
        &self,
        py: Python<'_>,
        user: String,
        name: String,
        message: &[u8],
        signature: &[u8],
        scheme: Option<&str>,
    ) -> PyResult<bool> {
        let scheme = arg(py, parse_scheme(scheme))?;
        let request = Request::Verify {
            user,
            name,
            scheme,
            message: Zeroizing::new(message.to_vec()),
            signature: signature.to_vec(),
        };
        match self.call(py, request)? {
            Response::Verified(v) => Ok(v.is_some()),
            _ => Err(unexpected()),
        }
    }
}

/// The vault directory named by `path`, `KEYVAULT_PATH`, or the platform default.
fn resolve_path(path: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = path {
        return Ok(p);
    }
    match std::env::var_os("KEYVAULT_PATH") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => vault::default_path().ok_or_else(|| {
            Error::Usage("cannot find the platform data directory; pass a vault path".into())
        }),
    }
}

/// The vault directory that `open(path)` would use.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn vault_path(py: Python<'_>, path: Option<PathBuf>) -> PyResult<String> {
    Ok(arg(py, resolve_path(path))?.to_string_lossy().into_owned())
}

/// Connects to the running agent of the vault at `path`; None when it is locked.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn connect_agent(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Option<Handle>> {
    let path = arg(py, resolve_path(path))?;
    let client = detached(py, || AgentClient::connect(&path))?;
    Ok(client.map(|c| Handle {
        backend: Backend::Agent(Mutex::new(Some(c))),
        path,
    }))
}

/// Where the passphrase comes from, first match wins: `passphrase`, `passphrase_file`,
/// `KEYVAULT_PASSPHRASE_FILE`, `KEYVAULT_PASSPHRASE`, then `ask()` (a callable that
/// returns it, or None when it cannot ask). With none, `Locked`.
fn obtain_passphrase(
    py: Python<'_>,
    passphrase: Option<&[u8]>,
    passphrase_file: Option<PathBuf>,
    ask: Option<Bound<'_, PyAny>>,
) -> PyResult<Zeroizing<Vec<u8>>> {
    if let Some(p) = passphrase {
        return Ok(Zeroizing::new(p.to_vec()));
    }
    let file = passphrase_file.or_else(|| {
        std::env::var_os("KEYVAULT_PASSPHRASE_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    });
    if let Some(file) = file {
        return detached(py, || {
            keyvault::passphrase_file::read(&file).map(|f| f.passphrase)
        });
    }
    if let Some(value) = std::env::var_os("KEYVAULT_PASSPHRASE") {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Zeroizing::new(value.into_vec()));
    }
    if let Some(ask) = ask {
        let answer = ask.call0()?;
        if !answer.is_none() {
            let bytes = if answer.is_instance_of::<PyString>() {
                answer.call_method1("encode", ("utf-8",))?
            } else {
                answer
            };
            return Ok(Zeroizing::new(bytes.extract::<&[u8]>()?.to_vec()));
        }
    }
    Err(to_py(
        py,
        &Error::NoPassphrase(
            "no passphrase is available: none given, no passphrase file, no KEYVAULT_PASSPHRASE, and no terminal to ask on".into(),
        ),
    ))
}

/// Opens and unlocks the vault at `path` in this process.
#[pyfunction]
#[pyo3(signature = (path=None, passphrase=None, passphrase_file=None, ask=None, accept_rollback=false))]
fn open_direct(
    py: Python<'_>,
    path: Option<PathBuf>,
    passphrase: Option<&[u8]>,
    passphrase_file: Option<PathBuf>,
    ask: Option<Bound<'_, PyAny>>,
    accept_rollback: bool,
) -> PyResult<Handle> {
    let path = arg(py, resolve_path(path))?;
    // Say "no vault" before asking for a passphrase that cannot help.
    if !keyvault::store::layout::exists(&path) {
        return Err(to_py(py, &Error::VaultNotFound(path)));
    }
    let secret = obtain_passphrase(py, passphrase, passphrase_file, ask)?;
    let options = OpenOptions { accept_rollback };
    let vault = detached(py, || Vault::open_with(&path, &secret, options))?;
    Ok(Handle {
        backend: Backend::Direct(Box::new(RwLock::new(Some(vault)))),
        path,
    })
}

/// Creates a vault at `path` protected by `passphrase`; KDF parameters default to the
/// command line's (Argon2id, 64 MiB, 3 passes, 4 lanes).
#[pyfunction]
#[pyo3(signature = (path, passphrase, kdf_memory_kib=None, kdf_iterations=None, kdf_parallelism=None, allow_weak_kdf=false))]
fn create(
    py: Python<'_>,
    path: PathBuf,
    passphrase: &[u8],
    kdf_memory_kib: Option<u32>,
    kdf_iterations: Option<u32>,
    kdf_parallelism: Option<u32>,
    allow_weak_kdf: bool,
) -> PyResult<()> {
    let default = KdfParams::default();
    let kdf = KdfParams {
        memory_kib: kdf_memory_kib.unwrap_or(default.memory_kib),
        iterations: kdf_iterations.unwrap_or(default.iterations),
        parallelism: kdf_parallelism.unwrap_or(default.parallelism),
    };
    let secret = Zeroizing::new(passphrase.to_vec());
    detached(py, || {
        Vault::create(&path, &secret, kdf, allow_weak_kdf).map(drop)
    })
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Handle>()?;
    m.add_function(wrap_pyfunction!(vault_path, m)?)?;
    m.add_function(wrap_pyfunction!(connect_agent, m)?)?;
    m.add_function(wrap_pyfunction!(open_direct, m)?)?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    let classes = [
        ("KeyvaultError", py.get_type::<KeyvaultError>(), Exit::Other),
        ("UsageError", py.get_type::<UsageError>(), Exit::Usage),
        (
            "WrongPassphrase",
            py.get_type::<WrongPassphrase>(),
            Exit::WrongPassphrase,
        ),
        ("Locked", py.get_type::<Locked>(), Exit::NoPassphrase),
        ("NotFound", py.get_type::<NotFound>(), Exit::NotFound),
        ("Refused", py.get_type::<Refused>(), Exit::Refused),
        ("Revoked", py.get_type::<Revoked>(), Exit::Refused),
        (
            "AlreadyExists",
            py.get_type::<AlreadyExists>(),
            Exit::Refused,
        ),
        (
            "IntegrityError",
            py.get_type::<IntegrityError>(),
            Exit::Integrity,
        ),
        ("InternalError", py.get_type::<InternalError>(), Exit::Other),
        ("VaultInUse", py.get_type::<VaultInUse>(), Exit::Other),
    ];
    for (name, class, code) in classes {
        class.setattr("exit_code", code.code())?;
        class.setattr("hint", py.None())?;
        m.add(name, class)?;
    }
    m.add("KEY_TYPES", KeyType::ALL.map(KeyType::as_str).to_vec())?;
    Ok(())
}
