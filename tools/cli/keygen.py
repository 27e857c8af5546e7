"""``prune-and-export keygen``: a new ed25519 key pair for signed bundles (``export --sign``, ``hil --public-key``).

The private key is PKCS#8 PEM (mode 0600), the public key 64 hex digits; neither file is ever
overwritten (format: firmware_stub/SIGNING.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.outputs import check_output
from tools.errors import ToolsError

if TYPE_CHECKING:
    from rich.console import Console

HELP = "make an ed25519 key pair for signed bundles: PRIVATE signs (export --sign), PUBLIC checks (hil --public-key)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "private",
        type=Path,
        metavar="PRIVATE",
        help="private key file to create (PEM, mode 0600; keep it off the devices)",
    )
    p.add_argument(
        "public", type=Path, metavar="PUBLIC", help="public key file to create (64 hex digits; give it to the devices)"
    )


def check_key_outputs(private: Path, public: Path) -> None:
    """Both key files new, distinct, in folders that exist and take files: checked before a key is made."""
    if private.resolve() == public.resolve():
        raise ToolsError(f"{private}: PRIVATE and PUBLIC are the same file")
    for path, what in ((private, "PRIVATE"), (public, "PUBLIC")):
        if path.exists() or path.is_symlink():
            raise ToolsError(f"{what} {path}: exists already (a key file is never overwritten)")
        if path.parent.exists() and not path.parent.is_dir():
            raise ToolsError(f"{what} {path}: cannot write there: {path.parent} is a file, not a folder")
        if not path.parent.is_dir():
            raise ToolsError(f"{what} {path}: folder {path.parent} does not exist")
        check_output(path, what)


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: export's public face imports torch and TVM, which --help must not pay for.
    from export import generate_keypair

    check_key_outputs(args.private, args.public)
    public_hex = generate_keypair(args.private, args.public)
    console.print(f"private key {args.private} (keep it secret and off the devices); public key {args.public}:")
    console.print(public_hex)
    return {"ok": True, "private_key": str(args.private), "public_key": str(args.public), "public_key_hex": public_hex}
