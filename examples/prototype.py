"""The Python prototype's scenario, unchanged but for its imports: the six functions now
come from keyvault.compat and work on the persistent vault instead of a dict and a set
that were lost on exit.

Run it against a vault (made with `keyvault init`, or unlocked with `keyvault unlock`):

    KEYVAULT_PATH=/path/to/vault python examples/prototype.py

It asks for the passphrase unless the vault is unlocked or a passphrase source is set
(KEYVAULT_PASSPHRASE_FILE, KEYVAULT_PASSPHRASE). Afterwards `keyvault is-revoked User123`
says "revoked". Run it a second time and the vault refuses to store keys for User123:
a revoked user stays revoked.
"""

from keyvault.compat import (
    generate_asymmetric_keys,
    generate_symmetric_key,
    is_key_revoked,  # noqa: F401 - one of the prototype's six functions
    print_revoked_keys,
    revoke_key,
    store_key,
)

# Example usage
if __name__ == "__main__":
    user_id = "User123"

    # Generate and store a symmetric key
    symmetric_key = generate_symmetric_key()
    store_key(user_id, "symmetric", symmetric_key)

    # Generate and store an asymmetric key pair
    private_key, public_key = generate_asymmetric_keys()
    store_key(user_id, "private", private_key)
    store_key(user_id, "public", public_key)

    # Revoke the user's keys
    revoke_key(user_id)

    # Print the revoked keys
    print_revoked_keys()
