"""The age-encrypted vault (vault.md): its document, blob file and keys. A leaf: no SQL, no log."""
