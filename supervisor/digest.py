"""sha256 without OpenSSL.

`import hashlib` loads OpenSSL's libcrypto through `_hashlib`: about 3.5 MB resident and 4 ms in
every process that imports it. The runner (one per agent) and the guard side hash only short
texts (ledger lines, commands, plans), where CPython's built-in sha256 is as good, so they take it
from here. Code that hashes megabytes keeps hashlib, whose OpenSSL sha256 is about 6x faster on
big inputs. Both give the same digests; tests/test_digest.py holds them to it.
"""
from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    try:
        from _sha2 import sha256
    except ImportError:  # an interpreter built without the built-in hashes
        from hashlib import sha256
else:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # typeshed has no stub for it
    except ImportError:  # an interpreter built without the built-in hashes
        from hashlib import sha256

__all__ = ["sha256"]
