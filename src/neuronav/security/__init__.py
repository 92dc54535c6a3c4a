"""Authentication and authorisation, library level (no database, no HTTP; the service wires them in).

==================  ===========================================================================
passwords           argon2id hashing (explicit parameters), rehash on upgrade, password policy
tokens              opaque session tokens (SHA-256 stored), signed short-lived access tokens that
                    name their session (checked alive on every request), session cookie, CSRF
totp                RFC 6238 second factor with a ±1 step window and replay protection
throttle            per-account and per-address failure counting, soft lockout, registration rate
                    limit per address (injected clock)
login               one sign-in attempt in the order that reveals nothing about accounts
permissions         roles, the role → permission matrix, break-glass, object-level rules
accounts            account states and the admin's professional verification
errors              SecurityError ⊂ NeuroNavError: AuthError, PermissionDenied, AccountLocked,
                    RateLimited, PasswordChangeRequired, …
==================  ===========================================================================
"""
