"""Shared fixtures: the ../shared folder (models, CIFAR-10) and small composed configs."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from robustlit.cli.app import config_dir

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the project's ../shared folder (models and CIFAR-10 copy)")
    return path


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Put ``sys.modules["__main__"]`` back after each test.

    Streamlit's ``AppTest`` leaves a page script there, and a process started with the ``spawn`` method (the
    ``ddp_spawn`` tests) would then run that page as its main module before doing anything else.
    """
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def shared():
    """``shared(relative)``: a path under ../shared, skipping the test when it is absent."""
    return shared_file


@pytest.fixture(scope="session")
def cifar10_test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CIFAR-10 test split as an ImageFolder tree, extracted once per session."""
    archive = shared_file("data/cifar10-jpeg.tar.gz")
    target = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(("test/", "./test/"))]
        tar.extractall(target, members=members, filter="data")
    return target / "test"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of many tiny ops, where thread start-up and contention dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose_config():
    """Compose a config by name with overrides, like the command line does."""

    def _compose(name: str, overrides: list[str]):
        with initialize_config_dir(str(config_dir()), version_base=None):
            return compose(name, overrides=overrides)

    return _compose
