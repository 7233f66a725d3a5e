"""Users keyed by their Google subject, and Google sign-in (OIDC)."""
