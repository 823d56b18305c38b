"""The A/B experiment engine, with no Ray and no web framework (docs/architecture.md, "Layers")."""
