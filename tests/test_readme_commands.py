"""README.md's "Two commands" are what CI runs: .ci/run holds both as lines of its own, and
.ci/readme_commands.py (which refuses a section without exactly two code blocks) reads them
from the README to check that the two have not drifted apart."""
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


def test_ci_runs_exactly_the_readme_blocks():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    blocks = [_block(ROOT / "README.md", n).stdout.strip() for n in (1, 2)]
    assert all(lines.count(b) == 1 for b in blocks), blocks
    assert lines.index(blocks[0]) < lines.index(blocks[1])
    assert sum("pytest" in line for line in lines) == 1  # no second test command


def test_a_third_block_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Two commands\n\n```bash\na\n```\n\n```bash\nb\n```\n\n"
                      "```bash\nc\n```\n\n## Next\n")
    r = _block(readme, 1)
    assert r.returncode != 0 and "3 code blocks, not 2" in r.stderr
