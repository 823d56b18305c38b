"""The bottom layer: project errors, config helpers, constants, MLflow store addresses, and how a command starts
Ray and its console. It imports no other package of the project (docs/architecture.md)."""
