"""Kubernetes backend: robustlit runs as batch/v1 Jobs (one pod per node), created and watched with the official client.

A run becomes a ConfigMap (the resolved config), a Job and, for several nodes, a headless Service through
which the pods of an Indexed Job find rank 0. Lightning's DDP reads ``MASTER_ADDR``, ``MASTER_PORT`` and
``NODE_RANK`` and starts one process per GPU in each pod.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustlit_launcher.job import Backend, Job, JobNotFoundError, JobStatus, LauncherError

CANCELED = "robustlit.io/canceled"
CONFIG_KEY = "config.yaml"
MASTER_PORT = 29500
_SECRET_REF = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[-._a-zA-Z0-9]+$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass
class KubernetesOptions:
    """Where and how a job's pods run; every field has a safe default for a single CPU pod.

    Args:
        namespace: Namespace of the Job and its ConfigMap.
        image: Container image with robustlit installed.
        gpus: GPUs per pod (one pod per node); requested as ``gpu_resource``.
        nodes: Pods of the job; more than one makes an Indexed Job plus a headless Service for DDP rendezvous.
        cpu: CPU request and limit per pod, e.g. ``"8"``.
        memory: Memory request and limit per pod, e.g. ``"32Gi"``.
        shm_size: Size of the in-memory ``/dev/shm`` (DataLoader workers and NCCL need more than the 64 MiB default).
        node_selector: Node labels the pods require, e.g. ``{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}``.
        tolerations: ``key[=value]:Effect`` strings, e.g. ``"nvidia.com/gpu:NoSchedule"``.
        data_pvc: PersistentVolumeClaim mounted read-only at ``data_mount`` (datasets).
        artifacts_pvc: PersistentVolumeClaim mounted at ``artifacts_mount`` (run outputs); without one the outputs
            live in an emptyDir and are lost with the pod unless ``s3_uri`` is set.
        s3_uri: ``s3://bucket/prefix``: after the run, the pod uploads ``artifacts_mount`` there.
        secret_env: Environment variables read from secrets, ``{"AWS_SECRET_ACCESS_KEY": "s3-creds:secret_key"}``.
        env_from_secrets: Secrets whose every key becomes an environment variable.
        image_pull_secrets: Secrets for pulling ``image`` from a private registry.
        service_account: Service account of the pods.
        gpu_resource: Extended resource name of the GPUs.
        backoff_limit: Pod retries before the Job fails (per index for several nodes).
        active_deadline_s: Wall-clock limit of the Job, in seconds.
        ttl_after_finished_s: Seconds after which Kubernetes deletes a finished Job.
        labels: Extra labels on every object.

    Example:
        >>> KubernetesOptions(gpus=8, tolerations=["nvidia.com/gpu:NoSchedule"]).gpus
        8
    """

    namespace: str = "default"
    image: str = "ghcr.io/robustlit/robustlit:latest"
    gpus: int = 0
    nodes: int = 1
    cpu: str | None = None
    memory: str | None = None
    shm_size: str = "8Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[str] = field(default_factory=list)
    data_pvc: str | None = None
    data_mount: str = "/data"
    artifacts_pvc: str | None = None
    artifacts_mount: str = "/artifacts"
    s3_uri: str | None = None
    config_mount: str = "/etc/robustlit"
    secret_env: dict[str, str] = field(default_factory=dict)
    env_from_secrets: list[str] = field(default_factory=list)
    image_pull_secrets: list[str] = field(default_factory=list)
    service_account: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    backoff_limit: int = 0
    active_deadline_s: int | None = None
    ttl_after_finished_s: int | None = 7 * 24 * 3600
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise LauncherError(f"kubernetes gpus must be a non-negative integer, got {self.gpus!r}")
        if not isinstance(self.nodes, int) or self.nodes < 1:
            raise LauncherError(f"kubernetes nodes must be a positive integer, got {self.nodes!r}")
        if self.s3_uri is not None and not re.match(r"^s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/.*)?$", self.s3_uri):
            raise LauncherError(f"kubernetes s3_uri must look like s3://bucket/prefix, got {self.s3_uri!r}")
        for variable, reference in self.secret_env.items():
            if not _SECRET_REF.match(reference):
                raise LauncherError(f"kubernetes secret_env[{variable}]={reference!r} must be SECRET:KEY")
        for toleration in self.tolerations:
            _toleration(toleration)


def _toleration(text: str) -> dict[str, str]:
    """``key[=value]:Effect`` as a toleration (``Exists`` without a value, ``Equal`` with one)."""
    spec, _, effect = text.rpartition(":")
    if not spec or effect not in _EFFECTS:
        raise LauncherError(f"kubernetes toleration {text!r} must be KEY[=VALUE]:EFFECT with EFFECT one of "
                            f"{', '.join(_EFFECTS)}")
    key, has_value, value = spec.partition("=")
    if has_value:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def job_name(job: Job, options: KubernetesOptions, config: Mapping[str, Any] | None) -> str:
    """A DNS-1123 name from the job's name and a hash of everything submitted, so a dry run shows the real name.

    Example:
        >>> job_name(Job(["true"], "/w", name="CIFAR sweep #1"), KubernetesOptions(), None)[:24]
        'robustlit-cifar-sweep-1-'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", (job.name or "run").lower()).strip("-")[:40].strip("-") or "run"
    payload = json.dumps([job.command, job.workdir, job.env, repr(options), config], sort_keys=True, default=str)
    return f"robustlit-{slug}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def manifests(
    job: Job, options: KubernetesOptions, config: Mapping[str, Any] | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    """The objects that run ``job``, as plain dicts in the API's camelCase (what ``kubectl apply`` takes).

    A ConfigMap with ``config`` (if given), a headless Service (for several nodes), then the Job.

    Args:
        job: Command, working directory (inside the image), extra environment and name.
        options: Image, resources, placement, storage and secrets.
        config: The resolved run config; mounted as ``options.config_mount/config.yaml``.
        name: Name of the objects; :func:`job_name` when ``None``.

    Example:
        >>> objects = manifests(Job(["robustlit-train"], "/workspace", name="demo"), KubernetesOptions(gpus=1))
        >>> [o["kind"] for o in objects], objects[-1]["spec"]["template"]["spec"]["containers"][0]["resources"]
        (['Job'], {'limits': {'nvidia.com/gpu': '1'}})
    """
    import yaml

    name = name or job_name(job, options, config)
    labels = {"app.kubernetes.io/name": "robustlit", "app.kubernetes.io/instance": name, **options.labels}
    metadata = {"name": name, "namespace": options.namespace, "labels": labels}
    objects: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": options.shm_size}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if config is not None:
        objects.append({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {**metadata, "name": f"{name}-config"},
            "data": {CONFIG_KEY: yaml.safe_dump(dict(config), sort_keys=False)},
        })
        volumes.append({"name": "config", "configMap": {"name": f"{name}-config"}})
        mounts.append({"name": "config", "mountPath": options.config_mount, "readOnly": True})
    if options.data_pvc:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": options.data_pvc, "readOnly": True}})
        mounts.append({"name": "data", "mountPath": options.data_mount, "readOnly": True})
    artifacts = ({"persistentVolumeClaim": {"claimName": options.artifacts_pvc}} if options.artifacts_pvc
                 else {"emptyDir": {}})
    volumes.append({"name": "artifacts", **artifacts})
    mounts.append({"name": "artifacts", "mountPath": options.artifacts_mount})

    env = [{"name": key, "value": value} for key, value in sorted(job.env.items())]
    env += [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    for variable, reference in sorted(options.secret_env.items()):
        secret, key = reference.split(":", 1)
        env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    if options.nodes > 1:
        env += [
            {"name": "MASTER_ADDR", "value": f"{name}-0.{name}.{options.namespace}.svc"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        ]
    resources: dict[str, Any] = {}
    amounts = {"cpu": options.cpu, "memory": options.memory}
    requested = {key: value for key, value in amounts.items() if value is not None}
    if requested:
        resources = {"requests": dict(requested), "limits": dict(requested)}
    if options.gpus:
        resources.setdefault("limits", {})[options.gpu_resource] = str(options.gpus)
    command = list(job.command)
    if options.s3_uri:
        # upload the outputs whatever the exit status, then report the run's own status
        command = ["sh", "-c", 'code=0; "$@" || code=$?; python -m robustlit_launcher.s3sync '
                   f'{options.artifacts_mount} {options.s3_uri.rstrip("/")}/{name} || exit 1; exit $code', "--",
                   *command]
    container: dict[str, Any] = {
        "name": "robustlit", "image": options.image, "command": command, "workingDir": job.workdir,
        "env": env, "resources": resources, "volumeMounts": mounts,
    }
    if options.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": secret}} for secret in options.env_from_secrets]
    if options.nodes > 1:
        container["ports"] = [{"containerPort": MASTER_PORT, "name": "ddp"}]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes}
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [_toleration(text) for text in options.tolerations]
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in options.image_pull_secrets]
    spec: dict[str, Any] = {"backoffLimit": options.backoff_limit, "template": {"metadata": {"labels": labels},
                                                                              "spec": pod}}
    if options.nodes > 1:
        pod["subdomain"] = name
        spec.update({"completionMode": "Indexed", "completions": options.nodes, "parallelism": options.nodes})
        objects.append({
            "apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/instance": name},
                     "ports": [{"name": "ddp", "port": MASTER_PORT}], "publishNotReadyAddresses": True},
        })
    if options.active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = options.active_deadline_s
    if options.ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = options.ttl_after_finished_s
    objects.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec})
    return objects


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    r"""The objects as one multi-document YAML stream, ready for ``kubectl apply -f -``.

    Multi-line strings (the ConfigMap's config) are written as literal blocks, and repeated objects are
    written out again rather than as YAML anchors, so the output reads like a hand-written manifest.

    Example:
        >>> print(to_yaml([{"kind": "ConfigMap", "data": {"a.yaml": "x: 1\ny: 2\n"}}, {"kind": "Job"}]), end="")
        kind: ConfigMap
        data:
          a.yaml: |
            x: 1
            y: 2
        ---
        kind: Job
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return "---\n".join(yaml.dump(dict(item), Dumper=Dumper, sort_keys=False) for item in objects)


def job_status(job: Any) -> JobStatus:
    """Map a ``V1Job`` (as returned by the API) to a :class:`JobStatus`.

    Example:
        >>> from kubernetes import client
        >>> job_status(client.V1Job(status=client.V1JobStatus(active=1, ready=0)))
        <JobStatus.QUEUED: 'queued'>
    """
    annotations = (job.metadata.annotations or {}) if job.metadata else {}
    status = job.status
    conditions = {c.type for c in (status.conditions or []) if c.status == "True"} if status else set()
    if annotations.get(CANCELED) == "true":
        return JobStatus.CANCELED
    if conditions & {"Complete", "SuccessCriteriaMet"}:
        return JobStatus.SUCCEEDED
    if conditions & {"Failed", "FailureTarget"}:
        return JobStatus.FAILED
    if status is not None and (status.ready or 0) > 0:
        return JobStatus.RUNNING
    return JobStatus.QUEUED


class KubernetesBackend(Backend):
    """Submit, watch and cancel robustlit jobs as Kubernetes Jobs through the official ``kubernetes`` client.

    ``cancel`` suspends the Job (Kubernetes deletes its pods) and marks it canceled, so its state and logs of
    finished pods stay readable until ``ttl_after_finished_s``.

    Args:
        kubeconfig: Path of a kubeconfig; ``None`` tries the in-cluster service account, then ``~/.kube/config``.
        context: kubeconfig context to use.
        **options: Fields of :class:`KubernetesOptions` (``namespace``, ``image``, ``gpus`` …).

    Example:
        >>> backend = KubernetesBackend(namespace="ml", image="registry/robustlit:0.1", gpus=8)
        >>> print(backend.dry_run(Job(["robustlit-train"], "/workspace", name="x")))  # doctest: +SKIP
    """

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, **options: Any) -> None:
        try:
            self.options = KubernetesOptions(**options)
        except TypeError as error:
            raise LauncherError(f"unknown kubernetes option: {error}") from None
        self._kubeconfig, self._context = kubeconfig, context
        self._api: Any = None

    def manifests(
        self, job: Job, config: Mapping[str, Any] | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects :meth:`submit` would create (see :func:`manifests`)."""
        return manifests(job, self.options, config, name)

    def dry_run(self, job: Job, config: Mapping[str, Any] | None = None, name: str | None = None) -> str:
        """The YAML :meth:`submit` would apply; nothing is sent to a cluster."""
        return to_yaml(self.manifests(job, config, name))

    def submit(self, job: Job, config: Mapping[str, Any] | None = None, name: str | None = None) -> str:
        """Create the run's objects and return the Job's name; the ConfigMap and Service are owned by the Job."""
        from kubernetes.client.exceptions import ApiException

        api = self._client()
        objects = self.manifests(job, config, name)
        created = objects[-1]
        name, namespace = created["metadata"]["name"], self.options.namespace
        try:
            job_object = api.batch.create_namespaced_job(namespace, created)
        except ApiException as error:
            if error.status == 409:
                raise LauncherError(f"kubernetes job {name} already exists (same command, options and config); "
                                    "delete it or change the job's name") from None
            raise LauncherError(f"kubernetes rejected job {name}: {error.reason}: {error.body}") from None
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_object.metadata.uid,
                 "blockOwnerDeletion": True}
        for item in objects[:-1]:
            item = {**item, "metadata": {**item["metadata"], "ownerReferences": [owner]}}
            if item["kind"] == "ConfigMap":
                api.core.create_namespaced_config_map(namespace, item)
            else:
                api.core.create_namespaced_service(namespace, item)
        return name

    def status(self, handle: str) -> JobStatus:
        """The Job's state: queued until a pod is ready, then running, then complete, failed or canceled."""
        return job_status(self._read(handle))

    def cancel(self, handle: str) -> None:
        """Suspend the Job (its pods are deleted) and mark it canceled; a no-op once it has finished."""
        if self.status(handle).finished:
            return
        patch = {"metadata": {"annotations": {CANCELED: "true"}}, "spec": {"suspend": True}}
        self._client().batch.patch_namespaced_job(handle, self.options.namespace, patch)

    def logs(self, handle: str, offset: int = 0) -> str:
        """Log of the job's rank-0 pod (the newest, if it was retried) from character ``offset`` on."""
        from kubernetes.client.exceptions import ApiException

        if offset < 0:
            raise LauncherError(f"offset must be >= 0, got {offset}")
        self._read(handle)
        api = self._client()
        pods = api.core.list_namespaced_pod(self.options.namespace, label_selector=f"job-name={handle}").items
        ranked = [p for p in pods if (p.metadata.annotations or {}).get(
            "batch.kubernetes.io/job-completion-index", "0") == "0"]
        if not ranked:
            return ""
        newest = max(ranked, key=lambda pod: pod.metadata.creation_timestamp)
        try:
            text = api.core.read_namespaced_pod_log(newest.metadata.name, self.options.namespace)
        except ApiException as error:
            if error.status == 400:  # the container has not started yet
                return ""
            raise
        return text[offset:]

    def _read(self, handle: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._client().batch.read_namespaced_job(handle, self.options.namespace)
        except ApiException as error:
            if error.status == 404:
                raise JobNotFoundError(f"no kubernetes job {handle!r} in namespace {self.options.namespace}") from None
            raise

    def _client(self) -> Any:
        if self._api is None:
            from types import SimpleNamespace

            from kubernetes import client, config

            try:
                if self._kubeconfig is None and self._context is None:
                    try:
                        config.load_incluster_config()
                    except config.ConfigException:
                        config.load_kube_config()
                else:
                    config.load_kube_config(config_file=self._kubeconfig, context=self._context)
            except (config.ConfigException, OSError) as error:
                raise LauncherError(f"cannot reach a Kubernetes cluster: {error}; pass kubeconfig=PATH or run "
                                    "inside the cluster") from None
            self._api = SimpleNamespace(batch=client.BatchV1Api(), core=client.CoreV1Api())
        return self._api
