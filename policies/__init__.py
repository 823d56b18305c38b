"""Exported policies: the ``models/<agent>/`` format (``metadata.json``, versioned), writing it atomically, and loading
a policy for inference without Ray (docs/architecture.md)."""
