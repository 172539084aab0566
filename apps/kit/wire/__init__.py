"""The words every layer shares on the wire: JSON out, JSON-RPC error codes, the closed vocabularies of outcomes
and refusal reasons, and the refusal itself."""
