"""The project's promises: .ci/run runs exactly the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python -m venv")]
    assert len(commands) == 2, "the README has one command to run the app and one to run the tests"
    assert commands[0].endswith("python app.py") and commands[1].endswith("python -m pytest")
    assert commands[1] in (ROOT / ".ci/run").read_text().splitlines()
