"""Typed configs: dataclass defaults < YAML file < ``--flag`` < ``key=value``, one-line errors.

Every job config is a dataclass whose fields carry ``metadata={"help": ...}`` and whose
``__post_init__`` validates values (raising ``ConfigError``). ``add_config_arguments`` turns the
fields into ``--kebab-case`` flags; ``resolve_config`` merges the sources, rejecting unknown keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from fairrec_ray.errors import ConfigError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML/CLI value to ``annotation`` (int, float, bool, str, Literal, X | None, tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be None")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: got {value!r}; expected one of {list(args)}")
        return value
    if origin in (tuple, list):
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
        inner = args[0] if args else str
        return tuple(coerce(v, inner, key) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: got {value!r}; expected true or false")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: got {value!r}; expected a number")
        try:
            number = float(value) if annotation is float else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: got {value!r}; expected {annotation.__name__}") from None
        if annotation is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{key}: got {value!r}; expected an integer")
        return number
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: got {value!r}; expected a string")
        return str(value)
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[key.strip().replace("-", "_")] = raw
    return out


def build_config(cls: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """Construct ``cls`` from ``values``; unknown keys and bad types name the key and the source."""
    types_by_name = _field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} for {cls.__name__}; known keys: {', '.join(types_by_name)}"
        )
    kwargs = {k: coerce(v, types_by_name[k], f"{source}: {k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add ``--config``, one ``--flag`` per field (values parsed later) and ``key=value`` overrides."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of config keys")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        annotation = _field_types(cls)[f.name]
        if annotation is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=help_text)
            parser.add_argument(
                "--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false", default=argparse.SUPPRESS
            )
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=f"{help_text} (default: {default})")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, applied last")


def given_values(cls: type, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The config values the user set (YAML < flags < overrides) and where they came from."""
    values: dict[str, Any] = {}
    source = "command line"
    if getattr(args, "config", None):
        values.update(read_yaml(args.config))
        source = str(args.config)
    names = set(_field_types(cls))
    values.update({k: v for k, v in vars(args).items() if k in names})
    values.update(parse_overrides(getattr(args, "overrides", []) or []))
    return values, source


def resolve_config(cls: type[T], args: argparse.Namespace) -> T:
    values, source = given_values(cls, args)
    return build_config(cls, values, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-safe dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


RUN_CONFIG_FILE = "run_config.json"


def claim_output(output: str | Path, config: Any, ignore: Sequence[str] = ()) -> None:
    """Record ``config`` as the run in ``output``; re-running in the same folder resumes, so a
    *different* config there is refused, naming the keys that differ (``ignore``: keys that may
    change between attempts, such as the Ray address or the worker count)."""
    path = Path(output) / RUN_CONFIG_FILE
    current = config_to_dict(config)
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            raise ConfigError(f"{path}: unreadable; delete the folder to start over") from None
        differ = sorted(
            k for k in set(current) | set(previous) if k not in ignore and current.get(k) != previous.get(k)
        )
        if differ:
            shown = ", ".join(f"{k} ({previous.get(k)!r} -> {current.get(k)!r})" for k in differ[:4])
            more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
            raise ConfigError(
                f"{output}: holds a run with other settings: {shown}{more}; re-running resumes it, so give another "
                "--output (or delete this one to start over)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)
