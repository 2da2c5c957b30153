"""Python cryptography's Fernet on a file, for benches/scripts/keyuse.sh: the baseline beside
keyvault's own numbers. Reads the key from a file (never argv).

    python python_fernet.py encrypt KEYFILE IN OUT
    python python_fernet.py decrypt KEYFILE IN OUT
"""

import sys

from cryptography.fernet import Fernet


def main():
    op, key_file, src, dst = sys.argv[1:5]
    with open(key_file, "rb") as f:
        fernet = Fernet(f.read().strip())
    with open(src, "rb") as f:
        data = f.read()
    if op == "encrypt":
        out = fernet.encrypt(data)
    elif op == "decrypt":
        out = fernet.decrypt(data.strip())
    else:
        sys.exit(f"unknown operation {op}")
    with open(dst, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
