"""Name what a file that is not .nnc looks like, so the error tells the user what to do."""

from __future__ import annotations

from .format import MAGIC


def describe_foreign(head: bytes) -> str:
    """A short phrase for the kind of file whose first bytes are `head` ("" when unknown)."""
    if head[:4] == MAGIC[:4] and head[:8] != MAGIC:
        return "a damaged .nnc file (line endings were converted or bytes lost: copy it in binary mode)"
    if head.startswith(b"GGUF"):
        return "a GGUF file"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a ZIP archive (a torch.save checkpoint? use `nncodec encode` to convert it)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (an old torch.save checkpoint? use `nncodec encode` to convert it)"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "a zstd frame"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"\x93NUMPY"):
        return "a .npy array (use `nncodec encode` on an .npz to convert it)"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**32:
        return "a safetensors file (use `nncodec encode` to convert it)"
    return ""
