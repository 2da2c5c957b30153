"""The Python prototype's approach as a command, for benches/scripts/compare.sh: a dict of users to
{key name: Fernet key}, kept in a JSON file between calls (the prototype kept it in
memory and lost it on exit), and Python cryptography's Fernet. Like the prototype, the
keys are in the clear: nothing is encrypted at rest. Writes go to a temporary file that
is fsynced and renamed over the store, so an "add" is durable on return.

    python py_dict_fernet.py STORE add USER NAME        generate a Fernet key, store it
    python py_dict_fernet.py STORE get USER NAME        print the key
    python py_dict_fernet.py STORE list                 print "user name" per key
    python py_dict_fernet.py STORE encrypt USER NAME    stdin -> Fernet token on stdout
    python py_dict_fernet.py STORE decrypt USER NAME    token on stdin -> plaintext
    python py_dict_fernet.py STORE populate N           a store with user "bench", keys k0..k(N-1)
"""

import json
import os
import sys

from cryptography.fernet import Fernet


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(path, store):
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(store, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main():
    path, op, *args = sys.argv[1:]
    if op == "populate":
        n = int(args[0])
        save(path, {"bench": {f"k{i}": Fernet.generate_key().decode() for i in range(n)}})
        return 0
    store = load(path)
    if op == "add":
        user, name = args
        keys = store.setdefault(user, {})
        if name in keys:
            sys.exit(f"error: {user}/{name} exists")
        keys[name] = Fernet.generate_key().decode()
        save(path, store)
    elif op == "get":
        user, name = args
        print(store[user][name])
    elif op == "list":
        sys.stdout.write("".join(f"{u} {k}\n" for u in sorted(store) for k in sorted(store[u])))
    elif op == "encrypt":
        user, name = args
        sys.stdout.buffer.write(Fernet(store[user][name]).encrypt(sys.stdin.buffer.read()))
    elif op == "decrypt":
        user, name = args
        sys.stdout.buffer.write(Fernet(store[user][name]).decrypt(sys.stdin.buffer.read().strip()))
    else:
        sys.exit(f"unknown operation {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
