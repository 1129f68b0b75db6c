"""``robustlit launch``: run ``robustlit-train`` or ``robustlit-eval`` through a launcher backend.

Example:
    robustlit launch --backend local --follow trainer=debug
    robustlit launch --backend slurm --gpus 4 --nodes 2 --partition gpu recipe=pgd_at data=cifar10
    robustlit launch --backend kubernetes --dry-run --gpus 8 --image registry/robustlit:0.1 \
        --data-pvc datasets --artifacts-pvc runs data=cifar10 data.root=/data/cifar10
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from robustlit.errors import ConfigError

PROGRAMS = {"train": ("robustlit-train", "train"), "eval": ("robustlit-eval", "eval")}


def add_launch_parser(commands: Any) -> None:
    """Register the ``launch`` subcommand on the ``robustlit`` subparsers ``commands``."""
    launch = commands.add_parser(
        "launch", help="run training or evaluation on this machine, a SLURM cluster or Kubernetes",
        description="Submit robustlit-train (or robustlit-eval) with Hydra overrides through a launcher backend.",
    )
    launch.add_argument("--backend", choices=["local", "slurm", "kubernetes"], default="local")
    launch.add_argument("--program", choices=sorted(PROGRAMS), default="train", help="train (default) or eval")
    launch.add_argument("--name", default="", help="job name (default: the program)")
    launch.add_argument("--dry-run", action="store_true", help="print what would be submitted and exit")
    launch.add_argument("--follow", action="store_true", help="stream the job's log until it ends")
    launch.add_argument("--root", default=None, help="job folder (local: runs/jobs; slurm: runs/slurm, shared)")
    launch.add_argument("--gpus", type=int, default=0, help="GPUs per node; sets trainer.devices (default 0: CPU)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes; sets trainer.num_nodes (default 1)")
    slurm = launch.add_argument_group("slurm")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--timeout-min", type=int, default=240, help="time limit per allocation (requeued after it)")
    slurm.add_argument("--cpus-per-task", type=int, default=None)
    kube = launch.add_argument_group("kubernetes")
    kube.add_argument("--image", default="ghcr.io/robustlit/robustlit:latest", help="container image with robustlit")
    kube.add_argument("--namespace", default="default")
    kube.add_argument("--workdir", default="/workspace", help="working directory inside the container")
    kube.add_argument("--cpu", default=None, help="CPU request/limit per pod, e.g. 8")
    kube.add_argument("--memory", default=None, help="memory request/limit per pod, e.g. 32Gi")
    kube.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE")
    kube.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT")
    kube.add_argument("--data-pvc", default=None, help="PVC with the datasets, mounted read-only at /data")
    kube.add_argument("--artifacts-pvc", default=None, help="PVC for the run outputs, mounted at /artifacts")
    kube.add_argument("--s3", default=None, metavar="s3://BUCKET/PREFIX", help="upload the outputs there after the run")
    kube.add_argument("--secret-env", action="append", default=[], metavar="VAR=SECRET:KEY")
    kube.add_argument("--env-from-secret", action="append", default=[], metavar="SECRET")
    kube.add_argument("--image-pull-secret", action="append", default=[], metavar="SECRET")
    kube.add_argument("--service-account", default=None)
    launch.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. recipe=mixup trainer.max_epochs=5")
    launch.set_defaults(run=run_launch)


def trainer_overrides(gpus: int, nodes: int) -> list[str]:
    """Overrides that make the trainer use ``gpus`` per node on ``nodes`` nodes (none for CPU).

    Example:
        >>> trainer_overrides(8, 2)
        ['trainer=ddp', 'trainer.devices=8', 'trainer.num_nodes=2']
    """
    if gpus < 0 or nodes < 1:
        raise ConfigError(f"--gpus must be >= 0 and --nodes >= 1, got --gpus {gpus} --nodes {nodes}")
    if gpus == 0:
        if nodes > 1:
            raise ConfigError("--nodes > 1 needs GPUs; pass --gpus N (robustlit runs multi-node DDP on GPUs)")
        return []
    if gpus == 1 and nodes == 1:
        return ["trainer=gpu"]
    return ["trainer=ddp", f"trainer.devices={gpus}", f"trainer.num_nodes={nodes}"]


def _pairs(items: list[str], option: str, separator: str = "=") -> dict[str, str]:
    pairs = {}
    for item in items:
        key, found, value = item.partition(separator)
        if not found or not key or not value:
            raise ConfigError(f"{option} {item!r} must look like KEY{separator}VALUE")
        pairs[key] = value
    return pairs


def resolved_config(config_name: str, overrides: list[str]) -> dict[str, Any]:
    """Compose ``config_name`` with ``overrides`` like the app would, and resolve every interpolation."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import check_group_overrides

    check_group_overrides(overrides, config_dir())
    with initialize_config_dir(str(config_dir()), version_base=None):
        cfg = compose(config_name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def kubernetes_submission(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], str]:
    """The backend, job, resolved config and name of a Kubernetes launch (nothing is contacted yet)."""
    from robustlit_launcher import Job
    from robustlit_launcher.k8s import KubernetesBackend, job_name

    program, config_name = PROGRAMS[args.program]
    backend = KubernetesBackend(
        namespace=args.namespace, image=args.image, gpus=args.gpus, nodes=args.nodes, cpu=args.cpu,
        memory=args.memory, node_selector=_pairs(args.node_selector, "--node-selector"),
        tolerations=list(args.toleration), data_pvc=args.data_pvc, artifacts_pvc=args.artifacts_pvc, s3_uri=args.s3,
        secret_env=_pairs(args.secret_env, "--secret-env"), env_from_secrets=list(args.env_from_secret),
        image_pull_secrets=list(args.image_pull_secret), service_account=args.service_account,
    )
    options = backend.options
    overrides = [*trainer_overrides(args.gpus, args.nodes), *args.overrides]
    # the name hashes the config before its output_dir is known, since the output_dir is named after the job
    base = Job([program, "--config-dir", options.config_mount, "--config-name", "config"], args.workdir,
               name=args.name or args.program)
    name = job_name(base, options, resolved_config(config_name, overrides + ["output_dir=."]))
    output_dir = f"{options.artifacts_mount}/{name}"
    config = resolved_config(config_name, [*overrides, f"output_dir={output_dir}"])
    job = Job([*base.command, f"hydra.run.dir={output_dir}"], args.workdir, name=base.name)
    return backend, job, config, name


def run_launch(args: argparse.Namespace) -> None:
    """Submit (or, with ``--dry-run``, print) the launch described by ``args``; see :func:`add_launch_parser`."""
    from robustlit_launcher import Job, get_backend

    if args.backend == "kubernetes":
        backend, job, config, name = kubernetes_submission(args)
        if args.dry_run:
            print(backend.dry_run(job, config, name), end="")
            return
        handle = backend.submit(job, config, name)
    else:
        program, _ = PROGRAMS[args.program]
        overrides = [*trainer_overrides(args.gpus, args.nodes), *args.overrides]
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
        name = args.name or program
        # a pinned output dir: a requeued SLURM job finds its last.ckpt there and resumes
        run_dir = Path("runs") / "launch" / f"{name}_{stamp}"
        command = [shutil.which(program) or program, *overrides, f"hydra.run.dir={run_dir.resolve()}"]
        job = Job(command, workdir=str(Path.cwd()), name=name)
        if args.dry_run:
            print(shlex.join(command))
            return
        if args.backend == "local":
            backend = get_backend("local", root=Path(args.root or "runs/jobs"))
        else:
            backend = get_backend(
                "slurm", folder=Path(args.root or "runs/slurm").resolve(), partition=args.partition,
                timeout_min=args.timeout_min, nodes=args.nodes, tasks_per_node=max(args.gpus, 1),
                gpus_per_node=args.gpus or None, cpus_per_task=args.cpus_per_task,
                additional_parameters={"account": args.account} if args.account else None,
            )
        handle = backend.submit(job)
    print(f"submitted {handle} ({args.backend})")
    if args.follow:
        follow(backend, handle)


def follow(backend: Any, handle: str, poll_s: float = 1.0) -> None:
    """Print the job's log as it grows until the job ends; exit with status 1 unless it succeeded."""
    from robustlit_launcher import JobStatus

    seen = 0
    while True:
        status = backend.status(handle)
        text = backend.logs(handle, offset=seen)
        seen += len(text)
        sys.stdout.write(text)
        sys.stdout.flush()
        if status.finished:
            break
        time.sleep(poll_s)
    print(f"{handle}: {status.value}")
    if status is not JobStatus.SUCCEEDED:
        raise SystemExit(1)
