"""A run as one reviewable TOML file: ``prune-and-export run config.toml``.

Top-level keys are the flags of ``run`` (``controller = "policy.zip"``, ``env = "Pendulum-v1"``,
``episodes = 20``; dashes or underscores), and the table ``[bench]`` holds flags of ``bench`` for the
pipeline's last step (``targets = ["x86_64", "cortex-a72"]``, ``methods = "gd,uniform-l1"``,
``keep = [0.5, 0.25]``). Flags given on the command line override the file. Values go through the
same type and choice checks as the flags; an unknown key is an error naming the key and the file.
Relative paths in the file are relative to the file's folder, so a config travels with its controller.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tools.errors import ToolsError

SKIP = {"help", "json", "config"}  # not settable from a config file
BENCH_OWNED = {
    "out",
    "force",
    "controller",
    "format",
    "env",
    "factory",
    "clip_actions",
    "obs_norm",
    "seed",
    "episodes",
    "quick",
    "sign",
    "public_key",
    "scenarios",
    "robust_objective",
}


@dataclass
class Resolved:
    """The values a run uses (file < flags), and what the file asked of the bench step."""

    run: dict
    bench: dict = field(default_factory=dict)


def settable(parser: argparse.ArgumentParser, skip: set[str] = SKIP) -> dict[str, argparse.Action]:
    """dest -> action of the options a config file may set."""
    return {a.dest: a for a in parser._actions if a.dest not in skip and a.option_strings}


def defer_defaults(parser: argparse.ArgumentParser) -> dict:
    """Record each option's default and hide it, so that after parsing only flags actually given are set."""
    defaults = {}
    for dest, action in settable(parser).items():
        defaults[dest] = action.default
        action.default = argparse.SUPPRESS
    return defaults


def _convert(key: str, value, action: argparse.Action, where: Path, base: Path):
    """A TOML value checked and converted the way argparse would convert the flag's text."""
    what = f"{where}: key {key!r}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ToolsError(f"{what}: expected true or false, got {value!r}")
        return value
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    items = value if isinstance(value, list) else [value]
    if not many and isinstance(value, list):
        raise ToolsError(f"{what}: expected one value, got a list")
    out = []
    for item in items:
        if isinstance(item, (dict, list)):
            raise ToolsError(f"{what}: expected a plain value, got {item!r}")
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            v = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise ToolsError(f"{what}: {e}") from e
        if isinstance(v, Path) and not v.is_absolute():
            v = base / v
        if action.choices is not None and v not in action.choices:
            raise ToolsError(f"{what}: {v!r} is not one of {', '.join(map(str, action.choices))}")
        out.append(v)
    return out if many else out[0]


def _section(table: dict, actions: dict[str, argparse.Action], where: Path, name: str) -> dict:
    values = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(d.replace("_", "-") for d in actions))
            raise ToolsError(f"{where}: unknown key {key!r}{f' in [{name}]' if name else ''} (known: {known})")
        values[dest] = _convert(key, value, actions[dest], where, where.parent)
    return values


def read_config(path: Path, run_parser: argparse.ArgumentParser, bench_parser: argparse.ArgumentParser) -> Resolved:
    """Parse and check a run config file against the run and bench flags."""
    path = Path(path)
    if path.is_dir():
        raise ToolsError(f"{path}: is a directory, expected a TOML config file")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ToolsError(f"{path}: no such config file") from e
    except UnicodeDecodeError as e:
        raise ToolsError(f"{path}: not a text file, expected a TOML config file") from e
    except OSError as e:
        raise ToolsError(f"{path}: cannot read it ({e.strerror or e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ToolsError(f"{path}: not valid TOML ({e})") from e
    bench_table = data.pop("bench", {})
    if not isinstance(bench_table, dict):
        raise ToolsError(f"{path}: 'bench' must be a table ([bench])")
    run = _section(data, settable(run_parser), path, "")
    bench = _section(bench_table, settable(bench_parser, SKIP | BENCH_OWNED), path, "bench")
    return Resolved(run, bench)


def resolve(given: dict, defaults: dict, config: Resolved | None) -> Resolved:
    """defaults < config file < flags on the command line."""
    run = {**defaults, **(config.run if config else {}), **given}
    return Resolved(run, dict(config.bench) if config else {})


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Path):  # absolute: the resolved file lives in the output folder, not beside the original
        v = v.resolve()
    text = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(resolved: Resolved) -> str:
    """The resolved config as TOML that ``run`` reads back (unset values are left out)."""
    lines = ["# resolved by prune-and-export run: defaults < config file < command-line flags"]
    lines += [f"{k.replace('_', '-')} = {_toml_value(v)}" for k, v in resolved.run.items() if v is not None]
    if resolved.bench:
        lines += ["", "[bench]"] + [
            f"{k.replace('_', '-')} = {_toml_value(v)}" for k, v in resolved.bench.items() if v is not None
        ]
    return "\n".join(lines) + "\n"


def bench_namespace(values: dict, bench_parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed flags of ``bench`` (its defaults, then ``values``, already checked and converted) without a command line."""
    args = argparse.Namespace(**{dest: action.default for dest, action in settable(bench_parser, {"help"}).items()})
    for dest, value in values.items():
        setattr(args, dest, value)
    return args
