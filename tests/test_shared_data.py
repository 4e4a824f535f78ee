"""Checks of the shared data files themselves (``../shared/data`` or ``$CONFROUTE_DATA``): the
row counts and first rows its README and the loaders' tests rely on. The loader tests run on
either data set (the ``data_dir`` fixture: these files, else the tiny invented set); the facts
that hold only for the shared files are here, and skip without them."""
import pytest

from confroute.eval.benchmarks import get_benchmark
from confroute.eval.code_tasks import humaneval_tasks, load_humaneval_recorded, mbpp_tasks
from helpers.data import DATA, needs_data

pytestmark = [pytest.mark.data, needs_data]


def test_code_benchmarks_have_their_dev_halves():
    assert len(humaneval_tasks(DATA)) == 90
    t = load_humaneval_recorded(DATA)
    assert len(t) == 90 and t.ids[0] == "HumanEval/0"
    assert len(mbpp_tasks(DATA, "test_dev")) == 135 and len(mbpp_tasks(DATA, "train")) == 170
    assert len(get_benchmark("humaneval").items(DATA)) == 90
    assert len(get_benchmark("mbpp").items(DATA)) == 135


def test_gsm8k_train_and_mmlu_subjects():
    train = get_benchmark("gsm8k").items(DATA, "train")
    assert len(train) == 7473 and train[0].reference == "72"
    clean = get_benchmark("mmlu").items(DATA)
    assert len({x.group for x in clean}) == 57
