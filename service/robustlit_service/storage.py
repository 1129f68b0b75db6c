"""Artifact stores: files stay in the run's folder on local disk, or are uploaded to S3-compatible storage."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from robustlit_service.errors import ApiError


def safe_relative(name: str) -> str:
    """``name`` as a relative POSIX path that cannot leave its folder.

    Raises:
        ApiError: 400 for absolute paths, ``..`` parts, backslashes or NUL bytes.

    Example:
        >>> safe_relative("plots/reliability.png")
        'plots/reliability.png'
        >>> safe_relative("../../etc/passwd")
        Traceback (most recent call last):
        ...
        robustlit_service.errors.ApiError: artifact name '../../etc/passwd' must stay inside the run folder
    """
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute()
            or any(part in ("..", "") for part in name.split("/"))):
        raise ApiError(400, "invalid_artifact_name", f"artifact name {name!r} must stay inside the run folder")
    return str(path)


def inside(folder: Path, name: str) -> Path:
    """``folder / name`` once it is checked to resolve inside ``folder`` (symlinks included)."""
    root = folder.resolve()
    target = (root / safe_relative(name)).resolve()
    if target != root and root not in target.parents:
        raise ApiError(400, "invalid_artifact_name", f"artifact name {name!r} must stay inside the run folder")
    return target


def content_type(name: str) -> str:
    """The MIME type guessed from ``name``'s extension.

    Example:
        >>> content_type("report.json")
        'application/json'
    """
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class LocalStore:
    """Artifacts are served from the run's own folder.

    Example:
        >>> LocalStore().uri_for(Path("/data/runs/abc"), "robustness_report.json")
        'file:///data/runs/abc/robustness_report.json'
    """

    def uri_for(self, run_dir: Path, name: str) -> str:
        """The URI of artifact ``name`` of the run in ``run_dir``."""
        return inside(run_dir, name).as_uri()

    def publish(self, run_id: str, run_dir: Path, names: list[str]) -> dict[str, str]:
        """Make ``names`` downloadable; returns their URIs."""
        return {name: self.uri_for(run_dir, name) for name in names}

    def open(self, uri: str, run_dir: Path, name: str) -> Iterator[bytes]:
        """Stream the artifact's bytes."""
        path = inside(run_dir, name)
        if not path.is_file():
            raise ApiError(404, "not_found", f"artifact {name!r} is no longer on disk")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 16):
                yield chunk


class S3Store(LocalStore):
    """Finished runs' artifacts are uploaded to ``s3://bucket/prefix/<run id>/<name>`` and served from there.

    Args:
        bucket: Bucket name (created if missing).
        prefix: Key prefix.
        endpoint_url: For S3-compatible servers (MinIO, moto); AWS when ``None``.

    Example:
        >>> S3Store("artifacts", "runs", "http://127.0.0.1:9000")  # doctest: +SKIP
    """

    def __init__(self, bucket: str, prefix: str = "runs", endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)
        try:
            self.client.head_bucket(Bucket=bucket)
        except self.client.exceptions.ClientError:
            self.client.create_bucket(Bucket=bucket)

    def _key(self, run_id: str, name: str) -> str:
        return "/".join(part for part in (self.prefix, run_id, safe_relative(name)) if part)

    def publish(self, run_id: str, run_dir: Path, names: list[str]) -> dict[str, str]:
        """Upload ``names`` from ``run_dir``; returns their ``s3://`` URIs."""
        uris = {}
        for name in names:
            key = self._key(run_id, name)
            self.client.upload_file(str(inside(run_dir, name)), self.bucket, key,
                                    ExtraArgs={"ContentType": content_type(name)})
            uris[name] = f"s3://{self.bucket}/{key}"
        return uris

    def open(self, uri: str, run_dir: Path, name: str) -> Iterator[bytes]:
        """Stream an uploaded artifact from S3 (or from disk if the run finished before S3 was configured)."""
        if not uri.startswith(f"s3://{self.bucket}/"):
            yield from super().open(uri, run_dir, name)
            return
        key = uri[len(f"s3://{self.bucket}/"):]
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        yield from body.iter_chunks(1 << 16)
