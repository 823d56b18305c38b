"""The files a ``docker build .`` would send: NUL-separated paths on stdin, those .dockerignore keeps on stdout.

    git ls-files -z --cached --others --exclude-standard | python3 deploy/rootfs/context.py .dockerignore --existing

(``--existing``: only paths that exist, as a working tree in the middle of a rename lists both names.)

.dockerignore's rules as Docker applies them: a pattern matches a path or any folder above it; ``*`` and ``?`` stay
within one path element, ``**`` spans any number; a leading ``!`` keeps what an earlier pattern left out, and the
last matching pattern decides. Runs on the host's Python (standard library only), before any environment exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def compile_pattern(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(keep, pattern) per line: keep is True for a ``!`` exception."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            out.append((keep, compile_pattern(line.removeprefix("!").strip())))
    return out


def kept(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    keep = True
    for exception, pattern in patterns:
        if any(pattern.match(prefix) for prefix in prefixes):
            keep = exception
    return keep


def main() -> int:
    patterns = rules(Path(sys.argv[1]).read_text())
    existing = "--existing" in sys.argv[2:]
    paths = [p for p in dict.fromkeys(sys.stdin.buffer.read().decode().split("\0")) if p]
    paths = [p for p in paths if not existing or Path(p).is_file()]
    sys.stdout.buffer.write(b"".join(p.encode() + b"\0" for p in paths if kept(p, patterns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
