"""TOTP second factor (pyotp): enrolment URIs, QR codes, drift and replay rules."""

from __future__ import annotations

import hmac
import io
import time

import pyotp
import qrcode
from qrcode.image.svg import SvgPathImage

ISSUER = "Clinic EHR"
STEP_SECONDS = 30


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an SVG QR code (pure Python: no imaging library needed)."""
    buffer = io.BytesIO()
    qrcode.make(uri, image_factory=SvgPathImage).save(buffer)
    return buffer.getvalue().decode("utf-8")


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step `code` belongs to, allowing one step of clock drift either way.

    Returns None when the code matches none. The caller refuses a step at or below
    the last one it accepted, so a code cannot be replayed.
    """
    if not code or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None
