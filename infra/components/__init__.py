"""One ComponentResource per part of the platform."""
