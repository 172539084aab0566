"""Command lines for developers and the platform: pin tool manifests, mint development tokens."""
