"""Facts about a quantized ONNX graph: which weights stayed in float, the MatMulNBits settings, the head and the
word-embedding table a quantizer should leave alone or target.

Every function reads an ``onnx.GraphProto`` (loaded without its external data: only names, shapes and types
are needed) and answers from the nodes and initializers themselves, so a manifest records what the file
holds, not what a tool was asked to do.
"""

from __future__ import annotations

from typing import Any

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}
# Ops whose float inputs are quantization scales, not weights kept in float.
QUANTIZED_OPS = frozenset(
    {
        "MatMulNBits",
        "GatherBlockQuantized",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "DequantizeLinear",
        "QuantizeLinear",
    }
)


def constant_weight_nodes(graph: Any, op_types: tuple[str, ...]) -> list[str]:
    """Names of the ``op_types`` nodes whose second input (the weight) is a constant, in graph order."""
    constants = {tensor.name for tensor in graph.initializer}
    return [
        str(node.name)
        for node in graph.node
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in constants
    ]


def head_projection(graph: Any) -> str | None:
    """The task head's final projection: the last constant-weight ``MatMul`` or ``Gemm`` of the graph."""
    nodes = constant_weight_nodes(graph, ("MatMul", "Gemm"))
    return nodes[-1] if nodes else None


def word_embedding(graph: Any) -> tuple[str, float] | None:
    """The ``Gather`` over the word-embedding table and the table's share of all float weights.

    The word embeddings are the float table the graph input ``input_ids`` indexes; failing that, the largest
    float table any ``Gather`` reads. ``None`` when no ``Gather`` reads a float table.
    """
    tables = {tensor.name: tensor for tensor in graph.initializer if tensor.data_type in FLOAT_TYPES}
    total = sum(_elements(tensor) for tensor in tables.values())
    gathers = [
        (node, tables[node.input[0]])
        for node in graph.node
        if node.op_type == "Gather" and node.input[0] in tables and len(tables[node.input[0]].dims) == 2
    ]
    if not gathers or not total:
        return None
    by_ids = [(node, table) for node, table in gathers if node.input[1] == "input_ids"]
    node, table = max(by_ids or gathers, key=lambda pair: _elements(pair[1]))
    return str(node.name), _elements(table) / total


def _elements(tensor: Any) -> int:
    count = 1
    for dim in tensor.dims:
        count *= int(dim)
    return count


def nbits_attributes(graph: Any) -> dict[str, Any]:
    """Bits, block sizes, accuracy levels and symmetry of the ``MatMulNBits`` nodes of a graph, read from them."""
    nodes = [node for node in graph.node if node.op_type == "MatMulNBits"]
    values: dict[str, set[int]] = {"bits": set(), "block_size": set(), "accuracy_level": set()}
    for node in nodes:
        for attribute in node.attribute:
            if attribute.name in values:
                values[attribute.name].add(int(attribute.i))
    # A zero-point input (the fourth) makes a node asymmetric.
    symmetric = all(len(node.input) < 4 or not node.input[3] for node in nodes)
    facts: dict[str, Any] = {name: _one_or_all(found) for name, found in values.items() if found}
    facts["symmetric"] = symmetric if nodes else None
    return facts


def _one_or_all(values: set[int]) -> int | list[int]:
    return next(iter(values)) if len(values) == 1 else sorted(values)


def matmul_counts(ops: dict[str, int]) -> dict[str, int]:
    """Float and quantized matrix-multiply nodes in an op count."""
    names = ("MatMul", "Gemm", "MatMulNBits", "MatMulInteger", "GatherBlockQuantized")
    return {name: ops[name] for name in names if ops.get(name)}


def kept_precision(graph: Any) -> tuple[str, ...]:
    """What a quantized graph (``onnx.GraphProto``) still holds in floating point, one line per kind of weight.

    Each float initializer of two or more dimensions is named with the op that reads it (an embedding table
    read by ``Gather``, a ``MatMul``/``Gemm`` weight left unquantized, rotary caches); normalisation weights
    and the remaining one-dimensional float tensors (biases, quantization scales) are counted.
    """
    tensors = {tensor.name: tensor for tensor in graph.initializer if tensor.data_type in FLOAT_TYPES}
    lines: list[str] = []
    seen: set[str] = set()
    norms: dict[str, set[str]] = {}
    norm_types: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            tensor = tensors.get(name)
            if tensor is None or name in seen or node.op_type in QUANTIZED_OPS:
                continue
            dtype = FLOAT_TYPES[tensor.data_type]
            if "Norm" in node.op_type:
                seen.add(name)
                norms.setdefault(node.op_type, set()).add(str(node.name))
                norm_types[node.op_type] = dtype
            elif len(tensor.dims) >= 2:
                seen.add(name)
                shape = "x".join(str(dim) for dim in tensor.dims)
                lines.append(f"{node.op_type} {node.name}: {name} [{shape}] {dtype}")
    for op_type, nodes in sorted(norms.items()):
        lines.append(f"normalisation: {len(nodes)} {op_type} nodes, weights {norm_types[op_type]}")
    rest = [tensor for name, tensor in tensors.items() if name not in seen and _elements(tensor) > 1]
    if rest:
        lines.append(f"{len(rest)} other float tensors (biases, quantization scales, constants)")
    return tuple(lines)
