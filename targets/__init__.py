"""Named deployment targets: TVM target dicts, cross toolchains and runners (see README.md)."""

from targets.errors import TargetError
from targets.registry import Target, all_targets, get_target, make_target, native_target, parse_target_list
from targets.runners import NativeRunner, QemuRunner, Runner, Session, SshRunner, runner_for

__all__ = [
    "TargetError", "Target", "all_targets", "get_target", "make_target", "native_target", "parse_target_list",
    "Runner", "Session", "NativeRunner", "QemuRunner", "SshRunner", "runner_for",
]
