"""Every exception class, on the path where it arises; each follows the command
line's exit code and says nothing secret."""

import os

import pytest

import keyvault

from conftest import FAST_KDF, PASSPHRASE

EXIT_CODES = {
    keyvault.KeyvaultError: 8,
    keyvault.UsageError: 2,
    keyvault.WrongPassphrase: 3,
    keyvault.Locked: 4,
    keyvault.NotFound: 5,
    keyvault.Refused: 6,
    keyvault.Revoked: 6,
    keyvault.AlreadyExists: 6,
    keyvault.IntegrityError: 7,
    keyvault.InternalError: 8,
    keyvault.VaultInUse: 8,
}


def test_hierarchy_and_exit_codes():
    for cls, code in EXIT_CODES.items():
        assert issubclass(cls, keyvault.KeyvaultError)
        assert issubclass(cls, Exception)
        assert cls.exit_code == code, cls
    assert issubclass(keyvault.Revoked, keyvault.Refused)
    assert issubclass(keyvault.AlreadyExists, keyvault.Refused)
    assert issubclass(keyvault.VaultInUse, keyvault.InternalError)


def raised(excinfo, cls):
    e = excinfo.value
    assert type(e) is cls, f"{type(e).__name__}: {e}"
    assert e.exit_code == EXIT_CODES[cls]
    assert PASSPHRASE not in str(e)
    return e


def test_usage_error(vault):
    with pytest.raises(keyvault.UsageError) as ei:
        vault.generate("User123", "no-such-type")
    raised(ei, keyvault.UsageError)
    vault.generate("User123", "ed25519")
    with pytest.raises(keyvault.UsageError) as ei:
        vault.encrypt("User123", "ed25519", b"x")
    raised(ei, keyvault.UsageError)


def test_wrong_passphrase(env, vault_dir):
    with pytest.raises(keyvault.WrongPassphrase) as ei:
        keyvault.open(passphrase="not the passphrase", prompt=False)
    e = raised(ei, keyvault.WrongPassphrase)
    assert "not the passphrase" not in str(e)
    assert e.hint


def test_locked_without_passphrase(env, vault_dir):
    with pytest.raises(keyvault.Locked) as ei:
        keyvault.open(prompt=False)
    raised(ei, keyvault.Locked)


def test_prompt_is_asked_last(env, vault_dir, monkeypatch):
    asked = []
    monkeypatch.setattr(keyvault, "_terminal_prompt", lambda: asked.append(1) or PASSPHRASE)
    with keyvault.open() as v:
        assert not v.via_agent
    assert asked == [1]


def test_not_found(env, vault):
    with pytest.raises(keyvault.NotFound) as ei:
        vault.key_info("nobody", "fernet")
    raised(ei, keyvault.NotFound)
    with pytest.raises(keyvault.NotFound) as ei:
        keyvault.open(os.path.join(env.root, "no-vault"), passphrase=PASSPHRASE)
    raised(ei, keyvault.NotFound)


def test_already_exists(vault):
    vault.generate("User123", "fernet")
    with pytest.raises(keyvault.AlreadyExists) as ei:
        vault.generate("User123", "fernet")
    raised(ei, keyvault.AlreadyExists)


def test_revoked_on_both_paths(vault):
    vault.generate("User123", "fernet")
    vault.revoke("User123")
    with pytest.raises(keyvault.Revoked) as ei:
        vault.generate("User123", "fernet")
    e = raised(ei, keyvault.Revoked)
    assert "User123" in str(e)


def test_refused_weak_kdf(env):
    weak = dict(FAST_KDF, allow_weak_kdf=False)
    with pytest.raises(keyvault.Refused) as ei:
        keyvault.create(os.path.join(env.root, "weak"), PASSPHRASE, **weak)
    raised(ei, keyvault.Refused)


def test_integrity_error(vault):
    vault.generate("User123", "fernet")
    token = bytearray(vault.encrypt("User123", "fernet", b"data"))
    token[20] = ord("A") if token[20] != ord("A") else ord("B")
    with pytest.raises(keyvault.IntegrityError) as ei:
        vault.decrypt("User123", "fernet", bytes(token))
    raised(ei, keyvault.IntegrityError)


def test_vault_in_use_and_closed(env, vault_dir):
    first = keyvault.open(passphrase=PASSPHRASE, prompt=False)
    with pytest.raises(keyvault.VaultInUse) as ei:
        keyvault.open(passphrase=PASSPHRASE, prompt=False)
    raised(ei, keyvault.VaultInUse)
    first.close()
    with pytest.raises(keyvault.UsageError):
        first.list()


def test_wrong_argument_types_are_type_errors(vault):
    with pytest.raises(TypeError):
        vault.encrypt("User123", "fernet", 12)
