"""keyvault's Fernet tokens and Python's cryptography: both ways, on both paths."""

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def test_vault_token_decrypts_with_plain_fernet(vault):
    vault.generate("User123", "fernet")
    token = vault.encrypt("User123", "fernet", b"from the vault")
    key = vault.export("User123", "fernet")
    assert Fernet(key).decrypt(token) == b"from the vault"


def test_plain_fernet_token_decrypts_in_the_vault(vault):
    key = Fernet.generate_key()
    vault.import_key("User123", "fernet", "fernet", key)
    token = Fernet(key).encrypt(b"from cryptography")
    assert vault.decrypt("User123", "fernet", token) == b"from cryptography"


def test_vault_fernet_object(vault):
    vault.generate("User123", "fernet")
    f = vault.fernet("User123")
    assert isinstance(f, Fernet)
    assert vault.decrypt("User123", "fernet", f.encrypt(b"a")) == b"a"
    assert f.decrypt(vault.encrypt("User123", "fernet", b"b")) == b"b"
    old_token = vault.encrypt("User123", "fernet", b"old")
    vault.rotate("User123", "fernet")
    multi = vault.fernet("User123")
    assert isinstance(multi, MultiFernet)
    assert multi.decrypt(old_token) == b"old"
    assert multi.decrypt(vault.encrypt("User123", "fernet", b"new")) == b"new"
    # MultiFernet encrypts with the newest version, which the vault's primary is.
    key2 = vault.export("User123", "fernet", version=2)
    assert Fernet(key2).decrypt(multi.encrypt(b"x")) == b"x"


def test_rsa_signature_verifies_with_cryptography(vault):
    vault.generate("User123", "rsa-2048")
    sig = vault.sign("User123", "rsa-2048", b"msg")
    public = serialization.load_pem_public_key(vault.export("User123", "rsa-2048", public=True))
    public.verify(
        sig,
        b"msg",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
