"""The built wheel carries conf/ and resolves it at run time outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_configs_and_finds_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("robustlit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ("train.yaml", "eval.yaml", "data/digits.yaml", "model/smallcnn.yaml", "trainer/debug.yaml",
                   "recipe/pgd_at_ls.yaml", "evaluation/adversarial.yaml", "experiment/demo.yaml"):
        assert f"robustlit/conf/{config}" in names, config
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "from robustlit.cli.app import config_dir; print(config_dir())"
    env = {**os.environ, "PYTHONPATH": str(site)}
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                           check=True)
    assert Path(found.stdout.strip()) == site / "robustlit" / "conf"
