"""keyvault.compat: the prototype's six functions and messages, on the persistent
vault; examples/prototype.py runs unchanged and others see what it did."""

import os

import pytest

from conftest import PASSPHRASE, REPO

PROTOTYPE = os.path.join(REPO, "examples", "prototype.py")

EXPECTED = (
    "Stored symmetric key for User123\n"
    "Stored private key for User123\n"
    "Stored public key for User123\n"
    "Revoked all keys for User123\n"
    "\n"
    "Revoked Keys List:\n"
    "- User123\n"
)

SECOND_RUN = (
    "Cannot store key for User123, as they are revoked.\n"
    "Cannot store key for User123, as they are revoked.\n"
    "Cannot store key for User123, as they are revoked.\n"
    "No keys found for User123\n"
    "\n"
    "Revoked Keys List:\n"
    "- User123\n"
)

CHECK = (
    "from keyvault.compat import is_key_revoked, print_revoked_keys\n"
    "print(is_key_revoked('User123'), is_key_revoked('someone else'))\n"
    "print_revoked_keys()\n"
)


def run_prototype(env, **extra):
    out = env.python(PROTOTYPE, **extra)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_prototype_direct(env, vault_dir):
    assert run_prototype(env, KEYVAULT_PASSPHRASE_FILE=env.passphrase_file) == EXPECTED
    # The revocation persists: the CLI and a second Python process see it.
    assert env.cli("is-revoked", "User123").stdout.strip() == "revoked"
    revoked = env.cli("revoked").stdout
    assert "User123" in revoked
    check = env.python("-c", CHECK, KEYVAULT_PASSPHRASE=PASSPHRASE)
    assert check.returncode == 0, check.stderr
    assert check.stdout == "True False\n\nRevoked Keys List:\n- User123\n"
    # Run again: the user stays revoked.
    assert run_prototype(env, KEYVAULT_PASSPHRASE=PASSPHRASE) == SECOND_RUN


def test_prototype_through_the_agent(env, unlocked):
    # No passphrase source at all: the agent serves it.
    assert run_prototype(env) == EXPECTED
    assert env.cli("is-revoked", "User123").stdout.strip() == "revoked"
    check = env.python("-c", CHECK)
    assert check.stdout == "True False\n\nRevoked Keys List:\n- User123\n", check.stderr


def test_no_revoked_keys_and_no_keys(env, vault_dir, capsys, monkeypatch):
    import keyvault.compat as c

    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    try:
        c.print_revoked_keys()
        c.revoke_key("ghost")
        assert c.is_key_revoked("ghost") is False
    finally:
        c.close()
    assert capsys.readouterr().out == "\nNo revoked keys found.\nNo keys found for ghost\n"


def test_store_key_lands_in_the_vault(env, vault_dir, monkeypatch):
    import keyvault
    import keyvault.compat as c
    from cryptography.fernet import Fernet

    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    try:
        sym = c.generate_symmetric_key()
        assert len(Fernet(sym).encrypt(b"x")) > 0
        private, public = c.generate_asymmetric_keys()
        assert private.key_size == 2048
        c.store_key("u", "symmetric", sym)
        c.store_key("u", "private", private)
        c.store_key("u", "public", public)
        # A public key of another pair is stored on its own, public only.
        _, other_public = c.generate_asymmetric_keys()
        c.store_key("v", "public", other_public)
        with pytest.raises(keyvault.UsageError):
            c.store_key("u", "secret", sym)
        v = c._v()
        names = sorted((k.user, k.name, k.type, k.public_only) for k in v.list())
        assert names == [
            ("u", "private", "rsa-2048", False),
            ("u", "symmetric", "fernet", False),
            ("v", "public", "rsa-2048", True),
        ]
        # The stored symmetric key is the one given.
        assert v.decrypt("u", "symmetric", Fernet(sym).encrypt(b"same")) == b"same"
    finally:
        c.close()
