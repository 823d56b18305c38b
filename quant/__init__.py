"""The finance maths below envs: regime HMM and filters, growth-optimal solvers, classical strategies and their
one registry (docs/architecture.md, "Layers")."""
