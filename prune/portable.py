"""A candidate another process can receive: the model as it is, or a torch.export module as a plain GraphModule.

An ``objective.batch`` may evaluate candidates in other processes (e.g. Ray workers), so what it is
handed must survive ``pickle`` (and ``cloudpickle``). An ``nn.Module`` and a traced or onnx2torch
``torch.fx.GraphModule`` do as they are (a GraphModule pickles as its regenerated code and its
submodules). A ``torch.export(...).module()`` does not: its class is made inside torch, it carries a
forward pre-hook that is a local lambda, and its graph calls a ``_guards_fn`` submodule holding a
local function (the check of the input shapes the program was exported for). :func:`portable`
hands such a module over as a plain GraphModule of the same graph (same code generator, so the
same inputs and outputs) without the input-shape guard, which computes nothing the output depends on.
"""

from __future__ import annotations

import copy

import torch.fx as fx
from torch import nn

GUARDS = "_guards_fn"  # the submodule a torch.export module calls to check its inputs (it computes no output)


def portable(model: nn.Module) -> nn.Module:
    """``model`` itself, or for a torch.export module a plain GraphModule of its graph that pickles (see module doc)."""
    if not isinstance(model, fx.GraphModule) or type(model).__mro__[1] is fx.GraphModule:
        return model  # an nn.Module or a plain GraphModule (GraphModule instances are of a per-instance subclass)
    graph = fx.Graph()
    graph._codegen = copy.deepcopy(model.graph._codegen)  # the pytree in/out handling of an exported program
    out = graph.graph_copy(model.graph, {})
    graph.output(out)
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == GUARDS and not node.users:
            graph.erase_node(node)
    plain = fx.GraphModule(model, graph)  # copies only the submodules and tensors the graph still uses
    plain.train(model.training)
    return plain
