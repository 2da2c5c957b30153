//! Library values as Python dicts.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use keyvault::ops::Response;
use keyvault::vault::types::{DestroyedKeyInfo, KeyInfo, RevocationInfo, VaultStatus};

use crate::unexpected;

pub(crate) fn key_dict<'py>(py: Python<'py>, k: &KeyInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", &k.id)?;
    d.set_item("user", &k.user)?;
    d.set_item("name", &k.name)?;
    d.set_item("type", k.key_type.0.as_str())?;
    d.set_item("version", k.primary_version)?;
    d.set_item("fingerprint", &k.fingerprint)?;
    d.set_item("created", k.created.to_string())?;
    d.set_item("public_only", k.public_only)?;
    let versions: Vec<u32> = k.versions.iter().map(|v| v.version).collect();
    d.set_item("versions", versions)?;
    Ok(d)
}

pub(crate) fn destroyed_dict<'py>(
    py: Python<'py>,
    k: &DestroyedKeyInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", &k.id)?;
    d.set_item("name", &k.name)?;
    d.set_item("type", k.key_type.0.as_str())?;
    d.set_item("versions", k.versions.clone())?;
    d.set_item("fingerprint", &k.fingerprint)?;
    Ok(d)
}

pub(crate) fn revocation_dict<'py>(
    py: Python<'py>,
    r: &RevocationInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("user", &r.user)?;
    d.set_item("revoked_at", r.revoked_at.to_string())?;
    d.set_item("reason", r.reason.as_deref())?;
    let destroyed = PyList::empty(py);
    for k in &r.destroyed {
        destroyed.append(destroyed_dict(py, k)?)?;
    }
    d.set_item("destroyed", destroyed)?;
    Ok(d)
}

pub(crate) fn status_dict<'py>(py: Python<'py>, s: &VaultStatus) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("path", &s.path)?;
    d.set_item("format_version", s.format_version)?;
    d.set_item("users", s.users)?;
    d.set_item("keys", s.keys)?;
    d.set_item("revoked_users", s.revoked_users)?;
    Ok(d)
}

pub(crate) fn key_of<'py>(py: Python<'py>, r: Response) -> PyResult<Bound<'py, PyDict>> {
    match r {
        Response::Key(k) | Response::Deleted(k) => key_dict(py, &k),
        _ => Err(unexpected()),
    }
}
