"""What each Linear receives on given states: forward pre-hooks on modules, an fx Interpreter for graph forms.

A Linear written as an op (``aten.linear``, ``F.linear``, ``x @ W``) has no module to hook, so
the model is run node by node (:class:`torch.fx.Interpreter`) and the op's input is read there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx
from torch import nn

from prune.groups import Groups
from prune.ops import role

Seen = Callable[[str, torch.Tensor], None]


def _x_of(node: fx.Node, args: tuple) -> torch.Tensor:
    return args[1] if role(node) == "addmm" else args[0]


def linear_inputs(model: nn.Module, groups: Groups, names: list[str], states, seen: Seen) -> None:
    """Run ``model`` on ``states`` once and call ``seen(name, x)`` with the input of every Linear in ``names``."""
    hooked = [n for n in names if not groups.modules[n].weight]
    by_node = {groups.modules[n].node: n for n in names if groups.modules[n].weight}
    handles = [
        model.get_submodule(n).register_forward_pre_hook(lambda mod, args, n=n: seen(n, args[0])) for n in hooked
    ]
    inputs = states if isinstance(states, tuple) else (states,)
    try:
        with torch.no_grad():
            if not by_node:
                model(*inputs)
                return
            gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)

            class Reader(fx.Interpreter):
                def run_node(self, n: fx.Node):
                    if n.name in by_node:
                        args, _ = self.fetch_args_kwargs_from_env(n)
                        seen(by_node[n.name], _x_of(n, args))
                    return super().run_node(n)

            Reader(gm).run(*inputs)
    finally:
        for h in handles:
            h.remove()
