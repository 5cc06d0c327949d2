"""The tensors of a model on disk, read from file headers only: no model is loaded, no weight is read.

- a transformers folder: each ``*.safetensors`` file's JSON header (8-byte length, then JSON) and ``config.json``;
- a GGUF file: its header, key-value metadata and tensor table, parsed here (``gguf.GGUFReader`` would parse every
  token of the vocabulary into Python objects: 12 s for Gemma 3's 262k tokens, against a tenth of a second here);
- an ONNX folder: ``onnx.load(..., load_external_data=False)``: initializers (name, dims, data type) and the nodes
  that consume them, which say what an initializer with a generated name (``onnx::MatMul_896``) is.

Example::

    inventory = read_inventory(Path("model.gguf"), "gguf")
    print(inventory.already_quantized, sum(t.parameters for t in inventory.tensors))
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, first_line, require_module

# GGML tensor types: id -> (name, elements per block, bytes per block), as in gguf-py 0.19 (gguf.constants).
GGML_TYPES: Mapping[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip
# general.file_type values that are not quantized (all F32, mostly F16, mostly BF16).
GGUF_FLOAT_FILE_TYPES: Mapping[int, str] = {0: "F32", 1: "F16", 32: "BF16"}
GGUF_FILE_TYPES: Mapping[int, str] = {
    **GGUF_FLOAT_FILE_TYPES, 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip
_GGUF_GUESSED = 1024  # added to general.file_type when the quantizer guessed it
FLOAT_TYPES = frozenset({"F64", "F32", "F16", "BF16", "DOUBLE", "FLOAT", "FLOAT16", "BFLOAT16"})
# GGUF metadata value types: id -> struct format of one scalar (8: string, 9: array).
_GGUF_SCALARS: Mapping[int, str] = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"
}  # fmt: skip
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_LARGEST_HEADER = 100_000_000
# ONNX ops whose second input is a weight matrix, whose first input is an embedding table, or which normalise.
MATMUL_OPS = frozenset({"MatMul", "Gemm", "MatMulNBits", "MatMulInteger", "FusedMatMul", "MatMulFpQ4"})
GATHER_OPS = frozenset({"Gather", "GatherBlockQuantized"})
NORM_OPS = frozenset(
    {
        "LayerNormalization",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "RMSNormalization",
        "BatchNormalization",
        "GroupNormalization",
        "InstanceNormalization",
    }
)
ONNX_QUANTIZED_OPS: Mapping[str, str] = {
    "MatMulNBits": "MatMulNBits",
    "MatMulInteger": "int8 (MatMulInteger, dynamic)",
    "DynamicQuantizeLinear": "int8 (MatMulInteger, dynamic)",
    "QLinearMatMul": "int8 (QLinearMatMul)",
    "DequantizeLinear": "QDQ (DequantizeLinear)",
    "GatherBlockQuantized": "GatherBlockQuantized",
}


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor, as its file header describes it.

    Attributes:
        name: the name used to classify it: the tensor's own name, or for an ONNX initializer with a generated
            name the path of the node that consumes it (``model.qa_outputs.weight`` for ``onnx::MatMul_1004``).
        stored_name: the name in the file.
        shape: the shape, rows first (GGUF's column-first dimensions are reversed).
        dtype: the stored type (``F32``, ``Q4_1``, ``FLOAT``, ``uint8``...).
        parameters: the parameters it holds (0 for buffers such as ``position_ids`` and shape constants; the
            logical ``K x N`` for a packed ``MatMulNBits`` weight).
        stored_bytes: bytes of its data in the file.
        hint: what the graph says it is (``embeddings``, ``norm``, ``linear``), for ONNX; ``None`` elsewhere.
    """

    name: str
    stored_name: str
    shape: tuple[int, ...]
    dtype: str
    parameters: int
    stored_bytes: int
    hint: str | None = None

    @property
    def row_length(self) -> int:
        """Elements per row (the last dimension); 1 for a scalar."""
        return self.shape[-1] if self.shape else 1


@dataclass(frozen=True)
class WeightInventory:
    """Every tensor of a model on disk, and what its files say about it.

    Attributes:
        tensors: the tensors, in file order.
        files: the weight files read (safetensors, the GGUF file, ONNX graphs and their external data).
        size_bytes: their total size on disk, in bytes (measured).
        already_quantized: the quantization the weights already carry (``Q4_1``, ``MatMulNBits int4``,
            ``bitsandbytes 4-bit``), or ``None`` for float weights.
        head_tied: ``True`` when the config or file says the output head reuses the embedding table, ``False``
            when it says it does not, ``None`` when it says nothing.
        architecture: the architecture the files name (``llama``, ``BertModel``), or ``None``.
    """

    tensors: tuple[TensorInfo, ...]
    files: tuple[Path, ...]
    size_bytes: int
    already_quantized: str | None
    head_tied: bool | None
    architecture: str | None


def read_inventory(source: Path, source_format: str) -> WeightInventory:
    """The tensors of the model at ``source`` (``transformers`` folder, ``gguf`` file or ``onnx`` folder).

    Raises:
        UserError: the source is missing, of another format, or its headers cannot be read.
        MissingDependencyError: an ONNX source without the ``onnx`` package.
    """
    if not source.exists():
        raise UserError(f"model path {source} does not exist")
    if source_format == "gguf":
        return read_gguf(source)
    if source_format == "transformers":
        return read_transformers(source)
    if source_format == "onnx":
        return read_onnx(source)
    raise UserError(
        f"cannot read the tensors of a {source_format} source; pass a GGUF file, ONNX or transformers folder"
    )


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor name -> dtype, shape, data_offsets; ``__metadata__``).

    Raises:
        UserError: the file is not a safetensors file.
    """
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _LARGEST_HEADER:
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({first_line(exc)})") from exc
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a safetensors file: its header is not a JSON object")
    return header


def read_transformers(folder: Path) -> WeightInventory:
    """A transformers folder: the safetensors headers and ``config.json`` (tied embeddings, quantization)."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a transformers folder; pass the folder that holds config.json")
    files = tuple(sorted(folder.glob("*.safetensors")))
    if not files:
        raise UserError(
            f"{folder} holds no *.safetensors weights: the check reads safetensors headers only (pickled *.bin "
            "files are never loaded); convert the weights to safetensors first"
        )
    tensors: list[TensorInfo] = []
    for path in files:
        for name, entry in read_safetensors_header(path).items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            dtype = str(entry.get("dtype", "?"))
            shape = tuple(int(d) for d in entry.get("shape", ()))
            begin, end = entry.get("data_offsets", (0, 0))
            elements = math.prod(shape)
            weight = (
                dtype in FLOAT_TYPES
                or dtype.startswith(("F8", "F6", "F4"))
                or (dtype in ("I8", "U8") and len(shape) >= 2)
            )
            tensors.append(TensorInfo(name, name, shape, dtype, elements if weight else 0, int(end) - int(begin)))
    config = _read_json(folder / "config.json")
    tied = config.get("tie_word_embeddings")
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else config.get("model_type")
    return WeightInventory(
        tensors=tuple(tensors),
        files=files,
        size_bytes=sum(path.stat().st_size for path in files),
        already_quantized=_transformers_quantization(config.get("quantization_config")),
        head_tied=tied if isinstance(tied, bool) else None,
        architecture=str(architecture) if architecture else None,
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {first_line(exc)}") from exc
    return data if isinstance(data, dict) else {}


def _transformers_quantization(config: object) -> str | None:
    if not isinstance(config, dict):
        return None
    method = str(config.get("quant_method", "quantized"))
    if config.get("load_in_4bit"):
        return f"{method} 4-bit"
    if config.get("load_in_8bit"):
        return f"{method} 8-bit"
    for key in ("bits", "weights"):
        if config.get(key) is not None:
            return f"{method} {config[key]}" + ("-bit" if key == "bits" else "")
    return method


def read_gguf(path: Path) -> WeightInventory:
    """A GGUF file (version 2 or 3): tensor names, shapes and types, ``general.architecture`` and ``file_type``.

    Raises:
        UserError: not a GGUF file, an unsupported version, or a truncated header.
    """
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            metadata, raw_tensors = _parse_gguf(data)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable GGUF file ({first_line(exc)})") from exc
    tensors = []
    for name, dims, type_id in raw_tensors:
        type_name, block, block_bytes = GGML_TYPES.get(type_id, (f"type {type_id}", 1, 0))
        shape = tuple(reversed(dims))
        elements = math.prod(shape)
        integer = type_name in ("I8", "I16", "I32", "I64")
        tensors.append(
            TensorInfo(name, name, shape, type_name, 0 if integer else elements, elements // block * block_bytes)
        )
    names = {tensor.name for tensor in tensors}
    architecture = metadata.get("general.architecture")
    return WeightInventory(
        tensors=tuple(tensors),
        files=(path,),
        size_bytes=path.stat().st_size,
        already_quantized=_gguf_quantization(metadata.get("general.file_type"), tensors),
        head_tied="token_embd.weight" in names and "output.weight" not in names,
        architecture=str(architecture) if architecture is not None else None,
    )


def _gguf_quantization(file_type: object, tensors: Iterable[TensorInfo]) -> str | None:
    if isinstance(file_type, int):
        file_type &= ~_GGUF_GUESSED
        if file_type in GGUF_FLOAT_FILE_TYPES:
            return None
        if file_type in GGUF_FILE_TYPES:
            return GGUF_FILE_TYPES[file_type]
    kinds = Counter(t.dtype for t in tensors if len(t.shape) >= 2 and t.dtype not in FLOAT_TYPES and t.parameters)
    return kinds.most_common(1)[0][0] if kinds else None


def _parse_gguf(data: mmap.mmap) -> tuple[dict[str, object], list[tuple[str, tuple[int, ...], int]]]:
    """Metadata scalars and strings (arrays are skipped), and each tensor's name, GGML dimensions and type."""
    if data[:4] != b"GGUF":
        raise ValueError("no GGUF magic number")
    version, tensor_count, kv_count = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} (versions 2 and 3 are read)")
    offset = 24

    def text(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 8 + length
        if end > len(data):
            raise ValueError("a string runs past the end of the file")
        return data[at + 8 : end].decode("utf-8"), end

    def skip(value_type: int, at: int, count: int) -> int:
        if value_type in _GGUF_SCALARS:
            return at + count * struct.calcsize("<" + _GGUF_SCALARS[value_type])
        if value_type == _GGUF_STRING:
            for _ in range(count):
                at += 8 + struct.unpack_from("<Q", data, at)[0]
            return at
        if value_type == _GGUF_ARRAY:
            for _ in range(count):
                inner, inner_count = struct.unpack_from("<IQ", data, at)
                at = skip(inner, at + 12, inner_count)
            return at
        raise ValueError(f"unknown metadata value type {value_type}")

    metadata: dict[str, object] = {}
    for _ in range(kv_count):
        key, offset = text(offset)
        (value_type,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if value_type in _GGUF_SCALARS:
            fmt = "<" + _GGUF_SCALARS[value_type]
            (metadata[key],) = struct.unpack_from(fmt, data, offset)
            offset += struct.calcsize(fmt)
        elif value_type == _GGUF_STRING:
            metadata[key], offset = text(offset)
        else:
            offset = skip(value_type, offset, 1)
    tensors = []
    for _ in range(tensor_count):
        name, offset = text(offset)
        (n_dims,) = struct.unpack_from("<I", data, offset)
        dims = struct.unpack_from(f"<{n_dims}Q", data, offset + 4)
        type_id, _data_offset = struct.unpack_from("<IQ", data, offset + 4 + 8 * n_dims)
        offset += 4 + 8 * n_dims + 12
        tensors.append((name, tuple(int(d) for d in dims), int(type_id)))
    return metadata, tensors


def read_onnx(folder: Path) -> WeightInventory:
    """An ONNX folder (or one ``.onnx`` file): initializers and the nodes that use them, without external data.

    Raises:
        UserError: no ``.onnx`` file, or one that cannot be parsed.
        MissingDependencyError: the ``onnx`` package is not installed.
    """
    onnx = require_module("onnx", "reading an ONNX model's initializers", extra_install_hint("onnx"))
    graphs = [folder] if folder.is_file() else sorted(folder.glob("*.onnx"))
    if not graphs:
        raise UserError(f"{folder} holds no .onnx file; pass an ONNX folder made by 'slm-eval convert'")
    tensors: list[TensorInfo] = []
    files: set[Path] = set()
    quantized: set[str] = set()
    for graph_path in graphs:
        try:
            model = onnx.load(str(graph_path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and OSError: a file that is not an ONNX model
            raise UserError(f"cannot read {graph_path} as an ONNX model ({first_line(exc)})") from exc
        files.add(graph_path)
        uses: dict[str, list[tuple[Any, int]]] = {}
        for node in model.graph.node:
            for index, name in enumerate(node.input):
                uses.setdefault(name, []).append((node, index))
            if node.op_type in ONNX_QUANTIZED_OPS:
                quantized.add(_onnx_quantization(node))
        for initializer in model.graph.initializer:
            tensors.append(_onnx_tensor(onnx, initializer, uses.get(initializer.name, [])))
            for entry in initializer.external_data:
                if entry.key == "location" and (graph_path.parent / entry.value).is_file():
                    files.add(graph_path.parent / entry.value)
    ordered = tuple(sorted(files))
    return WeightInventory(
        tensors=tuple(tensors),
        files=ordered,
        size_bytes=sum(path.stat().st_size for path in ordered),
        already_quantized=", ".join(sorted(quantized)) or None,
        head_tied=None,
        architecture=None,
    )


_ONNX_BITS: Mapping[str, float] = {
    "FLOAT": 32, "DOUBLE": 64, "FLOAT16": 16, "BFLOAT16": 16, "INT64": 64, "UINT64": 64, "INT32": 32, "UINT32": 32,
    "INT16": 16, "UINT16": 16, "INT8": 8, "UINT8": 8, "BOOL": 8, "INT4": 4, "UINT4": 4,
}  # fmt: skip


def _onnx_quantization(node: Any) -> str:
    label = ONNX_QUANTIZED_OPS[node.op_type]
    if node.op_type == "MatMulNBits":
        bits = next((int(a.i) for a in node.attribute if a.name == "bits"), 4)
        return f"MatMulNBits int{bits}"
    return label


def _onnx_tensor(onnx: Any, initializer: Any, uses: list[tuple[Any, int]]) -> TensorInfo:
    dtype = str(onnx.TensorProto.DataType.Name(initializer.data_type))
    shape = tuple(int(d) for d in initializer.dims)
    elements = math.prod(shape)
    stored = math.ceil(elements * _ONNX_BITS.get(dtype, 8 if dtype.startswith("FLOAT8") else 32) / 8)
    hint: str | None = None
    owner = ""
    parameters = elements if dtype in FLOAT_TYPES else 0
    for node, index in uses:
        if node.op_type in GATHER_OPS and index == 0:
            hint = "embeddings"
        elif node.op_type in NORM_OPS and index >= 1:
            hint = "norm"
        elif node.op_type in MATMUL_OPS and index == 1:
            hint = "linear"
            if node.op_type == "MatMulNBits":  # packed: the logical matrix is K x N
                attributes = {a.name: int(a.i) for a in node.attribute}
                parameters = attributes.get("K", 0) * attributes.get("N", 0)
            elif node.op_type == "MatMulInteger":
                parameters = elements
        elif node.op_type == "MatMulNBits" and index >= 2:  # its scales and zero points: no parameters of their own
            hint, parameters = "linear", 0
        if hint is not None:
            owner = node.name
            break
    if initializer.name.startswith(("/", "onnx::")):  # a name the exporter made up
        if hint is None:
            return TensorInfo(initializer.name, initializer.name, shape, dtype, 0, stored)  # a shape, an axis, a scalar
        if owner:
            return TensorInfo(_node_path(owner), initializer.name, shape, dtype, parameters, stored, hint)
    return TensorInfo(initializer.name, initializer.name, shape, dtype, parameters, stored, hint)


def _node_path(node_name: str) -> str:
    """``/model/qa_outputs/MatMul`` -> ``model.qa_outputs.weight``: the module a generated initializer belongs to."""
    parts = [part for part in node_name.split("/") if part]
    return ".".join([*parts[:-1], "weight"]) if len(parts) > 1 else f"{node_name}.weight"
