"""Load any controller file the tool reads: the native format or one trained elsewhere."""

from __future__ import annotations

from pathlib import Path

from tools.controllers.formats import detect_format, load_foreign, spec_from_env
from tools.controllers.native import Controller, brief, default_controller_path, load_native, save_controller
from tools.controllers.source import FORMATS, ControllerSource
from tools.errors import ControllerError


def load_controller(path: str | Path | None = None, format: str | None = None, env: str | None = None,
                    factory: str | None = None, clip_actions: bool = False) -> Controller:
    """Load a controller file, native or foreign (tools.controllers.formats); problems raise ControllerError naming the file.

    Whatever the format, the result has finite weights and fits its env (observation and action sizes).
    """
    path = default_controller_path() if path is None else Path(path)
    if not path.exists():
        raise ControllerError(f"{path}: no such file")
    if path.is_dir():
        raise ControllerError(f"{path}: is a directory, expected a controller file")
    if not path.is_file():
        raise ControllerError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ControllerError(f"{path}: empty file, not a controller")
    if format is not None and format not in FORMATS:
        raise ControllerError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if factory is not None:  # --factory says what the file is: a state dict for the module the factory builds
        if format not in (None, "state-dict"):
            raise ControllerError(f"--factory applies to --format state-dict, not --format {format}")
        format = "state-dict"
    try:
        format = format or detect_format(path)
        if format != "controller":
            return load_foreign(path, format, env, factory, clip_actions)
        controller = load_native(path)
    except ControllerError:
        raise
    except Exception as e:  # noqa: BLE001 - the readers of six formats (torch, onnx, zip, SB3) raise anything on a bad file
        raise ControllerError(f"{path}: cannot be read as {format or 'a controller'} ({type(e).__name__}: {brief(e)})") from e
    if env is not None and env != controller.spec.env_id:
        raise ControllerError(f"{path}: a controller for {controller.spec.env_id}, not --env {env}; drop --env or pass the matching controller")
    check_fits_env(controller)
    return controller


def check_fits_env(controller: Controller) -> None:
    """Refuse a native controller whose observation/action sizes are not its env's (it could not run there)."""
    spec, where = controller.spec, controller.path
    try:
        env = spec_from_env(spec.env_id)
    except ControllerError as e:
        raise ControllerError(f"{where}: a controller for {spec.env_id}, an env this machine cannot make "
                              f"({str(e).partition(': ')[2]})") from e
    if (spec.obs_dim, spec.act_dim) != (env.obs_dim, env.act_dim):
        raise ControllerError(f"{where}: the controller takes {spec.obs_dim} observations and gives {spec.act_dim} actions, "
                              f"env {spec.env_id} gives {env.obs_dim} and takes {env.act_dim}; it cannot run on that env")


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
