"""Load typed configs: dataclass defaults, then a YAML file, then ``a.b.c=value`` command-line overrides.

Configs are plain nested ``@dataclass``es; their field defaults are the only defaults. Every value is checked
against the field's annotation, and every mistake becomes a one-line :class:`ConfigError` that names the
full dotted key and where the value came from (the file path, or "command line").

A YAML mapping given for a dict-typed field (``mix: {...}``) replaces the whole dict, while a dotted
override (``mix.caption=0.5``) sets one key and keeps the others.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, Union

import yaml

from mmalign.errors import ConfigError

T = TypeVar("T")
CLI = "command line"
# YAML 1.1 reads "5e-5" and "1e3" as strings (it wants a dot); accept them where a float is expected.
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _Ctx(NamedTuple):
    source: str  # file path or CLI
    root: type  # the top-level config class, for "did you mean" suggestions


class _Mismatch(Exception):
    """A value does not fit a type; turned into a ConfigError by the caller, who knows the key."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls()`` from its defaults, merge the YAML file at ``path``, then apply ``overrides``."""
    cfg = cls()
    if path is not None:
        for key, value in _read_yaml(Path(path)).items():
            _assign(cfg, str(key).split("."), value, str(key), _Ctx(str(path), cls))
    for text in overrides:
        _apply_override(cfg, text, _Ctx(CLI, cls))
    _validate(cfg)
    return cfg


def _validate(cfg: Any) -> None:
    """Call ``validate()`` on every section that defines one: checks that span fields (a world's pairs and
    categories, a loss's settings against its signature) run when the config loads, not mid-run."""
    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        _validate(getattr(cfg, f.name))
    if callable(getattr(type(cfg), "validate", None)):
        cfg.validate()


def to_dict(cfg: Any) -> Any:
    """Plain nested dicts/lists (tuples become lists), keys in declaration order."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def to_yaml(cfg: Any) -> str:
    """YAML text that :func:`load_config` reads back into an equal config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None, allow_unicode=True)


def _read_yaml(path: Path) -> Mapping:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        line = f" line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(" ".join(f"invalid YAML in {path}{line}: {e.problem or e.context}".split())) from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(" ".join(f"cannot read config file {path}: {e}".split())) from None
    if data is None:  # an empty file changes nothing
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must contain a mapping at top level, got {_kind(data)}")
    return data


def _apply_override(cfg: Any, text: str, ctx: _Ctx) -> None:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"malformed override '{text}': expected key=value ({ctx.source})")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw  # e.g. "name=[oops": let the type check decide
    _assign(cfg, key.split("."), value, key, ctx, raw)


def _assign(obj: Any, path: list[str], value: Any, dotted: str, ctx: _Ctx, raw: str | None = None) -> None:
    """Set ``path`` (field names, possibly ending in one key of a dict field) below dataclass ``obj``.

    ``dotted`` is the full key for messages; YAML keys may be dotted too (``optim.lr: 1e-4``).
    """
    name, rest = path[0], path[1:]
    if name not in _hints(type(obj)):
        _unknown_key(dotted, type(obj), ".".join(dotted.split(".")[: -len(path)]), ctx)
    tp = _hints(type(obj))[name]
    section = _section_type(tp)
    if section is not None and (rest or value is not None or not _allows_none(tp)):
        if getattr(obj, name) is None:
            setattr(obj, name, section())
        if rest:
            return _assign(getattr(obj, name), rest, value, dotted, ctx, raw)
        if not isinstance(value, Mapping):
            raise ConfigError(f"key '{dotted}' expects a section (mapping), got {_show(value)} ({ctx.source})")
        for key, item in value.items():  # sections merge key by key; other fields are replaced whole
            _assign(getattr(obj, name), str(key).split("."), item, f"{dotted}.{key}", ctx)
    elif not rest:
        setattr(obj, name, _convert(value, tp, dotted, ctx, raw))
    elif len(rest) == 1 and _dict_value_type(tp) is not None:  # mix.caption=0.5 sets one entry
        entry = _convert(value, _dict_value_type(tp), dotted, ctx, raw)
        setattr(obj, name, {**(getattr(obj, name) or {}), rest[0]: entry})
    else:
        _unknown_key(dotted, type(obj), ".".join(dotted.split(".")[: -len(path)]), ctx)


def _convert(value: Any, tp: Any, dotted: str, ctx: _Ctx, raw: str | None = None) -> Any:
    # On the command line, name=007 or name=true means the string where a str fits.
    for candidate in (value,) if raw is None else (value, raw.strip()):
        try:
            return _coerce(candidate, tp)
        except _Mismatch:
            pass
    raise ConfigError(f"key '{dotted}' expects {_describe(tp)}, got {_show(value)} ({ctx.source})")


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` (lists to tuples, ints to floats) or raise _Mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is type(None):
        return _check(value, value is None)
    if origin is Literal:
        return _check(value, any(value == a and type(value) is type(a) for a in args))
    if tp is bool:
        return _check(value, isinstance(value, bool))
    if tp is int:
        return _check(value, isinstance(value, int) and not isinstance(value, bool))
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        return float(_check(value, isinstance(value, (int, float)) and not isinstance(value, bool)))
    if origin in (list, tuple):
        _check(value, isinstance(value, (list, tuple)))
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):  # fixed length
            _check(value, len(args) == len(value))
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        items = [_coerce(v, args[0]) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        _check(value, isinstance(value, Mapping))
        kt, vt = args
        return {_coerce(k, kt): _coerce(v, vt) for k, v in value.items()}
    if isinstance(tp, type):
        return _check(value, isinstance(value, tp))
    raise TypeError(f"unsupported config field type {tp!r}")  # a bug in the config class, not user error


def _check(value: Any, ok: bool) -> Any:
    if not ok:
        raise _Mismatch
    return value


def _unknown_key(dotted: str, section: type, section_name: str, ctx: _Ctx) -> typing.NoReturn:
    where = "on the command line" if ctx.source == CLI else f"in {ctx.source}"
    close = difflib.get_close_matches(dotted, _valid_keys(ctx.root), n=1, cutoff=0.6)
    under = f" in '{section_name}'" if section_name else ""
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys{under}: " + ", ".join(_hints(section))
    raise ConfigError(f"unknown key '{dotted}' {where} ({hint})")


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _hints(cls).items():
        keys.append(prefix + name)
        if _section_type(tp) is not None:
            keys += _valid_keys(_section_type(tp), f"{prefix}{name}.")
    return keys


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Annotations of the dataclass fields, resolved even under ``from __future__ import annotations``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _non_none_args(tp: Any) -> tuple:
    is_union = typing.get_origin(tp) in (Union, types.UnionType)
    return tuple(a for a in typing.get_args(tp) if a is not type(None)) if is_union else (tp,)


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _section_type(tp: Any) -> type | None:
    """The dataclass behind a field typed ``Section`` or ``Section | None``, else None."""
    arms = _non_none_args(tp)
    if len(arms) == 1 and isinstance(arms[0], type) and dataclasses.is_dataclass(arms[0]):
        return arms[0]
    return None


def _dict_value_type(tp: Any) -> Any:
    arms = _non_none_args(tp)
    if len(arms) == 1 and typing.get_origin(arms[0]) is dict:
        return (typing.get_args(arms[0]) or (Any, Any))[1]
    return None


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else _describe(a) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    return getattr(tp, "__name__", str(tp))


def _kind(value: Any) -> str:
    return "null" if value is None else "mapping" if isinstance(value, Mapping) else type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return "null" if value is None else f"{_kind(value)} {text if len(text) <= 60 else text[:57] + '...'}"
