"""Site photos uploaded as evidence: size and type checks, storage by SHA-256, the record row.

A photo is stored as ``<evidence_dir>/<first two hex digits>/<sha256><ext>``: written to a
temporary file in the same folder and renamed, so a file under its final name is always
complete; the same photo uploaded twice is stored once. Only JPEG, PNG and WebP are accepted,
checked by their first bytes as well as the declared type.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from gis_db.errors import NotFoundError
from web_map.errors import UnsupportedUploadError, UploadTooLargeError

CHUNK = 1 << 16
#: The unit of the ``max_upload_mb`` setting (and of the sizes staff read), bytes.
MB = 1 << 20


def sniff(head: bytes) -> str | None:
    """The image content type of a file from its first bytes (None: not an accepted image)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def store_photo(
    conn: Connection,
    evidence_dir: Path,
    *,
    case_id: int,
    data: bytes,
    original_name: str | None,
    declared_type: str | None,
    uploaded_by: str,
    max_bytes: int,
    accepted: dict[str, str],
) -> dict[str, Any]:
    """Check, store and record one photo of case ``case_id``; returns its evidence reference.

    The reference (stored in the history row's evidence) holds the file id, SHA-256, name,
    type and size in bytes.
    """
    name = Path(original_name or "photo").name[:200]
    if not data:
        raise UnsupportedUploadError(f"{name} is empty", code="upload_empty", name=name)
    if len(data) > max_bytes:
        raise UploadTooLargeError(
            f"{name} is larger than the limit of {max_bytes / MB:.1f} MB (max_upload_mb): "
            "send a smaller photo",
            name=name,
            limit_mb=round(max_bytes / MB, 1),  # in the setting's unit (max_upload_mb)
        )
    kind = sniff(data[:16])
    if kind is None or kind not in accepted or (declared_type and declared_type != kind):
        raise UnsupportedUploadError(
            f"{name} is not a JPEG, PNG or WebP photo: only these can be attached", name=name
        )
    digest = hashlib.sha256(data).hexdigest()
    stored_name = f"{digest[:2]}/{digest}{accepted[kind]}"
    target = evidence_dir / stored_name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    file_id = conn.execute(
        text(
            "INSERT INTO evidence_file (case_id, sha256, stored_name, original_name, "
            "content_type, size_bytes, uploaded_by) VALUES (:c, :h, :s, :o, :t, :n, :u) "
            "RETURNING id"
        ),
        {
            "c": case_id,
            "h": digest,
            "s": stored_name,
            "o": name,
            "t": kind,
            "n": len(data),
            "u": uploaded_by,
        },
    ).scalar_one()
    return {
        "evidence_file_id": int(file_id),
        "sha256": digest,
        "name": name,
        "content_type": kind,
        "size_bytes": len(data),
    }


def stored_path(evidence_dir: Path, stored_name: str) -> Path:
    """The file of a recorded photo, refused if it would lie outside the evidence folder."""
    root = evidence_dir.resolve()
    path = (root / stored_name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFoundError(
            f"the photo {stored_name} is not in the evidence folder", code="evidence_not_found"
        )
    return path
