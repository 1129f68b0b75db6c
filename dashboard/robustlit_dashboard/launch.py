"""Start the dashboard: ``streamlit run app.py`` with the data source passed through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from robustlit.errors import ConfigError
from robustlit_dashboard.sources import ENV_API, ENV_API_KEY, ENV_RUNS

APP = Path(__file__).parent / "app.py"


def dashboard_command(port: int = 8501, address: str = "127.0.0.1", headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line for the app.

    Example:
        >>> dashboard_command(8600)[1:4]
        ['-m', 'streamlit', 'run']
    """
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port; pick one in 1-65535")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", address,
        "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false",
        "--theme.primaryColor", "#0072B2",  # Okabe–Ito blue instead of Streamlit's red
    ]


def dashboard_environment(runs: str | None = None, api: str | None = None, api_key: str | None = None,
                          base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that tells the app where to read runs (the API key stays out of the process list).

    Raises:
        ConfigError: If both or neither of ``runs`` and ``api`` are usable, or ``runs`` is not a folder.

    Example:
        >>> dashboard_environment(api="http://127.0.0.1:8000", api_key="k", base={})["ROBUSTLIT_API_URL"]
        'http://127.0.0.1:8000'
    """
    environment = dict(os.environ if base is None else base)
    if runs and api:
        raise ConfigError("pass either --runs DIR or --api URL, not both")
    if api:
        environment[ENV_API] = api
        key = api_key or environment.get(ENV_API_KEY)
        if not key:
            raise ConfigError("--api needs --api-key KEY (or ROBUSTLIT_API_KEY); create one with POST /api/v1/api-keys")
        environment[ENV_API_KEY] = key
        environment.pop(ENV_RUNS, None)
    else:
        folder = Path(runs or environment.get(ENV_RUNS) or "runs")
        if not folder.is_dir():
            raise ConfigError(f"--runs {folder} is not a folder; run `robustlit demo` first or pass --runs DIR")
        environment[ENV_RUNS] = str(folder.resolve())
        environment.pop(ENV_API, None)
    return environment


def run_dashboard(runs: str | None = None, api: str | None = None, api_key: str | None = None,
                  port: int = 8501) -> int:
    """Run the dashboard in the foreground until interrupted; returns streamlit's exit status.

    Example:
        >>> run_dashboard(runs="runs/demo", port=8501)  # doctest: +SKIP
    """
    environment = dashboard_environment(runs, api, api_key)
    command = dashboard_command(port)
    print(f"robustlit dashboard: http://127.0.0.1:{port} (reading {environment.get(ENV_API) or environment[ENV_RUNS]})")
    try:
        return subprocess.call(command, env=environment)
    except KeyboardInterrupt:
        return 0
