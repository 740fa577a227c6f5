"""`fimble eval repo --test-cmd`: a repository's own tests judge filled holes in the sandbox, over a
throwaway copy; holes are kept only where the tests cover them; code that would end its own test
run is refused; the repository is never written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_eval_repo import SHAPES, SHAPES_UNITTEST, commit

from engine.errors import EngineError
from eval import sandbox as sandbox_module
from eval.repo_holes import RepoHole, file_hash, file_holes, is_test_file, pick_holes
from eval.repo_tests import RepoTests, covered_holes, emptied, judge_samples, screen
from eval.sandbox import missing_isolation

MISSING = missing_isolation(commands=True)
needs_isolation = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
COMMAND = "python3 -m unittest discover -s src -q"



def make_repo(root: Path, tests: str = SHAPES_UNITTEST) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "shapes.py").write_text(SHAPES)
    (root / "src" / "test_shapes.py").write_text(tests)
    return commit(root)


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_hash(p.read_text()) if p.is_file() else "dir"
            for p in sorted(root.rglob("*")) if ".git" not in p.parts}


def hole_at(text: str, line: str, kind: str = "line") -> RepoHole:
    start = text.index(line)
    return RepoHole(f"src/shapes.py:{text[:start].count(chr(10)) + 1}:{kind}", "src/shapes.py", "python", kind,
                    start, start + len(line), file_hash(text))


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


@pytest.fixture
def tests(repo):
    if MISSING:
        pytest.skip("; ".join(MISSING))
    judge = RepoTests.open(repo, COMMAND, workers=2, timeout_s=None)
    yield judge
    judge.close()


@needs_isolation
def test_the_tests_judge_a_throwaway_copy_and_the_repository_is_not_written(repo, tests):
    before = listing(repo)
    assert tests.baseline_s > 0 and tests.sandbox.config.timeout_s >= 10  # from the baseline's time
    assert tests.run({}).passed
    wrong = SHAPES.replace("return area", "return area + 1")
    result = tests.run({"src/shapes.py": wrong})
    assert not result.passed and result.result.startswith("failed: exit status 1")
    # The filled code tries to rewrite its tests and leave a file behind: the copy is read-only to it.
    tamper = SHAPES + 'open("src/test_shapes.py", "w").write("")\nopen("planted.txt", "w").write("x")\n'
    assert not tests.run({"src/shapes.py": tamper}).passed
    assert listing(repo) == before  # no __pycache__, no planted file, the tests and the source as they were


@needs_isolation
def test_holes_are_kept_only_where_emptying_them_fails_the_tests(repo, tests, tmp_path):
    covered = hole_at(SHAPES, "    area = width * height\n")
    uncovered = hole_at(SHAPES, "    total = 0.0\n")  # in total_area, which no test calls
    body = hole_at(SHAPES, "    area = width * height\n    return area\n", "block")
    coverage = tmp_path / "coverage.jsonl"
    kept = covered_holes(tests, [uncovered, covered, body], {"src/shapes.py": SHAPES}, 5, coverage)
    assert kept == [covered, body]
    rows = {r["id"]: r for r in map(json.loads, coverage.read_text().splitlines())}
    assert rows[uncovered.id]["covered"] is False and rows[uncovered.id]["emptied"] == "passed"
    assert rows[covered.id]["emptied"].startswith("failed: exit status 1")
    # Resumed: the verdicts are read back, nothing runs again.
    tests.command = "exit 1"
    assert covered_holes(tests, [uncovered, covered, body], {"src/shapes.py": SHAPES}, 5, coverage) == kept


def test_an_emptied_hole_still_parses():
    body = hole_at(SHAPES, "    area = width * height\n    return area\n", "block")
    # The whole body gone would be a syntax error (failing every test, proving nothing): `pass`.
    assert "def rectangle_area(width, height):\n    pass\n\n" in (emptied(SHAPES, body) or "")
    line = hole_at(SHAPES, "    area = width * height\n")
    assert emptied(SHAPES, line) == SHAPES.replace("    area = width * height\n", "")
    broken = hole_at(SHAPES, "(radius):", "span")  # `def circle_area` without its parameters
    assert emptied(SHAPES, broken) is None


def test_the_screen_refuses_what_could_end_its_own_test_run():
    assert screen("import os\nos._exit(0)\n", "area = width * height") == "refused: names _exit"
    assert screen("raise SystemExit(0)", "x") == "refused: names SystemExit"
    assert screen('getattr(sys, "ex" + "it")(0)', "x") == "refused: names getattr"
    assert screen("process.exit(0);", "sum += 1;") == "refused: names exit"
    assert screen("os.Exit(0)", "return nil") == "refused: names Exit"
    assert screen("return width * height", "area = width * height") == ""
    assert screen("sys.exit(main())", "sys.exit(main())") == ""  # the original code said so itself


def test_test_files_are_never_holed(tmp_path):
    assert is_test_file(Path("src/test_shapes.py")) and is_test_file(Path("tests/helpers.py"))
    assert is_test_file(Path("web/cart.test.js")) and is_test_file(Path("pkg/server_test.go"))
    assert is_test_file(Path("conftest.py")) and not is_test_file(Path("src/contest.py"))
    root = make_repo(tmp_path / "repo")
    assert {h.path for h in pick_holes(root, 20, skip_tests=True)} == {"src/shapes.py"}
    assert "src/test_shapes.py" in {h.path for h in pick_holes(root, 20)}


@needs_isolation
def test_judging_refuses_forgers_and_times_out_loops(repo, tmp_path):
    judge = RepoTests.open(repo, COMMAND, workers=2, timeout_s=5)  # the looping one ends here
    try:
        line = hole_at(SHAPES, "    area = width * height\n")
        forged = SHAPES.replace("    area = width * height\n", "    import os; os._exit(0)\n")
        # Run as it is, the forger's exit status is 0: the screen stops it first, and the runner's
        # missing end would fail it anyway.
        assert judge.run({"src/shapes.py": forged}).result.startswith("failed: exit status 0, but 1 Python process")
        # The exec family past the screen's words: the test runner is replaced by a program that exits 0.
        execs = SHAPES.replace("    area = width * height\n", "    import os; os.execlp('true', 'true')\n")
        looping = SHAPES.replace("    area = width * height\n", "    while True: pass\n")
        right = SHAPES.replace("    area = width * height\n", "    area = height * width\n")
        samples = [(line, {"id": "a", "completion": "import os; os._exit(0)", "expected": "area = width * height"},
                    SHAPES, forged),
                   (line, {"id": "b", "completion": "while True: pass", "expected": "area = width * height"},
                    SHAPES, looping),
                   (line, {"id": "c", "completion": "area = height * width", "expected": "area = width * height"},
                    SHAPES, right),
                   (line, {"id": "d", "completion": "area = width * height", "expected": "area = width * height"},
                    SHAPES, SHAPES),
                   (line, {"id": "e", "completion": "import os; os.execlp('true', 'true')",
                           "expected": "area = width * height"}, SHAPES, execs)]
        verdicts = judge_samples(judge, [(RepoHole(**{**s[0].row(), "id": s[1]["id"]}), *s[1:]) for s in samples],
                                 tmp_path / "results.jsonl")
    finally:
        judge.close()
    assert {k: (v["passed"], v["result"]) for k, v in verdicts.items()} == {
        "a": (False, "refused: names _exit"), "b": (False, "timed out"), "c": (True, "passed"),
        "d": (True, "passed (the original code)"),
        "e": (False, "failed: exit status 0, but 1 Python process(es) under test never reached their end (exec, "
                     "_exit, abort or a signal ended them)")}


@needs_isolation
def test_tests_that_fail_already_are_refused_with_their_reason(tmp_path):
    root = make_repo(tmp_path / "repo", SHAPES_UNITTEST.replace("3.14159", "3.0"))
    with pytest.raises(EngineError, match=r"the test command fails on the repository as it is \(failed: exit "
                                          r"status 1: FAILED \(failures=1\)\)"):
        RepoTests.open(root, COMMAND, workers=1, timeout_s=None)


def test_without_the_sandbox_the_tests_do_not_run(repo, monkeypatch):
    monkeypatch.setattr(sandbox_module, "missing_isolation", lambda commands=False: ("overlayfs: …",))
    with pytest.raises(EngineError, match="--test-cmd runs the repository's tests on generated code: fimble will "
                                          "not run generated code without its sandbox; missing here: overlayfs"):
        RepoTests.open(repo, COMMAND, workers=1, timeout_s=None)


def test_file_holes_give_each_kind_in_a_file():
    holes = file_holes("shapes.py", SHAPES, "python", ("line", "block"), random.Random(0), per_file=4)
    assert {h.kind for h in holes} == {"line", "block"}


@needs_isolation
def test_a_symlink_in_the_repository_does_not_lead_the_write_out(repo, tests, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("kept = True\n")
    (repo / "src" / "link.py").symlink_to(outside)
    result = tests.run({"src/link.py": "kept = False\n"})
    assert result.result == "failed: exit status 97: ValueError: 'src/link.py' leads out of the tree"
    assert outside.read_text() == "kept = True\n"
