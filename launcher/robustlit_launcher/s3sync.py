"""Upload a run's output folder to S3 (or MinIO): ``python -m robustlit_launcher.s3sync DIR s3://bucket/prefix``.

Kubernetes jobs without an artifacts volume call this after the run (see ``KubernetesOptions.s3_uri``).
Credentials and endpoint come from the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for MinIO).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from robustlit_launcher.job import LauncherError


def upload_folder(folder: Path, uri: str, client: Any = None) -> list[str]:
    """Upload every file under ``folder`` to ``uri`` (``s3://bucket/prefix``), keeping relative paths.

    Args:
        folder: Local folder to upload.
        uri: Destination; objects are named ``prefix/<path relative to folder>``.
        client: A boto3 S3 client; one is created from the environment when ``None``.

    Returns:
        The keys written, sorted.

    Example:
        >>> upload_folder(Path("runs/x"), "s3://bucket/runs/x")  # doctest: +SKIP
        ['runs/x/robustness_report.json', ...]
    """
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise LauncherError(f"s3 destination must look like s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not folder.is_dir():
        raise LauncherError(f"nothing to upload: {folder} is not a directory")
    if client is None:
        import boto3

        client = boto3.client("s3")
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = "/".join(part for part in (prefix.strip("/"), path.relative_to(folder).as_posix()) if part)
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``s3sync DIR s3://bucket/prefix``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m robustlit_launcher.s3sync DIR s3://bucket/prefix")
    keys = upload_folder(Path(args[0]), args[1])
    print(f"uploaded {len(keys)} files to {args[1]}")


if __name__ == "__main__":
    main()
