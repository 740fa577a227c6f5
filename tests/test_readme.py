"""The README opens with the run command and the test command; CI runs the latter."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def commands():
    return re.findall(r"```sh\n(.+?)\n```", (REPO / "README.md").read_text())[:2]


def test_readme_opens_with_run_and_test_commands():
    run, test = commands()
    assert "pip install -e ." in run and "fimble complete examples/fib.py" in run
    assert test.endswith("pytest")
    assert (REPO / "examples" / "fib.py").is_file()


def test_ci_runs_the_readme_test_command():
    test = commands()[1]
    install = test.split("&&")[2].strip()
    ci = (REPO / ".ci" / "run").read_text()
    assert install in ci
    assert re.search(r"^pytest$", ci, re.M)
