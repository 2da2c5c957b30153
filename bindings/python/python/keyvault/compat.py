"""The Python prototype's six functions, with its signatures and its messages, on the
persistent vault.

    from keyvault.compat import (generate_symmetric_key, generate_asymmetric_keys,
                                 store_key, revoke_key, is_key_revoked, print_revoked_keys)

The prototype kept keys in a dict and revoked users in a set, and lost both on exit.
These functions keep them in the default vault instead (where `keyvault.open()` finds
it: `KEYVAULT_PATH`, the running agent, the passphrase sources), opened on the first
call and kept open until the process ends (`close()` lets go of it earlier). A second
process, or the `keyvault` command, sees what they stored and revoked.

How the prototype's key types land in the vault:

- `store_key(user, "symmetric", key)`: `key` is a Fernet key (`bytes` as
  `Fernet.generate_key()` returns it); stored as a `fernet` key named "symmetric".
- `store_key(user, "private", key)`: a `cryptography` RSA private key object (or its
  PEM/DER PKCS#8 bytes); stored as an `rsa-<bits>` key pair named "private". An
  Ed25519 private key becomes an `ed25519` pair the same way.
- `store_key(user, "public", key)`: a public key object (or SPKI PEM/DER). If it is the
  public half of the pair already stored as "private", nothing new is stored: the
  vault holds it with that pair. Otherwise it is stored, public only, under "public".

Where the prototype silently replaced a key stored twice under the same key type, the
vault refuses (`keyvault.AlreadyExists`): it never overwrites a key.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Optional, Tuple

import keyvault

__all__ = [
    "close",
    "generate_asymmetric_keys",
    "generate_symmetric_key",
    "is_key_revoked",
    "print_revoked_keys",
    "revoke_key",
    "store_key",
]

_vault: Optional[keyvault.Vault] = None


def _v() -> keyvault.Vault:
    global _vault
    if _vault is None or _vault.closed:
        _vault = keyvault.open()
    return _vault


def close() -> None:
    """Closes the vault these functions opened (the next call opens it again)."""
    global _vault
    if _vault is not None:
        _vault.close()
        _vault = None


def generate_symmetric_key() -> bytes:
    """A new Fernet key (url-safe base64 of 32 random bytes), as `Fernet.generate_key()`."""
    return base64.urlsafe_b64encode(os.urandom(32))


def generate_asymmetric_keys() -> Tuple[Any, Any]:
    """A new RSA-2048 key pair as `cryptography` objects: (private_key, public_key)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_key = private_key.public_key()
    return private_key, public_key


def _pkcs8_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _spki_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def _load(key: Any, private: bool) -> Any:
    """A `cryptography` key object from an object or PEM/DER bytes."""
    if not isinstance(key, (bytes, bytearray, str)):
        return key
    from cryptography.hazmat.primitives import serialization

    data = key.encode() if isinstance(key, str) else bytes(key)
    pem = data.lstrip().startswith(b"-----")
    if private:
        load = serialization.load_pem_private_key if pem else serialization.load_der_private_key
        return load(data, password=None)
    load_pub = serialization.load_pem_public_key if pem else serialization.load_der_public_key
    return load_pub(data)


def _asym_type(key: Any) -> str:
    size = getattr(key, "key_size", None)
    if size is not None:
        return f"rsa-{size}"
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    raise keyvault.UsageError(
        f"cannot store a {type(key).__name__}: the vault holds RSA and Ed25519 key pairs"
    )


def _has_key(v: keyvault.Vault, user_id: str, name: str) -> bool:
    try:
        v.key_info(user_id, name)
        return True
    except keyvault.NotFound:
        return False


def store_key(user_id: str, key_type: str, key: Any) -> None:
    """Stores `key` for `user_id` under `key_type` ("symmetric", "private" or
    "public"); refused, with the prototype's message, for a revoked user."""
    v = _v()
    if v.is_revoked(user_id):
        print(f"Cannot store key for {user_id}, as they are revoked.")
        return
    if key_type == "symmetric":
        v.import_key(user_id, "symmetric", "fernet", key)
    elif key_type == "private":
        obj = _load(key, private=True)
        v.import_key(user_id, "private", _asym_type(obj), _pkcs8_der(obj))
    elif key_type == "public":
        obj = _load(key, private=False)
        spki = _spki_der(obj)
        pair_holds_it = _has_key(v, user_id, "private") and (
            v.export(user_id, "private", public=True, format="der") == spki
        )
        if not pair_holds_it:
            v.import_key(user_id, "public", _asym_type(obj), spki, public_only=True)
    else:
        raise keyvault.UsageError(
            f"unknown key type {key_type!r}: expected 'symmetric', 'private' or 'public'"
        )
    print(f"Stored {key_type} key for {user_id}")


def revoke_key(user_id: str) -> None:
    """Revokes `user_id`: destroys every key of theirs and records the revocation."""
    v = _v()
    try:
        has_keys = bool(v.list(user_id))
    except (keyvault.NotFound, keyvault.Revoked):
        has_keys = False
    if has_keys:
        v.revoke(user_id)
        print(f"Revoked all keys for {user_id}")
    else:
        print(f"No keys found for {user_id}")


def is_key_revoked(user_id: str) -> bool:
    """Whether `user_id` was revoked."""
    return _v().is_revoked(user_id)


def print_revoked_keys() -> None:
    """Prints the revoked users."""
    revoked = _v().revoked()
    if revoked:
        print("\nRevoked Keys List:")
        for r in revoked:
            print(f"- {r.user}")
    else:
        print("\nNo revoked keys found.")
