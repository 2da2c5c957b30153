"""keyvault from Python: the persistent, encrypted key vault of the `keyvault` command.

    import keyvault
    v = keyvault.open()                      # through the agent if unlocked, else asks
    v.generate("User123", "fernet")
    token = v.encrypt("User123", "fernet", b"data")
    v.decrypt("User123", "fernet", token)

`keyvault.open()` finds the vault where the command line does (`path`, else
`KEYVAULT_PATH`, else the platform data directory). When `keyvault unlock` has started
an agent for it, every call goes to that agent and no passphrase is needed. Otherwise
this process opens the vault itself, with the passphrase from, first match wins:
`passphrase=`, `passphrase_file=`, `KEYVAULT_PASSPHRASE_FILE`, `KEYVAULT_PASSPHRASE`,
then a `getpass` prompt on the terminal. A vault opened that way stays open (and other
processes wait for it) until `close()`, the end of a `with` block, or the end of the
process.

A `Vault` may be shared between threads; the GIL is released while keys are derived,
while crypto runs and during I/O. Errors are `KeyvaultError` subclasses that follow the
command line's exit codes. Nothing secret appears in a `repr` or an error message; key
material comes back as `bytes` only from `export` and `fernet`.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _native
from ._native import (
    AlreadyExists,
    IntegrityError,
    InternalError,
    KeyvaultError,
    Locked,
    NotFound,
    Refused,
    Revoked,
    UsageError,
    VaultInUse,
    WrongPassphrase,
)

__all__ = [
    "AlreadyExists",
    "DestroyedKey",
    "IntegrityError",
    "InternalError",
    "KEY_TYPES",
    "KeyInfo",
    "KeyvaultError",
    "Locked",
    "NotFound",
    "Refused",
    "Revocation",
    "Revoked",
    "UsageError",
    "Vault",
    "VaultInUse",
    "WrongPassphrase",
    "create",
    "open",
    "vault_path",
]

#: The key types a vault holds, as `generate` takes them.
KEY_TYPES: Tuple[str, ...] = tuple(_native.KEY_TYPES)

PathLike = Union[str, "os.PathLike[str]"]
Secret = Union[str, bytes]


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """A key, without its secret. `version` is the primary version's number and
    `fingerprint` its fingerprint; `versions` lists every version held."""

    id: str
    user: str
    name: str
    type: str
    version: int
    fingerprint: str
    created: str = ""
    public_only: bool = False
    versions: Tuple[int, ...] = ()

    @classmethod
    def _of(cls, d: Dict[str, Any]) -> "KeyInfo":
        return cls(
            id=d["id"],
            user=d["user"],
            name=d["name"],
            type=d["type"],
            version=d["version"],
            fingerprint=d["fingerprint"],
            created=d["created"],
            public_only=d["public_only"],
            versions=tuple(d["versions"]),
        )


@dataclasses.dataclass(frozen=True)
class DestroyedKey:
    """A key destroyed by a revocation."""

    id: str
    name: str
    type: str
    versions: Tuple[int, ...]
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class Revocation:
    """A revoked user: when, why, and the keys the revocation destroyed.
    `already_revoked` is True when `revoke` found the user revoked before (the
    revocation is then the first one)."""

    user: str
    revoked_at: str
    reason: Optional[str]
    destroyed: Tuple[DestroyedKey, ...] = ()
    already_revoked: bool = False

    @classmethod
    def _of(cls, d: Dict[str, Any], already_revoked: bool = False) -> "Revocation":
        return cls(
            user=d["user"],
            revoked_at=d["revoked_at"],
            reason=d["reason"],
            destroyed=tuple(
                DestroyedKey(
                    id=k["id"],
                    name=k["name"],
                    type=k["type"],
                    versions=tuple(k["versions"]),
                    fingerprint=k["fingerprint"],
                )
                for k in d["destroyed"]
            ),
            already_revoked=already_revoked,
        )


def _bytes(data: Union[bytes, bytearray, memoryview, str], what: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


class Vault:
    """An open vault. Get one from `keyvault.open()`."""

    __slots__ = ("_h", "__weakref__")

    def __init__(self, handle: Any) -> None:
        self._h = handle

    # -- the handle ---------------------------------------------------------------
    @property
    def path(self) -> str:
        """The vault directory."""
        return str(self._h.path)

    @property
    def via_agent(self) -> bool:
        """True when calls go to the vault's running agent; False when this process
        opened the vault with its passphrase."""
        return bool(self._h.via_agent)

    @property
    def closed(self) -> bool:
        return bool(self._h.closed)

    def close(self) -> None:
        """Closes the vault (other processes can then open it) or, through the agent,
        the connection (the agent keeps running). Calling it again does nothing."""
        self._h.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "agent" if self.via_agent else "direct"
        state = ", closed" if self.closed else ""
        return f"<keyvault.Vault {self.path!r} ({how}{state})>"

    # -- keys -----------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        """Counts of users, keys and revoked users, the path and the format version."""
        return dict(self._h.status())

    def generate(self, user: str, key_type: str = "fernet", name: Optional[str] = None) -> KeyInfo:
        """Generates and stores a key of `key_type` (see `KEY_TYPES`) for `user`,
        named `name` (default: the type's name). Returns its description; the secret
        never leaves the vault."""
        return KeyInfo._of(self._h.generate(user, key_type, name))

    def import_key(
        self,
        user: str,
        name: str,
        key_type: str,
        material: Union[bytes, str],
        public_only: bool = False,
    ) -> KeyInfo:
        """Stores an existing key: PEM or DER (PKCS#8, PKCS#1; SPKI with
        `public_only=True`), or base64 for symmetric keys (a Fernet key as
        `Fernet.generate_key()` makes it)."""
        return KeyInfo._of(
            self._h.import_key(user, name, key_type, _bytes(material, "material"), public_only)
        )

    def export(
        self,
        user: str,
        name: str,
        public: bool = False,
        version: Optional[int] = None,
        format: Optional[str] = None,
    ) -> bytes:
        """The key material (this is the one call that returns a secret, besides
        `fernet`). `format`: "pem", "der", "base64" or "jwk"; default base64 for
        symmetric keys, PEM for key pairs. `public=True` gives the public half."""
        return self._h.export(user, name, public, version, format)

    def list(self, user: Optional[str] = None) -> List[KeyInfo]:
        """Every key (of `user`, or of everyone), without secrets."""
        return [KeyInfo._of(d) for d in self._h.list(user)]

    def key_info(self, user: str, name: str) -> KeyInfo:
        return KeyInfo._of(self._h.key_info(user, name))

    def rotate(self, user: str, name: str) -> KeyInfo:
        """Adds a version; it becomes the primary one, older ones still decrypt and verify."""
        return KeyInfo._of(self._h.rotate(user, name))

    def delete(self, user: str, name: str) -> KeyInfo:
        """Destroys one key, every version. Returns what was destroyed."""
        return KeyInfo._of(self._h.delete(user, name))

    # -- use ------------------------------------------------------------------------
    def encrypt(self, user: str, name: str, data: Union[bytes, str]) -> bytes:
        """Encrypts `data`: a Fernet token (fernet keys, as Python's Fernet makes) or
        RSA-OAEP-SHA256 (RSA keys, short inputs)."""
        return self._h.encrypt(user, name, _bytes(data, "data"))

    def decrypt(
        self, user: str, name: str, token: Union[bytes, str], ttl: Optional[int] = None
    ) -> bytes:
        """Decrypts a Fernet token (any version of the key, as MultiFernet; `ttl`
        refuses tokens older than that many seconds) or an RSA-OAEP ciphertext.
        A token that does not authenticate raises `IntegrityError`."""
        return self._h.decrypt(user, name, _bytes(token, "token"), ttl)

    def sign(
        self, user: str, name: str, message: Union[bytes, str], scheme: Optional[str] = None
    ) -> bytes:
        """Signs `message` (RSA: PSS-SHA256, or scheme="pkcs1v15"; Ed25519)."""
        return self._h.sign(user, name, _bytes(message, "message"), scheme)

    def verify(
        self,
        user: str,
        name: str,
        message: Union[bytes, str],
        signature: bytes,
        scheme: Optional[str] = None,
    ) -> bool:
        """Whether `signature` is a valid signature of `message` under any version."""
        return self._h.verify(user, name, _bytes(message, "message"), bytes(signature), scheme)

    def fernet(self, user: str, name: str = "fernet") -> Any:
        """The key as a `cryptography.fernet.Fernet` (a `MultiFernet`, newest version
        first, when it has several), for code that wants the key in its own process.
        Needs the `cryptography` package."""
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Vault.fernet needs the cryptography package: pip install cryptography"
            ) from e
        info = self.key_info(user, name)
        if info.type != "fernet":
            raise UsageError(f"{user}/{name} is a {info.type} key, not a fernet key")
        keys = [
            Fernet(self.export(user, name, version=v, format="base64"))
            for v in sorted(info.versions, reverse=True)
        ]
        return keys[0] if len(keys) == 1 else MultiFernet(keys)

    # -- revocation -----------------------------------------------------------------
    def revoke(self, user: str, reason: Optional[str] = None) -> Revocation:
        """Destroys every key of `user` and marks the user revoked: no new key is ever
        made for them. Returns the receipt (the first one if already revoked)."""
        already, d = self._h.revoke(user, reason)
        return Revocation._of(d, already)

    def is_revoked(self, user: str) -> bool:
        return self._h.revocation(user) is not None

    def revocation(self, user: str) -> Optional[Revocation]:
        d = self._h.revocation(user)
        return None if d is None else Revocation._of(d)

    def revoked(self) -> List[Revocation]:
        """Every revoked user, with time and reason."""
        return [Revocation._of(d) for d in self._h.revoked()]


def vault_path(path: Optional[PathLike] = None) -> str:
    """The vault directory `open(path)` uses: `path`, `KEYVAULT_PATH`, or the platform
    data directory."""
    return str(_native.vault_path(None if path is None else os.fspath(path)))


def _terminal_prompt() -> Optional[str]:
    """Asks on the terminal without echo; None when there is no terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        return None
    return getpass.getpass("Passphrase: ")


def open(  # noqa: A001 - the module's entry point, like io.open
    path: Optional[PathLike] = None,
    *,
    passphrase: Optional[Secret] = None,
    passphrase_file: Optional[PathLike] = None,
    agent: bool = True,
    prompt: bool = True,
    accept_rollback: bool = False,
) -> Vault:
    """Opens the vault at `path` (default: `KEYVAULT_PATH`, else the platform data
    directory): through its running agent when it is unlocked and `agent` is true,
    else in this process with the passphrase (see the module's doc for where it comes
    from; `prompt=False` never asks on the terminal).

    Raises `NotFound` when there is no vault, `Locked` when no passphrase is available,
    `WrongPassphrase`, and `VaultInUse` when another process has it open."""
    p = None if path is None else os.fspath(path)
    if agent:
        handle = _native.connect_agent(p)
        if handle is not None:
            return Vault(handle)
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    handle = _native.open_direct(
        p,
        passphrase,
        None if passphrase_file is None else os.fspath(passphrase_file),
        _terminal_prompt if prompt else None,
        accept_rollback,
    )
    return Vault(handle)


def create(
    path: PathLike,
    passphrase: Secret,
    *,
    kdf_memory_kib: Optional[int] = None,
    kdf_iterations: Optional[int] = None,
    kdf_parallelism: Optional[int] = None,
    allow_weak_kdf: bool = False,
) -> None:
    """Creates a new vault at `path` (as `keyvault init`): Argon2id with 64 MiB, 3
    passes and 4 lanes unless told otherwise; parameters below OWASP's floor need
    `allow_weak_kdf=True` (tests only). Refuses with `AlreadyExists` if one is there."""
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    _native.create(
        os.fspath(path),
        passphrase,
        kdf_memory_kib,
        kdf_iterations,
        kdf_parallelism,
        allow_weak_kdf,
    )

