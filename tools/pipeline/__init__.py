"""tools/pipeline/: one library function per stage, typed arguments in, a dataclass out.

``evaluate_controller`` (closed-loop return), ``prune_controller`` (prune to a budget, optionally written
to a file), ``export_controller`` (a verified bundle), ``run_hil`` (the plant on the host, the controller
on the device). The command line (tools/cli/) parses flags and calls one of these.
"""
