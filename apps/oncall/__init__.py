"""The focused on-call server (`python -m apps.oncall`)."""
