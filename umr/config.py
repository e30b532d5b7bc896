"""Configuration: JSON-schema validation with defaults, plus the cross-key checks.

`validate_config` completes a config with the schema's defaults (in place, as
Snakemake's own `validate` does) and stops at the first problem with a one-line
message that starts with the offending key, before any job runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from umr.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "resources" / "config.schema.yaml"


def _with_defaults(validator_class):
    """A validator class that fills in `default` values of missing properties first."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = _key(list(error.absolute_path) + [unknown[0]])
        return f"config key '{where}': unknown key (allowed here: {', '.join(allowed)})"
    if error.validator == "oneOf" and error.schema.get("oneOf") == [{"required": ["hub"]}, {"required": ["toy"]}]:
        return f"config key '{_key(error.absolute_path)}': give exactly one of 'hub' (a model id) or 'toy' (build a tiny model)"
    return f"config key '{_key(error.absolute_path)}': {error.message}"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into `config` in place and check it; raises ConfigError naming the key."""
    schema = load_schema()
    validator = _Validator(schema)
    # Shallowest first; a oneOf/anyOf verdict ("exactly one of hub or toy") only after the
    # errors of the keys themselves, so `hub: 5` is reported as a wrong type of `hub`.
    errors = sorted(validator.iter_errors(config), key=lambda e: (e.validator in ("oneOf", "anyOf"),
                                                                   len(e.absolute_path),
                                                                   list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_message(errors[0]))
    _check_toy_model_defaults(config, schema)
    _check_cross_keys(config)
    return config


def _check_toy_model_defaults(config: dict, schema: dict) -> None:
    """`toy_models.<kind>` holds the same knobs as a model's `toy:` section: check them the same way."""
    knobs = schema["properties"]["models"]["additionalProperties"]["properties"]["toy"]
    validator = jsonschema.Draft202012Validator(knobs)
    for kind, settings in config["toy_models"].items():
        errors = sorted(validator.iter_errors(settings), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            error = errors[0]
            error.path.appendleft(kind)
            error.path.appendleft("toy_models")
            raise ConfigError(_message(error))


def _model(config: dict, key: str, name: str, kind: str) -> dict:
    models = config["models"]
    if name not in models:
        raise ConfigError(f"config key '{key}': model {name!r} is not defined under 'models' ({', '.join(models)})")
    if models[name]["kind"] != kind:
        raise ConfigError(f"config key '{key}': model {name!r} is a {models[name]['kind']}, not a {kind}")
    return models[name]


def _check_cross_keys(config: dict) -> None:
    umr, rerank, distill = config["umr"], config["umr"]["rerank"], config["umr"]["distill"]
    _model(config, "umr.retriever", umr["retriever"], "retriever")
    _model(config, "umr.rerank.reranker", rerank["reranker"], "reranker")
    if config["benchmark"] != "toy":
        for name, model in config["models"].items():
            if "toy" in model:
                raise ConfigError(f"config key 'models.{name}.toy': tiny models are built from the toy benchmark; "
                                  f"benchmark {config['benchmark']!r} needs a 'hub' model id")
    if rerank["top_k"] > config["retrieval"]["top_k"]:
        raise ConfigError(f"config key 'umr.rerank.top_k': {rerank['top_k']} is larger than retrieval.top_k "
                          f"({config['retrieval']['top_k']}), the passages each run keeps")
    if rerank["group_languages"] and rerank["chunks"] != 1:
        raise ConfigError(f"config key 'umr.rerank.group_languages': one job per split writes chunk 0 of 1 of each "
                          f"language; it needs umr.rerank.chunks 1, not {rerank['chunks']!r}")
    if (rerank["report_top_k"] or 0) > config["retrieval"]["top_k"]:
        raise ConfigError(f"config key 'umr.rerank.report_top_k': {rerank['report_top_k']} is larger than "
                          f"retrieval.top_k ({config['retrieval']['top_k']}), the passages each run keeps")
    for key, tasks in (("umr.rerank.last_iteration_tasks", rerank["last_iteration_tasks"]),
                       ("baselines.bm25.tasks", config["baselines"]["bm25"]["tasks"]),
                       ("baselines.mgenq.tasks", config["baselines"]["mgenq"]["tasks"])):
        unknown = [t for t in tasks or () if t not in umr["tasks"]]
        if unknown:
            raise ConfigError(f"config key '{key}': {', '.join(unknown)} not in umr.tasks ({', '.join(umr['tasks'])})")
    if distill["keep"] == "best_val_rank" and config["benchmark"] == "toy":
        n_train = min(config["toy"]["questions"][t]["train"] for t in umr["tasks"]) * len(config["languages"])
        if distill["validation"]["questions"] + distill["batch_size"] > n_train:
            raise ConfigError(f"config key 'umr.distill.validation.questions': {distill['validation']['questions']} "
                              f"held out leaves fewer than a batch of the {n_train} toy training questions")
    if distill["passages_per_question"] > rerank["top_k"]:
        raise ConfigError(f"config key 'umr.distill.passages_per_question': {distill['passages_per_question']} is larger "
                          f"than umr.rerank.top_k ({rerank['top_k']}), the reranked passages it samples from")
    if config["benchmark"] == "toy":
        n_train = config["toy"]["questions"]["xor_retrieve"]["train"] * len(config["languages"])
        if distill["batch_size"] > n_train:
            raise ConfigError(f"config key 'umr.distill.batch_size': {distill['batch_size']} is larger than the "
                              f"{n_train} toy training questions")


def load_config_files(*paths: str | Path) -> dict[str, Any]:
    """The config Snakemake builds from several --configfile (later files' nested keys win), validated."""
    from snakemake.utils import update_config

    merged: dict[str, Any] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            update_config(merged, yaml.safe_load(handle) or {})
    return validate_config(merged)


def load_config(path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply `overrides` (a nested dict), validate."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    _merge(config, overrides or {})
    return validate_config(config)


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def validate_for_snakemake(config: dict[str, Any]) -> None:
    """Validate Snakemake's `config` in place; a problem stops the workflow before any job."""
    from snakemake.exceptions import WorkflowError

    try:
        validate_config(config)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None
