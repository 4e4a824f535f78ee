"""README.md's "Two commands" are what CI runs: .ci/run reads them from the README through
.ci/readme_commands.py, which refuses a section without exactly two code blocks."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block(readme, n):
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_commands.py"), str(readme),
                           str(n)], capture_output=True, text=True)


def test_readme_has_the_install_and_test_commands():
    first, second = (_block(ROOT / "README.md", n) for n in (1, 2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == "pip install . && confroute demo"
    assert second.stdout.strip() == 'pip install ".[test]" && python -m pytest tests -q'


def test_ci_runs_the_readme_blocks_not_its_own_copy():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_commands.py README.md 1" in ci and "readme_commands.py README.md 2" in ci
    assert "pytest" not in ci.replace("python -m pytest", "")  # no second test command


def test_a_third_block_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Two commands\n\n```bash\na\n```\n\n```bash\nb\n```\n\n"
                      "```bash\nc\n```\n\n## Next\n")
    r = _block(readme, 1)
    assert r.returncode != 0 and "3 code blocks, not 2" in r.stderr
