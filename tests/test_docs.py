"""Every figure in the docs traces to a committed log: each log a document or a comment cites
exists under docs/results/."""

from __future__ import annotations

import re
import subprocess

from hub.settings import PROJECT_ROOT

CITED = re.compile(r"(?:docs/)?results/(?:bench|logs|soak)/[\w.\-]+\.(?:log|txt|json)")


def test_every_cited_log_is_committed() -> None:
    files = subprocess.run(
        ["git", "ls-files", "*.md", "*.py"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cited: dict[str, str] = {}
    for name in files:
        if name.startswith("docs/results/"):
            continue
        for path in CITED.findall((PROJECT_ROOT / name).read_text()):
            cited[path if path.startswith("docs/") else f"docs/{path}"] = name
    assert len(cited) > 20  # the docs do cite their logs
    missing = {path: by for path, by in cited.items() if not (PROJECT_ROOT / path).is_file()}
    assert missing == {}
