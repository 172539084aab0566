"""The focused notification server (`python -m apps.notify`)."""
