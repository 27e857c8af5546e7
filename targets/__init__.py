"""Named deployment targets: TVM target dicts, cross toolchains and runners (see README.md)."""

from targets.cache import CACHE_ENV, cache_root
from targets.errors import TargetError
from targets.host import host_arch, host_cpu_flags
from targets.registry import (
    USER_DIR_ENV,
    Target,
    all_targets,
    get_target,
    make_target,
    native_target,
    parse_target_list,
    user_target_dirs,
)
from targets.runners import NativeRunner, QemuRunner, Runner, Session, SshRunner, parse_ssh_url, runner_for

__all__ = [
    "CACHE_ENV",
    "USER_DIR_ENV",
    "cache_root",
    "TargetError",
    "Target",
    "host_arch",
    "host_cpu_flags",
    "user_target_dirs",
    "all_targets",
    "get_target",
    "make_target",
    "native_target",
    "parse_target_list",
    "Runner",
    "Session",
    "NativeRunner",
    "QemuRunner",
    "SshRunner",
    "parse_ssh_url",
    "runner_for",
]
