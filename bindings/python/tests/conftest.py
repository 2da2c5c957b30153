"""Fixtures for the keyvault Python package's tests.

Every test runs with its own HOME, XDG directories, TMPDIR and KEYVAULT_PATH under
pytest's tmp_path (so it never touches the real user's vault or agents), no passphrase
in the environment, and a vault made with fast KDF parameters. Tests of the agent path
start the real agent with the real binary: `KEYVAULT_BIN` names it (tests/python_bindings.rs
sets it), else `keyvault` on PATH.
"""

import os
import shutil
import subprocess
import tempfile
import sys

import pytest

import keyvault

PASSPHRASE = "correct horse battery staple"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# Fast, weak KDF parameters: tests only.
FAST_KDF = dict(kdf_memory_kib=1024, kdf_iterations=1, kdf_parallelism=1, allow_weak_kdf=True)


def keyvault_bin():
    return os.environ.get("KEYVAULT_BIN") or shutil.which("keyvault")


class Env:
    """The test's directories and a runner for the keyvault binary with them."""

    def __init__(self, root):
        self.root = root
        self.vault = os.path.join(root, "vault")
        self.passphrase_file = os.path.join(root, "passphrase")
        self.environ = {}
        for name, sub in [
            ("HOME", "home"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_STATE_HOME", "state"),
            ("TMPDIR", "tmp"),
        ]:
            path = os.path.join(root, sub)
            os.makedirs(path, mode=0o700, exist_ok=True)
            self.environ[name] = path
        # Short: an agent's socket path must fit in 108 bytes.
        self.runtime_dir = tempfile.mkdtemp(prefix="kvpy-")
        self.environ["XDG_RUNTIME_DIR"] = self.runtime_dir
        self.environ["KEYVAULT_PATH"] = self.vault
        fd = os.open(self.passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSPHRASE + "\n")

    def process_env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYVAULT_")}
        env.update(self.environ)
        env.update(extra)
        return env

    def cli(self, *args, check=True, **extra_env):
        binary = keyvault_bin()
        if binary is None:
            pytest.skip("the keyvault binary is needed (set KEYVAULT_BIN or put it on PATH)")
        env = self.process_env(KEYVAULT_PASSPHRASE_FILE=self.passphrase_file, **extra_env)
        out = subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if check and out.returncode != 0:
            raise AssertionError(f"keyvault {' '.join(args)} failed ({out.returncode}): {out.stderr}")
        return out

    def python(self, *args, **extra_env):
        """Runs another Python process with this environment."""
        return subprocess.run(
            [sys.executable, *args],
            env=self.process_env(**extra_env),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = Env(str(tmp_path))
    for name in list(os.environ):
        if name.startswith("KEYVAULT_") and name != "KEYVAULT_BIN":
            monkeypatch.delenv(name)
    for name, value in e.environ.items():
        monkeypatch.setenv(name, value)
    yield e
    # Whatever agent a test started ends with it.
    if keyvault_bin() is not None:
        e.cli("lock", check=False)
    shutil.rmtree(e.runtime_dir, ignore_errors=True)


@pytest.fixture
def vault_dir(env):
    keyvault.create(env.vault, PASSPHRASE, **FAST_KDF)
    return env.vault


@pytest.fixture
def unlocked(env, vault_dir):
    """The vault, unlocked by `keyvault unlock` (a real agent)."""
    env.cli("unlock", "--timeout", "5m")
    return vault_dir


@pytest.fixture(params=["direct", "agent"])
def vault(request, env, vault_dir):
    """The vault opened both ways: by this process with its passphrase, and through
    the agent."""
    if request.param == "agent":
        env.cli("unlock", "--timeout", "5m")
        v = keyvault.open()
        assert v.via_agent
    else:
        v = keyvault.open(passphrase=PASSPHRASE, prompt=False)
        assert not v.via_agent
    yield v
    v.close()
