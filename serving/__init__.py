"""Ray Serve application: one deployment per exported agent behind an A/B-routing FastAPI ingress."""
