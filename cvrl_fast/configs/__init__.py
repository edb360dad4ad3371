"""Plain-Python configs: each file here defines `get_config() -> Config`.

`Config` is a nested attribute dict with a fixed key set: `override("train.global_batch_size", "64")`
parses the string by the type of the current value and rejects unknown keys, so a typo never passes
silently (cvrl.md §10, pitfall 5). `load_config(path, ["key=value", ...])` loads a config file (or a name
of a file in this package: "tiny_cpu", "k400_pretrain", "k600_pretrain", or a run's config.json) and
applies overrides.
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


class ConfigKeyError(KeyError):
    """An override names a key the config does not have (a typo is an error, never ignored)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class Config:
    """Nested, attribute-access config with a frozen key set."""

    def __init__(self, values: dict | None = None, **kwargs):
        object.__setattr__(self, "_values", {})
        for k, v in {**(values or {}), **kwargs}.items():
            self._values[k] = Config(v) if isinstance(v, dict) else v

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r} (keys: {sorted(self._values)})") from None

    def __setattr__(self, name, value):
        if name not in self._values:
            raise AttributeError(f"config has no key {name!r} (keys: {sorted(self._values)})")
        self._values[name] = Config(value) if isinstance(value, dict) else value

    def __getitem__(self, name):
        return self.__getattr__(name)

    def __contains__(self, name):
        return name in self._values

    def keys(self):
        return self._values.keys()

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self._values.items()}

    def copy(self) -> "Config":
        return Config(copy.deepcopy(self.to_dict()))

    def __repr__(self):
        return f"Config({self.to_dict()!r})"

    def __eq__(self, other):
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def flat_items(self, prefix=""):
        for k, v in self._values.items():
            if isinstance(v, Config):
                yield from v.flat_items(f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    def override(self, dotted_key: str, value):
        """Set `a.b.c` to `value`; a string is parsed to the type of the current value."""
        *parents, leaf = dotted_key.split(".")
        node = self
        for i, p in enumerate(parents):
            if p not in node._values or not isinstance(node._values[p], Config):
                raise ConfigKeyError(f"unknown config key {'.'.join(parents[:i + 1])!r} in override {dotted_key!r}")
            node = node._values[p]
        if leaf not in node._values:
            raise ConfigKeyError(f"unknown config key {dotted_key!r} (valid keys here: {sorted(node._values)})")
        current = node._values[leaf]
        if isinstance(current, Config):
            raise ConfigKeyError(f"config key {dotted_key!r} is a section; override one of {sorted(current.keys())}")
        node._values[leaf] = _parse_like(current, value, dotted_key) if isinstance(value, str) else value


def _parse_like(current, text: str, key: str):
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"config key {key!r}: {text!r} is not a boolean (true/false)")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"config key {key!r}: {text!r} is not an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"config key {key!r}: {text!r} is not a number") from None
    if isinstance(current, (tuple, list)):
        if not text.strip():
            return ()
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = tuple(s.strip() for s in text.split(","))
        return tuple(parsed) if isinstance(parsed, (tuple, list)) else (parsed,)
    if current is None:
        # Untyped default: accept a Python literal, else the raw string.
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def load_config(path_or_name: str, overrides=()) -> Config:
    """Load `get_config()` from a file path or a built-in config name, then apply `key=value` overrides."""
    path = path_or_name
    if not os.path.exists(path):
        candidate = os.path.join(_HERE, f"{path_or_name}.py")
        if os.path.exists(candidate):
            path = candidate
        else:
            raise FileNotFoundError(f"config {path_or_name!r}: no such file (built-ins: {builtin_configs()})")
    if path.endswith(".json"):  # a run's own config.json (written by the trainer), to resume it as it was
        try:
            with open(path) as f:
                cfg = Config(json.load(f))
        except ValueError as e:
            raise ValueError(f"config {path}: not valid JSON ({e})") from None
        return _apply_overrides(cfg, overrides)
    spec = importlib.util.spec_from_file_location(f"cvrl_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"config {path}: syntax error: {e}") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"config {path}: defines no get_config()")
    cfg = module.get_config()
    if not isinstance(cfg, Config):
        cfg = Config(cfg)
    return _apply_overrides(cfg, overrides)


def _apply_overrides(cfg: Config, overrides) -> Config:
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"config override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        cfg.override(key.strip(), value)
    return cfg


def builtin_configs() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(_HERE) if f.endswith(".py") and not f.startswith("_")
                  and f != "base.py")
