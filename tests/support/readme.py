"""The README's cluster block, as tests run it: each constant must appear in README.md verbatim."""

from __future__ import annotations

from tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
TOKEN_FILE = ".venv/bin/ray get-auth-token --generate > /dev/null"
TOKEN_MODE = "export RAY_AUTH_MODE=token"
JOIN = "RAY_ADDRESS=auto .venv/bin/python -m training.train --algo ppo --timesteps 50000"
SUBMIT = """RAY_ADDRESS=http://127.0.0.1:8265 .venv/bin/ray job submit --working-dir . \\
  --runtime-env-json '{"excludes": [".venv", "runs", "models", "data", "reports", ".git", "mlruns"]}' \\
  -- "$PWD/.venv/bin/python" -m training.train --algo ppo --timesteps 50000 --models-dir "$PWD/models\""""
