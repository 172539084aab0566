"""The focused file server (`python -m apps.files`)."""
