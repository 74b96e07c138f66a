"""What a TF session's fetch of a signature's output tensors finds in the SavedModel's graph.

tf.saved_model.load gives no function for a signature whose outputs are not tensors (``__saved_model_init_op``,
whose output names the ``NoOp`` op that runs the model's initializers). TF Serving's Predict runs it all the same:
its session fetches the output tensor (``NoOp``, read as ``NoOp:0``), and Graph::IsValidOutputTensor refuses an
output its node does not have (tensorflow/core/graph/graph.cc).
"""
from __future__ import annotations

from serving.status import ServingError


def tensor_name(name: str) -> tuple[str, int]:
    """(node name, output index) of a tensor name, as TensorFlow's ParseTensorName reads it: ``node:1`` is output 1
    of ``node``, a name without a ``:<digits>`` end output 0."""
    node, colon, index = name.rpartition(":")
    if colon and index.isdigit():
        return node, int(index)
    return name, 0


def output_count(node, graph_def) -> int | None:
    """How many outputs ``node`` (a NodeDef of ``graph_def``) has: its function's outputs for a call of one of the
    graph's functions, else its op's output args (a list arg counted by its number or type-list attr, the OpDef's
    default when the node leaves it out); None for an op TensorFlow here does not know."""
    from tensorflow.python.framework import op_def_registry

    function = next((f for f in graph_def.library.function if f.signature.name == node.op), None)
    if function is not None:
        return len(function.signature.output_arg)
    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return None
    defaults = {attr.name: attr.default_value for attr in op_def.attr}

    def attr(name):
        return node.attr[name] if name in node.attr else defaults.get(name)

    count = 0
    for arg in op_def.output_arg:
        if arg.number_attr:
            count += attr(arg.number_attr).i
        elif arg.type_list_attr:
            count += len(attr(arg.type_list_attr).list.type)
        else:
            count += 1
    return count


def missing_output(signature_def, graph_def, aliases=None) -> ServingError | None:
    """TF's OUT_OF_RANGE error for a fetch of the outputs ``aliases`` (None: every output) of ``signature_def`` that
    names an output its node does not have (``Node 'NoOp' (type: 'NoOp', num of outputs: 0) does not have output
    0``); None if each names an output of a node of ``graph_def`` (or a node not found)."""
    nodes = {node.name: node for node in graph_def.node}
    names = sorted(info.name for alias, info in signature_def.outputs.items() if aliases is None or alias in aliases)
    for name in names:
        node_name, index = tensor_name(name)
        node = nodes.get(node_name)
        count = None if node is None else output_count(node, graph_def)
        if count is not None and not 0 <= index < count:
            return ServingError("OUT_OF_RANGE", f"Node '{node.name}' (type: '{node.op}', num of outputs: {count}) "
                                                f"does not have output {index}")
    return None
