"""The sandbox against hostile samples: each fails, the run goes on, nothing outside changes,
and the verdict cannot be made by the sample."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eval import sandbox as sandbox_module
from eval.hostile import ENTRY_POINT, GOOD, LEFTOVER, SHM_KEY, TESTS, hostile_samples
from eval.metrics import mean_pass_at_k, pass_at_k, percentile
from eval.sandbox import Sandbox, SandboxConfig, SandboxUnavailable, missing_isolation

REPO = Path(__file__).resolve().parent.parent
MISSING = missing_isolation()
needs_isolation = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))


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


def shared_memory_keys() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines if line.strip()}


@pytest.fixture(scope="module")
def sandbox():
    if MISSING:
        pytest.skip("; ".join(MISSING))
    box = Sandbox(SandboxConfig(timeout_s=3))
    yield box
    box.close()


@needs_isolation
def test_hostile_samples_all_fail_and_leave_no_trace(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    repo_before = sorted(p.name for p in REPO.iterdir())
    home_before = sorted(p.name for p in Path.home().iterdir())
    planted = "FIMBLE_PLANTED_ENVIRONMENT_SECRET"
    with socket.socket() as server, subprocess.Popen(["sleep", "60"], env={"SECRET": planted}) as witness:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.05)
        samples = hostile_samples(Path.home(), REPO, victim, server.getsockname()[1], planted)
        outcomes = {name: sandbox.run(program, TESTS, ENTRY_POINT, slot=1) for name, program in samples.items()}
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the harness's socket
        assert witness.poll() is None  # "kill every process it can" did not reach outside
        witness.kill()
    failed = {name for name, outcome in outcomes.items() if not outcome.passed}
    assert failed == set(samples), {n: o.result for n, o in outcomes.items() if o.passed}
    assert outcomes["infinite loop"].result == "timed out"
    assert outcomes["20 GB allocation"].result == "failed: MemoryError"
    assert outcomes["sys.exit(0) before the tests"].result == "failed: exited before its tests finished"
    assert outcomes["print its own file and exit 0"].result == "failed: exited before its tests finished"
    assert outcomes["forge a verdict on every descriptor"].result == "failed: exited before its tests finished"
    assert outcomes["redefine the test's comparison"].result == "failed: AssertionError"
    assert outcomes["read another process's environment"].result == "failed: AssertionError"
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in REPO.iterdir()) == repo_before
    assert sorted(p.name for p in Path.home().iterdir()) == home_before
    assert not any((Path(folder) / LEFTOVER).exists() for folder in ("/tmp", "/var/tmp", "/dev/shm"))
    assert SHM_KEY not in shared_memory_keys()
    assert processes_of(sandbox.uid_for(1)) == []  # the daemon ended with its PID namespace
    # and the run goes on
    assert sandbox.run(GOOD, TESTS, ENTRY_POINT, slot=1).passed


@needs_isolation
def test_failure_reasons_name_the_exception(sandbox):
    tests = "def check(candidate):\n    assert candidate() == 2, 'off by one'\n"
    assert sandbox.run("def f():\n    return 1\n", tests, "f").result == "failed: AssertionError: off by one"
    assert sandbox.run("def f():\n    return {}['k']\n", tests, "f").result == "failed: KeyError: 'k'"
    assert sandbox.run("def g():\n    return 2\n", tests, "f").result == "failed: NameError: the sample defines no f"


@needs_isolation
def test_values_cross_as_data_and_compare_as_python_would(sandbox):
    tests = ("import math\ndef check(candidate):\n    assert candidate('x') == (1.5, [1, 'a'], {2: {3}}, None, True)\n"
             "    assert math.isinf(candidate(float('inf')))\n")
    program = ("def f(x):\n    if x == 'x':\n        return (1.5, [1, 'a'], {2: {3}}, None, True)\n"
               "    return x\n")
    assert sandbox.run(program, tests, "f").passed


@needs_isolation
def test_samples_run_as_a_uid_of_their_own_that_no_other_run_holds(sandbox):
    other = Sandbox(SandboxConfig(timeout_s=3))
    try:
        uid = sandbox.uid_for(2)
        assert other.uid_for(2) != uid  # two runs at once never share a uid
        tests = f"def check(candidate):\n    assert candidate() == {uid}\n"
        result = sandbox.run("import os\ndef f():\n    return os.getuid()\n", tests, "f", slot=2)
        assert result.passed, result.result
    finally:
        other.close()


def test_without_its_isolation_the_sandbox_refuses_and_says_what_is_missing(monkeypatch):
    missing = ("root: samples run as a uid of their own",)
    monkeypatch.setattr(sandbox_module, "missing_isolation", lambda commands=False: missing)
    with pytest.raises(SandboxUnavailable, match="will not run generated code without its sandbox; missing here: "
                                                 "root: samples run as a uid of their own"):
        Sandbox()


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to another uid to probe as a user")
def test_the_probe_names_root_as_missing_for_a_user():
    import shutil
    import tempfile

    python = sandbox_module.sample_python()
    if not python:
        pytest.skip("no interpreter another uid can run")
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        jail = Path(shutil.copy(sandbox_module.JAIL, folder / "jail.py"))
        jail.chmod(0o644)
        probe = subprocess.run([python, "-I", str(jail), "probe"], capture_output=True, text=True, user=65534,
                               group=65534, cwd="/", timeout=60)
    finally:
        shutil.rmtree(folder)
    assert any(m.startswith("root:") for m in json.loads(probe.stdout)["missing"]), probe.stderr


@needs_isolation
def test_eval_execute_scores_given_samples_in_input_order(tmp_path):
    from eval.data import load_problems

    problems = load_problems(limit=2)
    rows = [{"task_id": problems[1]["task_id"], "completion": problems[1]["canonical_solution"]},
            {"task_id": problems[0]["task_id"], "completion": "    import os\n    os._exit(0)\n"},
            {"task_id": problems[0]["task_id"], "completion": problems[0]["canonical_solution"]}]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "eval", "execute", str(samples), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["passed"]) for r in results] == [(problems[1]["task_id"], True),
                                                              (problems[0]["task_id"], False),
                                                              (problems[0]["task_id"], True)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 3 and summary["passed"] == 2 and summary["pass@1"] == 0.75


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
    # Linear between the two nearest ranks, as numpy's default: rank 0.95 * 9 = 8.55 of 1..10.
    assert round(percentile(list(range(1, 11)), 95), 9) == 9.55
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3
    assert percentile([], 50) != percentile([], 50)  # NaN
