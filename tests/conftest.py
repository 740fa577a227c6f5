"""Shared fixtures.

`FIMBLE_HOME` points at one temp dir for the whole session, so the real model is assembled once
per test run (not per test) and nothing is written into the user's cache or the repository.
Tests that need the real model take `model_path` or `real_service`; the first such test pays the
assembly (about 5 s) and load (about 1 s).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine.backends.fake import FakeBackend
from engine.config import Settings
from engine.models import ModelInfo
from engine.service import CompletionService

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


# Set when this file is imported, before any test module: the language-server tests copy
# os.environ into their server's environment at import, and their servers must not write to the
# user's cache (models, serve.token, stats.json) either.
_HOME = Path(os.environ.get("FIMBLE_TEST_HOME") or tempfile.mkdtemp(prefix="fimble-test-home-"))
os.environ["FIMBLE_HOME"] = str(_HOME)


@pytest.fixture(scope="session", autouse=True)
def fimble_home() -> Iterator[Path]:
    yield _HOME
    if not os.environ.get("FIMBLE_TEST_HOME"):
        shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def model_path(fimble_home: Path) -> Path:
    from engine.models import assemble

    return assemble()


@pytest.fixture(scope="session")
def real_service(model_path: Path) -> Iterator[CompletionService]:
    # No time budget: what the model writes must not depend on how busy the machine is (the tests
    # of the budget itself give theirs).
    service = CompletionService(Settings(model=str(model_path), time_budget_ms=0))
    service.load()
    yield service
    service.close()


@pytest.fixture()
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture()
def qwen_info() -> ModelInfo:
    """Model info of a Qwen-style vocabulary, without a model file."""
    from engine.prompt import FIM_TEMPLATES

    return ModelInfo(FIM_TEMPLATES[0], None, "<|endoftext|>", "<|im_end|>", False)


@pytest.fixture()
def fake_service(fake_backend: FakeBackend, qwen_info: ModelInfo) -> CompletionService:
    service = CompletionService(Settings(backend="fake"), backend=fake_backend, model_info=qwen_info)
    service.load()
    return service


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.sandbox` tests run generated code: where this machine cannot isolate it (the
    probe names what is missing), they are skipped with that reason, never failed."""
    if item.get_closest_marker("sandbox") is not None:
        from eval.sandbox import missing_isolation

        if missing := missing_isolation():
            pytest.skip("the sandbox is missing here: " + "; ".join(missing))
