"""robustlit launcher: one submit/status/cancel/logs interface over local, SLURM and Kubernetes backends.

Example:
    >>> from robustlit_launcher import Job, JobStatus, get_backend
    >>> backend = get_backend("local", root=getfixture("tmp_path"))
    >>> handle = backend.submit(Job(["sh", "-c", "echo done"], workdir="."))
    >>> backend.wait(handle, timeout_s=60) is JobStatus.SUCCEEDED
    True
"""

from __future__ import annotations

from typing import Any

from robustlit_launcher.job import Backend, Job, JobNotFoundError, JobStatus, LauncherError

BACKENDS = ("local", "slurm", "kubernetes")


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend called ``name`` (``local``, ``slurm`` or ``kubernetes``) with its ``options``.

    Args:
        name: Which engine runs the jobs.
        **options: Passed to the backend: ``root=`` for local, ``folder=``/``partition=``… for SLURM,
            ``namespace=``/``image=``… for Kubernetes.

    Example:
        >>> get_backend("local", root=getfixture("tmp_path")).grace_s
        10.0
    """
    if name == "local":
        from robustlit_launcher.local import LocalBackend

        return LocalBackend(**options)
    if name == "slurm":
        from robustlit_launcher.slurm import SlurmBackend

        return SlurmBackend(**options)
    if name == "kubernetes":
        from robustlit_launcher.k8s import KubernetesBackend

        return KubernetesBackend(**options)
    raise LauncherError(f"unknown launcher backend {name!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Job", "JobNotFoundError", "JobStatus", "LauncherError", "get_backend"]
