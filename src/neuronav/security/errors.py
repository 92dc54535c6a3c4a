"""The security errors, one branch of :class:`neuronav.errors.NeuroNavError`.

::

    NeuroNavError
    └── SecurityError
        ├── AuthError              not authenticated: bad credentials, bad/expired/revoked token (HTTP 401)
        │   ├── InvalidToken       an access token, session token or TOTP code that does not check out
        │   ├── SecondFactorRequired  password right, TOTP code missing (401; the client asks for the code)
        │   └── AccountLocked      too many failures; ``retry_after_s`` for the Retry-After header (HTTP 429)
        ├── RateLimited            too many requests of a kind from one address (registration); ``retry_after_s`` (429)
        ├── PermissionDenied       authenticated, but this role/account/object may not do this (HTTP 403)
        │   ├── CsrfError          a state-changing browser request without the session's CSRF token (HTTP 403)
        │   └── PasswordChangeRequired  signed in with a one-time password: change it first (HTTP 403)
        ├── AccountStateError      an account transition that is not allowed (HTTP 409)
        └── PasswordPolicyError    a new password that breaks the policy; ``problems`` lists why (HTTP 422)

Messages of :class:`AuthError` are meant for the user and never say whether an account exists.
"""

from __future__ import annotations

from neuronav.errors import NeuroNavError


class SecurityError(NeuroNavError):
    """Base of the authentication and authorisation errors."""


class AuthError(SecurityError):
    """Not authenticated. The message is safe to show: it does not reveal whether the account exists."""


class InvalidToken(AuthError):  # noqa: N818 - the name says what it is
    """A token (access, session, CSRF-less) or one-time code that is malformed, forged, expired or revoked."""


class SecondFactorRequired(AuthError):  # noqa: N818
    """The password was right; the account needs a TOTP code to finish signing in."""


class AccountLocked(AuthError):  # noqa: N818
    """Sign-in refused for a while after repeated failures (soft lockout: it ends by itself)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RateLimited(SecurityError):  # noqa: N818
    """Too many requests of one kind (registrations) from one client address; it ends by itself."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class PermissionDenied(SecurityError):  # noqa: N818
    """Authenticated, but not allowed to do this (role, account state, object rule or break-glass scope)."""


class CsrfError(PermissionDenied):
    """A state-changing request from a browser session without a valid CSRF token."""


class PasswordChangeRequired(PermissionDenied):
    """The account signed in with a one-time password: only the password change, sign-out and
    "who am I" are open until the password is changed."""


class AccountStateError(SecurityError):
    """An account transition or verification that is not allowed."""


class PasswordPolicyError(SecurityError):
    """A new password that breaks the policy; ``problems`` holds one clear sentence per broken rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
