"""The shared JSONL checkpoint (pure logic, temporary files): header, fsynced appends, torn
last lines, atomic rewrites."""
import json
import os

import pytest

from confroute.runtime import checkpoint as ckpt

HEADER = {"kind": "test-v1", "max_tokens": 256, "models": ["edge", "cloud"]}


def _write(path, header, objs):
    with ckpt.open_append(path, header) as f:
        for o in objs:
            ckpt.append(f, o)


def test_header_is_written_once_and_records_read_back(tmp_path):
    path = tmp_path / "ck.jsonl"
    assert ckpt.load(path, HEADER) == []  # no file yet: nothing done
    _write(path, HEADER, [{"i": 0}, {"i": 1}])
    assert ckpt.load(path, HEADER) == [(2, '{"i": 0}'), (3, '{"i": 1}')]
    _write(path, HEADER, [{"i": 2, "text": "é"}])  # resumed: no second header
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [HEADER, {"i": 0}, {"i": 1}, {"i": 2, "text": "é"}]
    assert [json.loads(t) for _, t in ckpt.load(path, HEADER)][-1]["text"] == "é"
    # headerless files read every line
    assert [n for n, _ in ckpt.load(path)] == [1, 2, 3, 4]


def test_other_settings_are_refused_naming_them(tmp_path):
    path = tmp_path / "ck.jsonl"
    _write(path, HEADER, [{"i": 0}])
    other = dict(HEADER, max_tokens=9, models=["edge"])
    with pytest.raises(ValueError, match=r"ck\.jsonl: the checkpoint was made with other "
                                         r"settings \(max_tokens: checkpoint 256, now 9; "
                                         r"models: checkpoint \['edge', 'cloud'\], now \['edge'\]"
                                         r"\); use another checkpoint file"):
        ckpt.load(path, other)
    # a setting the file does not have differs too (it was made before that setting existed)
    with pytest.raises(ValueError, match="seed: checkpoint None, now 3"):
        ckpt.load(path, dict(HEADER, seed=3))
    assert ckpt.load(path, HEADER) == [(2, '{"i": 0}')]  # refusing changed nothing


@pytest.mark.parametrize("first", ["hello", "[1, 2]", '{"kind": "other-v1"}', "\xff\xfe"])
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, first):
    path = tmp_path / "x.jsonl"
    path.write_bytes(first.encode("latin-1") + b"\n" + b'{"i": 0}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl: line 1: not a test checkpoint"):
        ckpt.load(path, HEADER, what="test checkpoint")


def test_torn_last_line_is_cut_and_redone(tmp_path):
    path = tmp_path / "ck.jsonl"
    _write(path, HEADER, [{"i": 0}, {"i": 1}])
    with open(path, "a") as f:
        f.write('{"i": 2, "ans')  # killed mid-write
    assert ckpt.load(path, HEADER) == [(2, '{"i": 0}'), (3, '{"i": 1}')]
    assert path.read_text().endswith('{"i": 1}\n')  # cut off the file, not just skipped
    _write(path, HEADER, [{"i": 2}])  # the record in flight, redone on a line of its own
    assert [t for _, t in ckpt.load(path, HEADER)] == ['{"i": 0}', '{"i": 1}', '{"i": 2}']
    # a header torn before its newline leaves an empty file: the header is written again
    path.write_text('{"kind": "te')
    assert ckpt.load(path, HEADER) == [] and path.stat().st_size == 0
    _write(path, HEADER, [{"i": 0}])
    assert ckpt.load(path, HEADER) == [(2, '{"i": 0}')]


def test_intact_file_is_read_without_opening_it_for_writing(tmp_path):
    path = tmp_path / "ck.jsonl"
    _write(path, None, [{"i": 0}])
    os.chmod(path, 0o444)
    try:
        assert ckpt.repair(path) == b'{"i": 0}\n'
    finally:
        os.chmod(path, 0o644)
    assert ckpt.repair(tmp_path / "missing.jsonl") == b""


def test_lines_split_on_newline_only(tmp_path):
    # ensure_ascii=False leaves U+2028 and U+0085 raw: not line ends in a checkpoint
    path = tmp_path / "ck.jsonl"
    recs = [{"answer": "a\u2028b\x85c"}, {"answer": "d"}]
    _write(path, HEADER, recs)
    assert [json.loads(t) for _, t in ckpt.load(path, HEADER)] == recs


def test_non_utf8_record_is_named_by_line(tmp_path):
    path = tmp_path / "ck.jsonl"
    path.write_bytes(b'{"i": 0}\n\xff\n')
    with pytest.raises(ValueError, match=r"ck\.jsonl: line 2: not UTF-8 text"):
        ckpt.load(path)


def test_rewrite_is_atomic_and_returns_its_bytes(tmp_path):
    path = tmp_path / "ck.jsonl"
    _write(path, HEADER, [{"i": 0}])
    body = ckpt.rewrite(path, [{"i": 1, "t": "é"}], HEADER)
    assert body == path.read_bytes() and not os.path.exists(str(path) + ".tmp")
    assert ckpt.load(path, HEADER) == [(2, '{"i": 1, "t": "é"}')]
    assert ckpt.rewrite(path, [{"t": "é"}], ensure_ascii=True) == b'{"t": "\\u00e9"}\n'


def test_append_can_keep_ascii_output(tmp_path):
    path = tmp_path / "l.jsonl"
    with ckpt.open_append(path) as f:
        ckpt.append(f, {"t": "é"}, ensure_ascii=True)
    assert path.read_bytes() == b'{"t": "\\u00e9"}\n'
