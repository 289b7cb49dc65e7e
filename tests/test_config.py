"""Config loading: YAML + dotted overrides, and clear errors for bad keys and values."""

from __future__ import annotations

import pytest

from carve.core.config import CarveConfig, ConfigError


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("root: /tmp/x\nsegment:\n  min_len_s: 0.7\ncaption:\n  backend: openai\n")
    cfg = CarveConfig.load(p, ["segment.max_len_s=9.0", "ray.num_cpus=2", "cluster.levels=[4, 16]"])
    assert cfg.root == "/tmp/x"
    assert cfg.segment.min_len_s == 0.7
    assert cfg.segment.max_len_s == 9.0
    assert cfg.caption.backend == "openai"
    assert cfg.ray.num_cpus == 2
    assert cfg.cluster.levels == [4, 16]


def test_unknown_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"segment\.min_len_frame"):
        CarveConfig.load(None, ["segment.min_len_frame=3"])


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"caption\.backend"):
        CarveConfig.load(None, ["caption.backend=gpt"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        CarveConfig.load(None, ["nonsense"])


def test_missing_and_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CarveConfig.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        CarveConfig.load(bad)


def test_with_overrides_merges_nested():
    cfg = CarveConfig().with_overrides({"shard": {"policy": "temperature"}, "root": "/r"})
    assert cfg.shard.policy == "temperature"
    assert cfg.shard.rows_per_shard == CarveConfig().shard.rows_per_shard
    with pytest.raises(ConfigError):
        CarveConfig().with_overrides({"shard": {"policy": "random"}})


@pytest.mark.parametrize("command", [["run", "--source", "x"], ["eval-segments", "--truth", "t.json"],
                                     ["export", "--out", "o"], ["report"]])
def test_carve_log_level_is_honoured_by_every_command(monkeypatch, command):
    """CARVE_LOG_LEVEL sets the level when neither -v nor the config's log_level does; -v and the
    config win over it."""
    import logging

    from carve.cli.main import build_parser, load_config

    parser = build_parser()
    carve_log = logging.getLogger("carve")
    monkeypatch.setenv("CARVE_LOG_LEVEL", "DEBUG")
    load_config(parser.parse_args(command))
    assert carve_log.level == logging.DEBUG
    load_config(parser.parse_args([*command, "--set", "log_level=ERROR"]))
    assert carve_log.level == logging.ERROR
    load_config(parser.parse_args([*command, "-v"]))
    assert carve_log.level == logging.INFO
    monkeypatch.delenv("CARVE_LOG_LEVEL")
    load_config(parser.parse_args(command))
    assert carve_log.level == logging.WARNING
