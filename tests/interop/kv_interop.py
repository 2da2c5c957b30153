"""The Python side of keyvault's interop tests: Python's `cryptography` and `jwcrypto`,
clients nobody on the project wrote, driven by tests/interop_*.rs.

Every input and output is a file named on the command line (keys included: these are
test keys, and argv never carries key bytes). A failed check exits non-zero with a
message on stderr; `verify` exits 1 for a signature that does not verify, like keyvault.

Run as `python -I kv_interop.py COMMAND ARGS...`.
"""

import argparse
import hashlib
import json
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def fail(message):
    print(f"kv_interop: {message}", file=sys.stderr)
    sys.exit(2)


def load_private(path):
    data = read(path)
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def load_public(path):
    data = read(path)
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(data)
    return serialization.load_der_public_key(data)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def describe(key):
    """What identifies a key, as JSON-ready values; secret parts only as SHA-256."""
    if isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        doc = describe(key.public_key())
        doc["private"] = True
        doc["d_sha256"] = sha256_hex(int_bytes(priv.d))
        doc["pq_sha256"] = sha256_hex(int_bytes(priv.p * priv.q))
        return doc
    if isinstance(key, rsa.RSAPublicKey):
        pub = key.public_numbers()
        return {"type": "rsa", "private": False, "bits": key.key_size, "n": format(pub.n, "x"), "e": pub.e}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        doc = describe(key.public_key())
        doc["private"] = True
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        doc["seed_sha256"] = sha256_hex(raw)
        return doc
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"type": "ed25519", "private": False, "public": raw.hex()}
    fail(f"unexpected key class {type(key).__name__}")


# --- Fernet ---------------------------------------------------------------------------

def cmd_fernet_generate(a):
    write(a.key_out, Fernet.generate_key())


def cmd_fernet_encrypt(a):
    f = Fernet(read(a.key).strip())
    plain = read(a.plain_in)
    token = f.encrypt(plain) if a.at_time is None else f.encrypt_at_time(plain, a.at_time)
    write(a.token_out, token)


def cmd_fernet_decrypt(a):
    f = Fernet(read(a.key).strip())
    try:
        plain = f.decrypt(read(a.token).strip(), ttl=a.ttl)
    except InvalidToken:
        fail("Fernet: InvalidToken")
    write(a.plain_out, plain)


def cmd_multifernet_decrypt(a):
    mf = MultiFernet([Fernet(read(k).strip()) for k in a.keys])
    try:
        plain = mf.decrypt(read(a.token).strip())
    except InvalidToken:
        fail("MultiFernet: InvalidToken")
    write(a.plain_out, plain)


def cmd_multifernet_rotate(a):
    mf = MultiFernet([Fernet(read(k).strip()) for k in a.keys])
    write(a.token_out, mf.rotate(read(a.token).strip()))


# --- keys -----------------------------------------------------------------------------

def cmd_rsa_generate(a):
    key = rsa.generate_private_key(public_exponent=65537, key_size=a.bits)
    none = serialization.NoEncryption()
    pem = serialization.Encoding.PEM
    write(a.pkcs8_out, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none))
    write(a.pkcs1_out, key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none))
    write(a.spki_out, key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))


def cmd_ed25519_generate(a):
    key = ed25519.Ed25519PrivateKey.generate()
    pem = serialization.Encoding.PEM
    write(a.pkcs8_out, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    write(a.spki_out, key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))


def cmd_prototype_keys(a):
    """What the original Python prototype's KeyManager produced."""
    import os

    symmetric_key = Fernet.generate_key()
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_key = private_key.public_key()
    pem_private = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    pem_public = public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    write(os.path.join(a.dir, "symmetric.key"), symmetric_key)
    write(os.path.join(a.dir, "private.pem"), pem_private)
    write(os.path.join(a.dir, "public.pem"), pem_public)


def cmd_key_info(a):
    key = load_private(a.file) if a.private else load_public(a.file)
    print(json.dumps(describe(key), sort_keys=True))


# --- signatures and OAEP --------------------------------------------------------------

def pss(salt_length):
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


SIGN_PADDINGS = {
    "pss-max": lambda: pss(padding.PSS.MAX_LENGTH),
    "pss-digest": lambda: pss(padding.PSS.DIGEST_LENGTH),
    "pkcs1v15": padding.PKCS1v15,
}
VERIFY_PADDINGS = {
    "pss-digest": lambda: pss(padding.PSS.DIGEST_LENGTH),
    "pss-auto": lambda: pss(padding.PSS.AUTO),
    "pkcs1v15": padding.PKCS1v15,
}


def cmd_sign(a):
    key = load_private(a.key)
    message = read(a.message)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if a.alg != "ed25519":
            fail("an Ed25519 key signs with --alg ed25519")
        sig = key.sign(message)
    else:
        sig = key.sign(message, SIGN_PADDINGS[a.alg](), hashes.SHA256())
    write(a.sig_out, sig)


def cmd_verify(a):
    key = load_public(a.key)
    message, sig = read(a.message), read(a.signature)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if a.alg != "ed25519":
                fail("an Ed25519 key verifies with --alg ed25519")
            key.verify(sig, message)
        else:
            key.verify(sig, message, VERIFY_PADDINGS[a.alg](), hashes.SHA256())
    except InvalidSignature:
        print("invalid")
        sys.exit(1)
    print("valid")


def oaep():
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def cmd_oaep_encrypt(a):
    write(a.cipher_out, load_public(a.key).encrypt(read(a.plain_in), oaep()))


def cmd_oaep_decrypt(a):
    write(a.plain_out, load_private(a.key).decrypt(read(a.cipher_in), oaep()))


# --- JWK ------------------------------------------------------------------------------

def cmd_jwk_info(a):
    """Loads a JWK with jwcrypto, has jwcrypto re-encode it (PEM or raw), and describes
    the key as `key-info` does, so a test compares it with the PEM export."""
    import base64

    from jwcrypto import jwk

    doc = json.loads(read(a.file))
    key = jwk.JWK(**doc)
    if key.get("kty") != doc["kty"]:
        fail("jwcrypto lost the key type")
    if doc["kty"] == "oct":
        raw = base64.urlsafe_b64decode(key.get("k") + "=" * (-len(key.get("k")) % 4))
        info = {"type": "oct", "private": True, "bytes": len(raw), "k_sha256": sha256_hex(raw)}
    elif key.has_private:
        info = describe(serialization.load_pem_private_key(key.export_to_pem(private_key=True, password=None),
                                                           password=None))
    else:
        info = describe(serialization.load_pem_public_key(key.export_to_pem()))
    info["kid"] = doc.get("kid")
    info["thumbprint"] = key.thumbprint()
    print(json.dumps(info, sort_keys=True))


def cmd_raw_info(a):
    """Describes a symmetric key given as base64 (standard or url-safe) text."""
    import base64

    text = read(a.file).strip()
    raw = base64.urlsafe_b64decode(text.replace(b"+", b"-").replace(b"/", b"_"))
    print(json.dumps({"type": "oct", "private": True, "bytes": len(raw), "k_sha256": sha256_hex(raw)},
                     sort_keys=True))


def main():
    p = argparse.ArgumentParser(prog="kv_interop.py")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, *args, **opts):
        s = sub.add_parser(name)
        for arg in args:
            s.add_argument(arg)
        for flag, kw in opts.items():
            s.add_argument("--" + flag.replace("_", "-"), **kw)
        s.set_defaults(fn=fn)
        return s

    add("fernet-generate", cmd_fernet_generate, "key_out")
    add("fernet-encrypt", cmd_fernet_encrypt, "key", "plain_in", "token_out", at_time={"type": int})
    add("fernet-decrypt", cmd_fernet_decrypt, "key", "token", "plain_out", ttl={"type": int})
    add("multifernet-decrypt", cmd_multifernet_decrypt, "token", "plain_out").add_argument("keys", nargs="+")
    add("multifernet-rotate", cmd_multifernet_rotate, "token", "token_out").add_argument("keys", nargs="+")
    add("rsa-generate", cmd_rsa_generate, "pkcs8_out", "pkcs1_out", "spki_out", bits={"type": int, "default": 2048})
    add("ed25519-generate", cmd_ed25519_generate, "pkcs8_out", "spki_out")
    add("prototype-keys", cmd_prototype_keys, "dir")
    add("key-info", cmd_key_info, "file").add_argument("--private", action="store_true")
    add("sign", cmd_sign, "key", "message", "sig_out", alg={"required": True, "choices": ["pss-max", "pss-digest", "pkcs1v15", "ed25519"]})
    add("verify", cmd_verify, "key", "message", "signature", alg={"required": True, "choices": ["pss-digest", "pss-auto", "pkcs1v15", "ed25519"]})
    add("oaep-encrypt", cmd_oaep_encrypt, "key", "plain_in", "cipher_out")
    add("oaep-decrypt", cmd_oaep_decrypt, "key", "cipher_in", "plain_out")
    add("jwk-info", cmd_jwk_info, "file")
    add("raw-info", cmd_raw_info, "file")
    add("now", lambda a: print(int(time.time())))

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
