"""Key files given on the command line, checked before any work: ``--sign KEY`` (private) and ``--public-key FILE``.

Format of both: firmware_stub/SIGNING.md (``prune-and-export keygen`` makes them).
"""

from __future__ import annotations

from pathlib import Path

from tools.errors import ToolsError


def check_signing_key(path: Path, flag: str = "--sign") -> str:
    """The public key's hex of the private key file ``path``, or one line naming the flag and what is wrong with it."""
    # Deferred: export's public face imports torch and TVM, which --help must not pay for.
    from export import ExportError, public_key_hex, read_public_key

    if path.is_dir():
        raise ToolsError(f"{flag} {path}: is a directory, expected a private key file")
    if not path.is_file():
        raise ToolsError(f"{flag} {path}: no such file")
    try:
        read_public_key(path)
    except ExportError:
        pass
    else:
        raise ToolsError(f"{flag} {path}: is a public key file; {flag} takes the private key (keygen's PRIVATE)")
    try:
        return public_key_hex(path)
    except ExportError as e:
        raise ToolsError(f"{flag} {e}") from e


def check_public_key(path: Path, flag: str = "--public-key") -> str:
    """The hex of the public key file ``path``, or one line naming the flag and what is wrong with it."""
    from export import ExportError, read_public_key

    if path.is_dir():
        raise ToolsError(f"{flag} {path}: is a directory, expected a public key file")
    try:
        return read_public_key(path).hex()
    except ExportError as e:
        raise ToolsError(f"{flag} {e}") from e


def check_key_pair(sign: Path | None, public_key: Path | None) -> str | None:
    """``--sign`` and ``--public-key`` of a command that makes its own bundles and runs them: the public key (hex) the
    devices check, None without one. ``--public-key`` needs ``--sign``, and must be its public half."""
    signing = check_signing_key(sign) if sign is not None else None
    if public_key is None:
        return None
    checking = check_public_key(public_key)
    if signing is None:
        raise ToolsError(
            f"--public-key {public_key}: the bundles made here are unsigned without --sign KEY (its private half)"
        )
    if signing != checking:
        raise ToolsError(
            f"--public-key {public_key}: not the public half of --sign {sign} ({checking[:16]}... vs {signing[:16]}...)"
        )
    return checking
