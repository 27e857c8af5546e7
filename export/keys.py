"""The public key file of a signed-bundle device: 64 hex digits (the 32-byte ed25519 key) and a newline.

Read here without any cryptography so the device sessions (the stub's ``--public-key``, the firmware's
boot stage) can take it; signing and checking on the host is :mod:`export.signing`.
"""

from __future__ import annotations

from pathlib import Path

from export.errors import ExportError


def read_public_key(path: Path) -> bytes:
    """The 32 bytes of a public key file: 64 hex digits (surrounding whitespace ignored)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("ascii").strip()
        raw = bytes.fromhex(text)
    except OSError as e:
        raise ExportError(f"{path}: cannot read the public key ({e.strerror})") from e
    except ValueError as e:
        raise ExportError(f"{path}: not a public key file (64 hex digits expected)") from e
    if len(raw) != 32 or len(text) != 64:
        raise ExportError(f"{path}: not a public key file (64 hex digits expected, got {len(text)} characters)")
    return raw
