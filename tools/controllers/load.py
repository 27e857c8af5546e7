"""Load any controller file the tool reads: the native format or one trained elsewhere."""

from __future__ import annotations

from pathlib import Path

from tools.controllers.formats import detect_format, load_foreign
from tools.controllers.native import Controller, default_controller_path, load_native, save_controller
from tools.controllers.source import ControllerSource
from tools.errors import ControllerError


def load_controller(path: str | Path | None = None, format: str | None = None, env: str | None = None,
                    factory: str | None = None, clip_actions: bool = False) -> Controller:
    """Load a controller file, native or foreign (tools.controllers.formats); problems raise ControllerError naming the file."""
    path = default_controller_path() if path is None else Path(path)
    if not path.exists():
        raise ControllerError(f"{path}: no such file")
    if path.is_dir():
        raise ControllerError(f"{path}: is a directory, expected a controller file")
    format = format or detect_format(path)
    if format != "controller":
        return load_foreign(path, format, env, factory, clip_actions)
    controller = load_native(path)
    if env is not None and env != controller.spec.env_id:
        raise ControllerError(f"{path}: a controller for {controller.spec.env_id}, not --env {env}; drop --env or pass the matching controller")
    return controller


def load_source(source: ControllerSource) -> Controller:
    """The controller ``source`` names."""
    return load_controller(source.path, source.format, source.env, source.factory, source.clip_actions)


def is_foreign(source: ControllerSource) -> bool:
    """Whether ``source`` names a file in a format other than the native controller file."""
    return source.path is not None and (source.format or detect_format(Path(source.path))) != "controller"


def native_copy(source: ControllerSource, path: Path) -> Path | None:
    """For a foreign controller file: write its canonical MLP as a native controller file at path (else None)."""
    if not is_foreign(source):
        return None
    controller = load_source(source)
    save_controller(path, controller.module, controller.spec, controller.architecture)
    return path
