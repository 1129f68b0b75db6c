"""docs/service.md's curl walkthrough and Python example run as written against a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def _block(section: str, language: str) -> str:
    text = DOC.read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.search(rf"```{language}\n(.*?)```", body, re.DOTALL).group(1)


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="needs curl and jq")
def test_curl_walkthrough_and_python_example_work_as_written(service_factory, tmp_path):
    server = service_factory()
    python = _block("Python client", "python")
    script = "set -euo pipefail\n" + _block("Try it with curl", "bash") + (
        f"\n{sys.executable} - <<'PY'\n{python}PY\n")
    env = {**os.environ, "ROBUSTLIT_URL": server.url}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert '"status": "succeeded"' in result.stdout
    assert "report\trobustness_report.json" in result.stdout
    assert "accuracy 0.5" in result.stdout  # the Python example's metric line (fake job: 0.5 + seed/100)
    assert (tmp_path / "report.json").read_text().startswith("{")
    assert json.loads((tmp_path / "robustness_report.json").read_text())["schema_version"] == 1
