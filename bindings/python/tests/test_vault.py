"""The Vault API, on both access paths (this process, and the agent)."""

import pytest

import keyvault

from conftest import PASSPHRASE


def test_generate_list_and_key_info(vault):
    info = vault.generate("User123", "fernet")
    assert isinstance(info, keyvault.KeyInfo)
    assert (info.user, info.name, info.type, info.version) == ("User123", "fernet", "fernet", 1)
    assert info.id and info.fingerprint
    pair = vault.generate("User123", "rsa-2048")
    assert (pair.name, pair.type) == ("rsa-2048", "rsa-2048")
    named = vault.generate("alice", "ed25519", name="signing")
    assert named.name == "signing"
    listed = vault.list()
    assert sorted((k.user, k.name) for k in listed) == [
        ("User123", "fernet"),
        ("User123", "rsa-2048"),
        ("alice", "signing"),
    ]
    assert [k.name for k in vault.list("alice")] == ["signing"]
    assert vault.key_info("User123", "fernet") == info
    assert vault.status()["keys"] == 3


def test_encrypt_decrypt_and_rotate(vault):
    vault.generate("User123", "fernet")
    token = vault.encrypt("User123", "fernet", b"data")
    assert token.startswith(b"gAAAAA")
    assert vault.decrypt("User123", "fernet", token) == b"data"
    rotated = vault.rotate("User123", "fernet")
    assert rotated.version == 2 and rotated.versions == (1, 2)
    # The old version still decrypts; new tokens use the new one.
    assert vault.decrypt("User123", "fernet", token) == b"data"
    assert vault.decrypt("User123", "fernet", vault.encrypt("User123", "fernet", "text")) == b"text"


def test_sign_and_verify(vault):
    vault.generate("User123", "rsa-2048")
    sig = vault.sign("User123", "rsa-2048", b"msg")
    assert len(sig) == 256
    assert vault.verify("User123", "rsa-2048", b"msg", sig) is True
    assert vault.verify("User123", "rsa-2048", b"other", sig) is False
    pkcs = vault.sign("User123", "rsa-2048", b"msg", scheme="pkcs1v15")
    assert vault.verify("User123", "rsa-2048", b"msg", pkcs, scheme="pkcs1v15") is True


def test_revoke_is_revoked_revoked(vault):
    vault.generate("User123", "fernet")
    vault.generate("User123", "rsa-2048")
    assert vault.is_revoked("User123") is False
    receipt = vault.revoke("User123", reason="left")
    assert isinstance(receipt, keyvault.Revocation)
    assert receipt.user == "User123" and receipt.reason == "left" and not receipt.already_revoked
    assert sorted(k.name for k in receipt.destroyed) == ["fernet", "rsa-2048"]
    assert vault.is_revoked("User123") is True
    again = vault.revoke("User123")
    assert again.already_revoked and again.reason == "left"
    assert [r.user for r in vault.revoked()] == ["User123"]
    assert vault.revocation("nobody") is None


def test_export_and_import(vault):
    vault.generate("User123", "rsa-2048")
    pem = vault.export("User123", "rsa-2048", public=True)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    imported = vault.import_key("bob", "pub", "rsa-2048", pem, public_only=True)
    assert imported.public_only
    sig = vault.sign("User123", "rsa-2048", b"m")
    assert vault.verify("bob", "pub", b"m", sig)


def test_delete(vault):
    vault.generate("User123", "fernet")
    gone = vault.delete("User123", "fernet")
    assert gone.name == "fernet"
    assert vault.list() == []


def test_repr_holds_no_secret(vault):
    info = vault.generate("User123", "fernet")
    key = vault.export("User123", "fernet")
    for text in (repr(vault), repr(info), repr(vault.list()), repr(vault.revoke("User123"))):
        assert key.decode() not in text
        assert PASSPHRASE not in text
    assert "direct" in repr(vault) or "agent" in repr(vault)


def test_context_manager_closes(env, vault_dir):
    with keyvault.open(passphrase=PASSPHRASE, prompt=False) as v:
        v.generate("u", "fernet")
    assert v.closed
    # Closed: the vault is free for the next one.
    with keyvault.open(passphrase=PASSPHRASE, prompt=False) as again:
        assert [k.user for k in again.list()] == ["u"]


def test_passphrase_sources(env, vault_dir, monkeypatch):
    with keyvault.open(passphrase_file=env.passphrase_file, prompt=False) as v:
        assert not v.via_agent
    monkeypatch.setenv("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file)
    with keyvault.open(prompt=False) as v:
        assert not v.via_agent
    monkeypatch.delenv("KEYVAULT_PASSPHRASE_FILE")
    monkeypatch.setenv("KEYVAULT_PASSPHRASE", PASSPHRASE)
    with keyvault.open(prompt=False) as v:
        assert v.path == vault_dir


def test_agent_path_needs_no_passphrase(env, unlocked):
    v = keyvault.open(prompt=False)
    assert v.via_agent
    v.generate("User123", "fernet")
    # The CLI, served by the same agent, sees the key.
    assert "User123" in env.cli("list").stdout
    v.close()


def test_agent_and_direct_see_the_same_vault(env, vault_dir):
    with keyvault.open(passphrase=PASSPHRASE, prompt=False) as v:
        v.generate("User123", "fernet")
        token = v.encrypt("User123", "fernet", b"across")
    env.cli("unlock", "--timeout", "5m")
    with keyvault.open() as a:
        assert a.via_agent
        assert a.decrypt("User123", "fernet", token) == b"across"


def test_a_vault_locked_under_an_agent_handle_raises_locked(env, unlocked):
    v = keyvault.open(prompt=False)
    assert v.via_agent
    v.generate("User123", "fernet")
    env.cli("lock")
    with pytest.raises(keyvault.Locked) as caught:
        v.list()
    assert caught.value.exit_code == 4
    assert "is locked" in str(caught.value)
    v.close()
