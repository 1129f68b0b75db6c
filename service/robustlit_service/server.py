"""``robustlit serve``: run the service with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path


def serve(host: str = "127.0.0.1", port: int = 8000, home: str | None = None, workers: int = 1,
          log_level: str = "info") -> None:
    """Start the API (and its job dispatcher) on ``host:port``; data goes to ``home`` or ``$ROBUSTLIT_HOME``.

    Example:
        >>> serve(port=8000)  # doctest: +SKIP
    """
    import uvicorn

    from robustlit_service.app import create_app
    from robustlit_service.observability import configure_logging
    from robustlit_service.settings import Settings

    if home is not None:
        os.environ["ROBUSTLIT_HOME"] = str(Path(home).resolve())
    configure_logging(log_level.upper())
    settings = Settings.from_env()
    # a keep-alive longer than clients' idle pools: a server closing an idle connection just as a client reuses
    # it shows up as a read error on the client
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False,
                log_config=None, timeout_graceful_shutdown=10, timeout_keep_alive=75)
