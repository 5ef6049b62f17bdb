"""Configuration: one frozen dataclass per concern, filled from defaults < TOML < env < flags.

Why one generic loader: every subcommand (serve, train, corpus, ...) has its own config
dataclass, and each must be settable the same three ways. Instead of a hand-written parser per
command, `add_dataclass_arguments` derives `--flags` from the fields and `load_config` merges
the layers, coercing strings from the environment/CLI to the field's declared type.

Environment variables are `<PREFIX><FIELD>` upper-cased, e.g. `MINUTES_PORT` for
`ServerConfig.port` with prefix `MINUTES_`.

A config may hold another concern's config instead of copying its fields: a field with
`metadata={"flatten": True}` (`ServerConfig.engine: EngineConfig`) has its settings at the
outer level (`--max-batch`, `MINUTES_MAX_BATCH`, `max_batch` in TOML), each under its field name
or the `metadata["name"]` it gives (`EngineConfig.store` is the server's `model_store`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, name: str = "value") -> Any:
    """Convert `value` (often a string from env/CLI, or a TOML scalar) to type `tp`."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"not an integer: {value!r}")
            return base(value)
        if base is Path:
            return Path(value)
        if origin in (list, tuple):
            (item_tp, *_rest) = typing.get_args(base) or (str,)
            if isinstance(value, str):
                text = value.strip()
                items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
            else:
                items = list(value)
            converted = [coerce(v, item_tp, name) for v in items]
            return tuple(converted) if origin is tuple else converted
        if origin is dict or base is dict:
            return json.loads(value) if isinstance(value, str) else dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {value!r} as {getattr(base, '__name__', base)}: {exc}") from exc
    return value


Setting = tuple[tuple[str, ...], Any, dataclasses.Field]  # (field path, type, field)


def settings(cls: type) -> dict[str, Setting]:
    """Every setting of `cls` by its public name, nested (`flatten`) configs' included."""
    out: dict[str, Setting] = {}
    ftypes = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("flatten"):
            for key, (path, tp, sub) in settings(ftypes[f.name]).items():
                out[key] = ((f.name, *path), tp, sub)
        else:
            out[f.metadata.get("name", f.name)] = ((f.name,), ftypes[f.name], f)
    return out


def _build(cls: type[T], values: dict[tuple[str, ...], Any]) -> T:
    ftypes = _field_types(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("flatten"):
            kwargs[f.name] = _build(ftypes[f.name], {p[1:]: v for p, v in values.items() if p[0] == f.name})
        elif (f.name,) in values:
            kwargs[f.name] = values[(f.name,)]
    return cls(**kwargs)


def from_mapping(cls: type[T], values: Mapping[str, Any], *, source: str = "config") -> T:
    """Build `cls` from defaults overridden by `values`; unknown keys are an error."""
    known = settings(cls)
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {sorted(unknown)} for {cls.__name__}")
    return _build(cls, {known[k][0]: coerce(v, known[k][1], f"{source}:{k}") for k, v in values.items()})


def env_values(cls: type, prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `<PREFIX><SETTING>` variables that are set, keyed by setting name."""
    environ = os.environ if environ is None else environ
    out = {}
    for name in settings(cls):
        key = f"{prefix}{name}".upper()
        if key in environ:
            out[name] = environ[key]
    return out


def read_toml_section(path: Path | None, section: str | None) -> dict[str, Any]:
    """The table `section` of a TOML file (the whole file when `section` is None)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if section is None:
        return data
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return table


def load_config(
    cls: type[T],
    *,
    toml_path: Path | None = None,
    section: str | None = None,
    env_prefix: str = "MINUTES_",
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Defaults < TOML `[section]` < environment < explicit overrides (CLI flags)."""
    merged: dict[str, Any] = {}
    merged.update(read_toml_section(toml_path, section))
    merged.update(env_values(cls, env_prefix, environ))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(cls, merged, source=cls.__name__)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--setting-name` flag per setting; unset flags stay None (no override).

    The help text is the field's `metadata["help"]` when given.
    """
    for name, (_, tp, f) in settings(cls).items():
        flag = "--" + name.replace("_", "-")
        base, _ = _unwrap_optional(tp)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        helptext = f"{f.metadata.get('help', '')} (default: {default!r})".strip()
        if base is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction, help=helptext)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=helptext)


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of `cls` that were given on the command line."""
    return {name: getattr(args, name) for name in settings(cls) if getattr(args, name, None) is not None}


def to_toml_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass by setting name (nested configs flattened, as they
    are read), with Paths as strings (for printing)."""
    out = {}
    for name, (path, _, _) in settings(type(config)).items():
        v = config
        for part in path:
            v = getattr(v, part)
        out[name] = str(v) if isinstance(v, Path) else v
    return out
