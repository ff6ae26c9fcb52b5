"""The plain values the review application needs (filled from weijian's settings by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: Image types accepted as site photos (content type -> file extension).
PHOTO_TYPES: dict[str, str] = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


@dataclass(frozen=True)
class WebConfig:
    """Configuration of :func:`web_map.create_app`.

    Attributes:
        secret_key: signs the session cookies (keep it secret; at least 32 characters).
        evidence_dir: folder where uploaded site photos are stored by SHA-256.
        tianditu_key: 天地图 ``tk``; None: no Tianditu base map (the orthophotos only).
        language: default page language.
        max_upload_bytes: largest accepted photo, bytes.
        session_hours: a session ends this many hours after log-in.
        login_max_failures: failed log-ins per user name and client within ``login_window_s``
            before further attempts are refused (429).
        login_window_s: the rate-limit window, seconds.
        reinspection_days: re-inspection due this many days after a write-off.
        max_features: most features one bounding-box request returns.
        secure_cookies: mark the session cookie Secure (behind HTTPS).
    """

    secret_key: str
    evidence_dir: Path
    tianditu_key: str | None = None
    language: Literal["zh", "en"] = "zh"
    max_upload_bytes: int = 10 * 1024 * 1024
    session_hours: float = 12.0
    login_max_failures: int = 5
    login_window_s: float = 300.0
    reinspection_days: int = 30
    max_features: int = 20000
    secure_cookies: bool = False
    photo_types: dict[str, str] = field(default_factory=lambda: dict(PHOTO_TYPES))

    def __post_init__(self) -> None:
        if len(self.secret_key) < 32:
            raise ValueError("secret_key must have at least 32 characters")
