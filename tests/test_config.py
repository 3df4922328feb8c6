"""The config loader's YAML checks: a key given twice in one mapping (at any depth) and nesting too deep are
one-line ConfigErrors naming the key / line, never a silent overwrite or a RecursionError traceback."""

from __future__ import annotations

import time

import pytest

from difflab.cli import main
from difflab.config import MAX_YAML_DEPTH, ConfigError, load_config, load_yaml


def _write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text, key, lines", [
    ("train:\n  lr: 0.1\nmodel:\n  preset: tiny\ntrain:\n  max_steps: 2\n", "'train'", "lines 1 and 5"),  # a section
    ("train:\n  lr: 0.1\n  batch_size: 8\n  lr: 0.2\n", "'lr'", "lines 2 and 4"),
    ("model:\n  net:\n    dropout: 0.1\n    dropout: 0.0\n", "'dropout'", "lines 3 and 4"),                  # depth 3
    ("train: {lr: 0.1, lr: 0.2}\n", "'lr'", "lines 1 and 1"),                                              # flow style
    ("model:\n  net: {1: a, 1.0: b}\n", "1.0", "lines 2 and 2"),                                           # equal keys
])
def test_duplicate_key_is_a_config_error_naming_key_and_lines(tmp_path, text, key, lines):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    msg = str(e.value)
    assert f"key {key} is given twice" in msg and lines in msg and "c.yaml" in msg and "\n" not in msg


def test_merge_key_may_be_overridden():
    """YAML's merge key (<<) is no duplicate: explicit keys override merged ones."""
    assert load_yaml("base: &b {lr: 0.1, batch_size: 8}\ntrain:\n  <<: *b\n  lr: 0.2\n")["train"] == \
        {"lr": 0.2, "batch_size": 8}


def test_duplicate_key_in_an_override_value():
    with pytest.raises(ConfigError, match=r"the value of 'model\.net': key 'a' is given twice"):
        load_config(None, ["model.net={a: 1, a: 2}"])


@pytest.mark.parametrize("text", [
    "train:\n  betas: " + "[" * 5000 + "]" * 5000 + "\n",
    "[" * 5000,
    "a: " + "{a: " * 5000 + "1" + "}" * 5000,
    "- " * 5000 + "1\n",
    "".join("  " * i + "a:\n" for i in range(300)),
])
def test_deep_nesting_is_a_fast_config_error(tmp_path, text):
    t = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"c\.yaml': nested more than {MAX_YAML_DEPTH} levels deep \(line \d+\)"):
        load_config(_write(tmp_path, text))
    assert time.perf_counter() - t < 10


def test_nesting_at_the_limit_still_loads():
    doc = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    v = load_yaml(doc)
    for _ in range(MAX_YAML_DEPTH - 1):
        v = v[0]
    assert v == []
    with pytest.raises(ConfigError, match="nested more than"):
        load_config(None, ["lr=" + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1)])


def test_cli_train_with_a_duplicated_section_is_one_error_line(tmp_path, capsys):
    p = _write(tmp_path, "train:\n  max_steps: 1\ntrain:\n  max_steps: 2\n")
    assert main(["train", str(p), f"out={tmp_path / 'r'}"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("difflab: error: ") and "key 'train' is given twice" in err[0], err
    assert not (tmp_path / "r").exists()
