"""The sandbox against hostile samples: each fails, the run goes on, nothing outside changes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from eval.hostile import hostile_samples
from eval.metrics import mean_pass_at_k, pass_at_k, percentile
from eval.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parent.parent


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes of `uid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and "\nState:\tZ" not in (entry / "status").read_text():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(timeout_s=3))


def test_hostile_samples_all_fail_and_leave_no_trace(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    marker = tmp_path / "daemon-marker"
    repo_before = sorted(p.name for p in REPO.iterdir())
    home_before = sorted(p.name for p in Path.home().iterdir())
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.05)
        samples = hostile_samples(Path.home(), REPO, victim, server.getsockname()[1], marker)
        if not sandbox.netns:
            samples.pop("socket to an outside address")
        outcomes = {name: sandbox.run(program, slot=1) for name, program in samples.items()}
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the harness's socket
    for name, outcome in outcomes.items():
        assert not outcome.passed, name
    assert outcomes["infinite loop"].result == "timed out"
    assert outcomes["20 GB allocation"].result == "failed: MemoryError"
    assert outcomes["sys.exit(0) before the tests"].result == "failed: exited before its tests finished"
    assert outcomes["kill the process group"].result == "failed: killed by SIGKILL"
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in REPO.iterdir()) == repo_before
    assert sorted(p.name for p in Path.home().iterdir()) == home_before
    if sandbox.drop_uid:
        assert processes_of(sandbox.config.base_uid + 1) == []  # the daemon was swept
        time.sleep(3.5)
        assert not marker.exists()
    # and the run goes on
    assert sandbox.run("assert sorted([3, 1, 2]) == [1, 2, 3]\n", slot=1).passed


def test_failure_reasons_name_the_exception(sandbox):
    result = sandbox.run("def f():\n    return 1\nassert f() == 2, 'off by one'\n")
    assert result.result == "failed: AssertionError: off by one"


@pytest.mark.skipif(os.geteuid() != 0, reason="uid isolation needs root")
def test_samples_run_as_their_own_uid(sandbox):
    result = sandbox.run(f"import os\nassert os.getuid() == {sandbox.config.base_uid + 2}\n", slot=2)
    assert result.passed, result.result


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))
    assert mean_pass_at_k([(2, 1), (2, 0)], 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
