"""Who is calling: bearer tokens verified against the issuer's signing keys."""
