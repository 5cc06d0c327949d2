"""Facts every export records in its manifest: the versions of the tools involved and the graph's op counts."""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from collections.abc import Iterable
from typing import Any


def tool_versions(tools: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution in ``tools``, ``absent`` for those not installed."""
    versions: dict[str, str] = {}
    for name in tools:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def op_counts(graph: Any) -> dict[str, int]:
    """Nodes per op type in an ONNX graph (``onnx.GraphProto``), most frequent first."""
    counts = Counter(str(node.op_type) for node in graph.node)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
