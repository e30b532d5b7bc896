"""Config validation: defaults filled in, and a bad value stops with a message naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from umr.config import load_config, validate_config
from umr.errors import ConfigError

REPO_CONFIG = "config.yaml"


def test_defaults_fill_an_empty_config():
    config = validate_config({})
    assert config["umr"]["iterations"] == 2
    assert config["umr"]["distill"]["temperature"] == 0.1
    assert config["umr"]["rerank"]["template"] == "official"
    assert config["languages"] == ["ar", "bn", "fi", "ja", "ko", "ru", "te"]


def test_repository_config_is_valid():
    config = load_config(REPO_CONFIG)
    assert config["benchmark"] == "toy"


@pytest.mark.parametrize("override, key", [
    ({"umr": {"distill": {"temperature": 0}}}, "umr.distill.temperature"),
    ({"umr": {"distill": {"temperature": -1.5}}}, "umr.distill.temperature"),
    ({"umr": {"iterations": 0}}, "umr.iterations"),
    ({"umr": {"iterations": "two"}}, "umr.iterations"),
    ({"languages": ["ru", "xx"]}, "languages.1"),
    ({"umr": {"rerank": {"top_k": 4}}}, "umr.distill.passages_per_question"),
    ({"umr": {"rerank": {"top_k": 500}}}, "umr.rerank.top_k"),
    ({"umr": {"rerank": {"report_top_k": 500}}}, "umr.rerank.report_top_k"),
    ({"umr": {"rerank": {"report_top_k": 0}}}, "umr.rerank.report_top_k"),
    ({"retrieval": {"shards": 0}}, "retrieval.shards"),
    ({"umr": {"rerank": {"group_languages": True, "chunks": 2}}}, "umr.rerank.group_languages"),
    ({"umr": {"rerank": {"group_languages": True, "chunks": "auto"}}}, "umr.rerank.group_languages"),
    ({"umr": {"distill": {"in_batch_negatives": "yes"}}}, "umr.distill.in_batch_negatives"),
    ({"umr": {"distill": {"tempreature": 0.1}}}, "umr.distill.tempreature"),
    ({"colour": "blue"}, "colour"),
    ({"umr": {"retriever": "mt5"}}, "umr.retriever"),
    ({"umr": {"rerank": {"reranker": "nope"}}}, "umr.rerank.reranker"),
    ({"umr": {"rerank": {"template": "mine"}}}, "umr.rerank.template"),
    ({"umr": {"distill": {"batch_size": 100000}}}, "umr.distill.batch_size"),
    ({"benchmark": "xor-tydi"}, "models.mcontriever.toy"),
])
def test_bad_values_name_their_key(override, key):
    with open(REPO_CONFIG, encoding="utf-8") as handle:
        base = yaml.safe_load(handle)
    config = copy.deepcopy(base)
    for section, value in override.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    config[section].setdefault(k, {}).update(v)
                else:
                    config[section][k] = v
        else:
            config[section] = value
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert message.startswith(f"config key '{key}'"), message
    assert "\n" not in message


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: toy\numr: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(path)
