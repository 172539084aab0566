"""The database's schema, roles and grants: one SQL source for Kubernetes and the tests."""
