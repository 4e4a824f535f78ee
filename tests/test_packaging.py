"""The dependency bounds in pyproject.toml are true: each minimum is at least the version that
first has what the package calls (facts from the projects' release notes)."""
import inspect
import pathlib
import re

PYPROJECT = (pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()


def _minimum(requirement: str):
    m = re.search(r'"' + re.escape(requirement) + r'>=([\d.]+)"', PYPROJECT)
    assert m, f"pyproject.toml has no lower bound for {requirement}"
    return tuple(int(x) for x in m.group(1).split("."))


def test_scikit_learn_bound_has_mlp_sample_weight():
    # routers/mlp.py calls MLPClassifier.fit(X, y, sample_weight=w): new in scikit-learn 1.7.
    from sklearn.neural_network import MLPClassifier

    assert "sample_weight" in inspect.signature(MLPClassifier.fit).parameters
    assert _minimum("scikit-learn") >= (1, 7)


def test_python_bound_is_what_scikit_learn_1_7_needs():
    # scikit-learn 1.7 supports Python 3.10 and later.
    m = re.search(r'requires-python = ">=(\d+)\.(\d+)"', PYPROJECT)
    assert m and (int(m.group(1)), int(m.group(2))) >= (3, 10)
