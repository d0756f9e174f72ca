"""Password hashing (argon2id via argon2-cffi) and the password policy."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared_models.errors import ValidationFailed

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not-a-real-password: equalises timing for unknown users")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check `password`; with no stored hash, spend the same time and return False.

    Unknown users are checked against a dummy hash so the response time does not
    reveal whether a username exists.
    """
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def check_password_policy(password: str, *, username: str, min_length: int) -> None:
    """Raise `ValidationFailed` when the password is too weak (never echoes it)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"Password must have at least {min_length} characters")
    if username and username.lower() in password.lower():
        problems.append("Password must not contain the username")
    if len(set(password)) < 5:
        problems.append("Password must use at least 5 different characters")
    if problems:
        raise ValidationFailed(
            "password policy", issues=[("password", p) for p in problems], user_message=problems[0]
        )
