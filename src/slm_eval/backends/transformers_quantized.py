"""PyTorch-quantized variants on disk: plain tensors in safetensors plus a recipe, loaded without pickles.

A variant made by ``slm-eval quantize --format pytorch`` (:mod:`slm_eval.optimize.quantize_torch`) is a
transformers folder whose weights are stored already quantized::

    config.json, generation_config.json, tokenizer files   as transformers saves them
    quantized_model.safetensors                            every tensor plain (int8, uint8, float16/32)
    quantization.json                                      the recipe: method, bits, the quantized modules, ...

The weights file deliberately does not have transformers' own name, so a plain ``from_pretrained`` refuses
the folder rather than silently building a model with random weights. :func:`load_quantized` rebuilds the
model from its config without initialising any weight, puts the quantized weights in the modules the recipe
names, loads every tensor and checks that none is missing or left over. No pickle is read or written.

* ``torch-dynamic-int8``: each quantized ``nn.Linear`` is stored as ``<module>.weight_int8`` (the int8
  values PyTorch packed), ``<module>.weight_scale`` / ``<module>.weight_zero_point`` and ``<module>.bias``,
  and rebuilt as ``torch.ao.nn.quantized.dynamic.Linear`` holding exactly the same int8 weights.
* ``torchao``: torchao's own safetensors flattening of its weight tensors (``<module>._weight_qdata``,
  ``_weight_scale``, ``_weight_zero_point``, with each tensor's type and block size in the file's metadata,
  rebuilt only from torchao's allow-list of tensor classes). torchao keeps int4 values one per int8 byte; on
  disk they are packed two per byte (``_weight_qdata_int4x2``) and unpacked when loaded.
* ``bnb``: transformers' own bitsandbytes serialization (``quantization_config`` in ``config.json``,
  ``model.safetensors``); the recipe only adds what transformers does not keep (the encoder head's origin).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError, first_line, require_module
from slm_eval.logs import quiet_library_notices

RECIPE_FILE = "quantization.json"
WEIGHTS_FILE = "quantized_model.safetensors"
RECIPE_SCHEMA = 1
DYNAMIC_INT8 = "torch-dynamic-int8"
TORCHAO = "torchao"
BNB = "bnb"
LOADABLE_METHODS = (DYNAMIC_INT8, TORCHAO, BNB)
PACKED_INT4 = "_int4x2"  # suffix of a torchao int4 qdata tensor stored two values per byte


@dataclass(frozen=True)
class QuantizationRecipe:
    """What ``quantization.json`` says: how the stored weights were quantized and how to rebuild the model.

    Attributes:
        method: ``torch-dynamic-int8``, ``torchao`` or ``bnb``.
        bits: 4 or 8.
        weights: the weight type in the library's own words (``qint8``, ``int8``, ``int4``, ``nf4``).
        modules: the modules whose weights are quantized (empty for ``bnb``: transformers knows them).
        tied: weights left out of the file because they share another's tensor: ``{target: source}``.
        architecture: the transformers class the model was saved as.
        kind: ``decoder`` or ``encoder``.
        encoder_task: encoders: the task head stored with the weights (``qa``, ``ner``, ``classify``).
        head_trained: encoders: whether that head was trained, or initialised at random from ``seed``.
        seed: the seed an untrained head was initialised from.
    """

    method: str
    bits: int
    weights: str
    modules: tuple[str, ...]
    architecture: str
    kind: str
    tied: Mapping[str, str] = field(default_factory=dict)
    encoder_task: str | None = None
    head_trained: bool | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON written to ``quantization.json``."""
        data = asdict(self)
        data["modules"] = list(self.modules)
        data["tied"] = dict(self.tied)
        return {"schema_version": RECIPE_SCHEMA, **data}


def read_recipe(location: Path | None) -> QuantizationRecipe | None:
    """The recipe of a quantized variant folder, or ``None`` for anything else (a plain folder, a file).

    Raises:
        UserError: the recipe is unreadable, names an unknown method, or cannot be used on this machine.
    """
    if location is None or not location.is_dir() or not (location / RECIPE_FILE).is_file():
        return None
    path = location / RECIPE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({first_line(exc)}); quantize the model again") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a quantization recipe (a JSON object); quantize the model again")
    method = data.get("method")
    if method not in LOADABLE_METHODS:
        raise UserError(
            f"{path} names an unknown quantization method '{method}': this version loads "
            f"{', '.join(LOADABLE_METHODS)}; quantize the model again with one of them"
        )
    try:
        recipe = QuantizationRecipe(
            method=str(method),
            bits=int(data["bits"]),
            weights=str(data["weights"]),
            modules=tuple(str(name) for name in data.get("modules", [])),
            architecture=str(data["architecture"]),
            kind=str(data["kind"]),
            tied={str(k): str(v) for k, v in dict(data.get("tied") or {}).items()},
            encoder_task=None if data.get("encoder_task") is None else str(data["encoder_task"]),
            head_trained=None if data.get("head_trained") is None else bool(data["head_trained"]),
            seed=None if data.get("seed") is None else int(data["seed"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is incomplete ({first_line(exc)}); quantize the model again") from exc
    if recipe.method == BNB:
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"{location.name} was quantized with bitsandbytes, which runs only on a CUDA GPU; on this machine "
                f"use a variant made with --method {TORCHAO} or {DYNAMIC_INT8}"
            )
    return recipe


def check_task(recipe: QuantizationRecipe, task: str, label: str) -> None:
    """Refuse to load an encoder variant with another head than the one quantized with it.

    Raises:
        UserError: the variant holds another task's head.
    """
    if recipe.encoder_task is not None and recipe.encoder_task != task:
        raise UserError(
            f"{label} was quantized with its {recipe.encoder_task} head, not a {task} head: pass --task "
            f"{recipe.encoder_task}, or quantize the model again with --task {task}"
        )


def save_quantized(model: Any, folder: Path, recipe: QuantizationRecipe) -> Path:
    """Write the quantized model's tensors and ``quantization.json`` into ``folder``; the weights file's path.

    Raises:
        UserError: a tensor cannot be stored as a plain tensor (an unsupported quantized module).
    """
    import torch
    from safetensors.torch import save_file

    state = {key: value for key, value in model.state_dict().items() if key not in recipe.tied}
    metadata = {"format": "pt"}
    if recipe.method == DYNAMIC_INT8:
        state = _dynamic_tensors(model, recipe.modules, state)
    else:
        support = import_torchao("prototype.safetensors.safetensors_support")
        state, flat_metadata = support.flatten_tensor_state_dict(state)
        metadata.update(flat_metadata)  # each tensor's torchao type and block size, as JSON
        if recipe.bits == 4:
            state = dict(_pack_int4(state, recipe.modules))
    for key, value in state.items():
        if type(value) is not torch.Tensor:
            raise UserError(f"{key} is a {type(value).__name__}, which cannot be stored as a plain tensor")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WEIGHTS_FILE
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    write_recipe(folder, recipe)
    return path


def _dynamic_tensors(model: Any, modules: tuple[str, ...], state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each dynamic int8 module's packed state replaced by its int8 values, scale and bias."""
    import torch

    tensors = {key: value for key, value in state.items() if not any(key.startswith(f"{n}.") for n in modules)}
    for name in modules:
        weight, bias = model.get_submodule(name)._weight_bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr()
        if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            tensors[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
            tensors[f"{name}.weight_zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        else:
            tensors[f"{name}.weight_scale"] = weight.q_per_channel_scales()
            tensors[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach()
    return tensors


def _pack_int4(state: Mapping[str, Any], modules: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The items of ``state`` with each module's int4 values (-8..7, one per int8) packed two per byte."""
    import torch

    packable = {f"{name}._weight_qdata" for name in modules}
    items = []
    for key, value in state.items():
        if key in packable and value.dtype == torch.int8 and value.shape[-1] % 2 == 0:
            if int(value.min()) < -8 or int(value.max()) > 7:
                raise UserError(f"{key} holds values outside the int4 range; it cannot be packed as int4")
            nibbles = (value.to(torch.int16) + 8).to(torch.uint8)
            items.append((key + PACKED_INT4, nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)))
        else:
            items.append((key, value))
    return items


def _unpack_int4(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every packed int4 tensor back to one int8 value (-8..7) per element."""
    import torch

    unpacked = {}
    for key, value in state.items():
        if key.endswith(PACKED_INT4):
            low, high = (value & 0x0F).to(torch.int8) - 8, (value >> 4).to(torch.int8) - 8
            value = torch.stack((low, high), dim=-1).reshape(*value.shape[:-1], value.shape[-1] * 2)
            key = key.removesuffix(PACKED_INT4)
        unpacked[key] = value
    return unpacked


def import_torchao(submodule: str) -> Any:
    """``torchao.<submodule>``, imported without its import-time notices (see :func:`quiet_library_notices`).

    Raises:
        MissingDependencyError: torchao is not installed.
    """
    quiet_library_notices()
    return require_module(f"torchao.{submodule}", "torchao quantization", "pip install 'slm-eval[quantize]'")


def write_recipe(folder: Path, recipe: QuantizationRecipe) -> Path:
    """Write ``quantization.json`` into ``folder``; its path."""
    path = folder / RECIPE_FILE
    path.write_text(json.dumps(recipe.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def shared_tensors(model: Any) -> dict[str, str]:
    """State keys whose tensor is another key's (tied embeddings): ``{later key: first key}``."""
    import torch

    first: dict[tuple[int, int, tuple[int, ...]], str] = {}
    tied: dict[str, str] = {}
    for key, value in model.state_dict().items():
        if type(value) is not torch.Tensor or value.numel() == 0:
            continue
        identity = (value.untyped_storage().data_ptr(), int(value.storage_offset()), tuple(value.shape))
        if identity in first:
            tied[key] = first[identity]
        else:
            first[identity] = key
    return tied


def load_quantized(
    folder: Path,
    recipe: QuantizationRecipe,
    auto_class: Any,
    *,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> Any:
    """The model of a quantized variant folder, in eval mode (on the CPU; on CUDA for ``bnb``).

    Args:
        folder: the variant's folder.
        recipe: its :func:`read_recipe`.
        auto_class: the transformers auto class to build (``AutoModelForCausalLM``, a head's class).
        dtype: the dtype asked for; the CPU methods keep their float layers in float32 and accept only that.
        trust_remote_code: let transformers run code shipped with the model.

    Raises:
        UserError: files are missing or do not match the recipe, a dtype other than float32 for a CPU
            method, or the method's package is not installed.
    """
    import torch

    quiet_library_notices()
    if recipe.method == BNB:
        return _load_bnb(folder, auto_class, trust_remote_code)
    if dtype is not None and dtype != torch.float32:
        asked = str(dtype).removeprefix("torch.")
        raise UserError(f"{folder.name} is a {recipe.method} variant, which runs in float32: drop --dtype {asked}")
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers.initialization import no_init_weights

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{folder} has a {RECIPE_FILE} but no {WEIGHTS_FILE}; quantize the model again")
    config = transformers.AutoConfig.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=trust_remote_code
    )
    with no_init_weights():  # every weight is overwritten from the file below
        model = auto_class.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code)
    state = load_file(str(path))
    expected_missing = set(recipe.tied)
    try:
        if recipe.method == DYNAMIC_INT8:
            stored = {name: _pop_dynamic(state, name) for name in recipe.modules}
            expected_missing |= {f"{name}.{key}" for name in recipe.modules for key in ("weight", "bias")}
            leftover: dict[str, Any] = {}
        else:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            support = import_torchao("prototype.safetensors.safetensors_support")
            state, leftover = support.unflatten_tensor_state_dict(_unpack_int4(state), metadata)
        result = model.load_state_dict(state, strict=False, assign=True)
        if recipe.method == DYNAMIC_INT8:
            for name, (weight, bias) in stored.items():
                _swap_dynamic(model, name, weight, bias)
    except (KeyError, RuntimeError, ValueError, AttributeError, TypeError) as exc:
        raise UserError(
            f"the weights in {path} do not fit the {recipe.architecture} of its config ({first_line(exc)}); "
            "quantize the model again"
        ) from exc
    missing = sorted(set(result.missing_keys) - expected_missing)
    unexpected = [*result.unexpected_keys, *leftover]
    if missing or unexpected:
        odd = missing or unexpected
        raise UserError(
            f"{path} does not match its recipe: {'missing' if missing else 'unexpected'} {', '.join(odd[:3])}; "
            "quantize the model again"
        )
    _retie(model, recipe.tied)
    return model.eval()


def _pop_dynamic(state: dict[str, Any], name: str) -> tuple[Any, Any]:
    """Take one dynamic int8 module's stored tensors out of ``state``: its quantized weight and its bias."""
    import torch

    values = state.pop(f"{name}.weight_int8")
    scale, zero_point = state.pop(f"{name}.weight_scale"), state.pop(f"{name}.weight_zero_point")
    with warnings.catch_warnings():  # torch deprecates its quantized tensors (and torch.ao.quantization) as a whole
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
        if scale.numel() == 1:
            weight = torch._make_per_tensor_quantized_tensor(values, float(scale.item()), int(zero_point.item()))
        else:
            weight = torch._make_per_channel_quantized_tensor(values, scale, zero_point, 0)
    return weight, state.pop(f"{name}.bias", None)


def _swap_dynamic(model: Any, name: str, weight: Any, bias: Any) -> None:
    """Replace the ``nn.Linear`` called ``name`` by a dynamic int8 one holding ``weight`` and ``bias``."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    linear = model.get_submodule(name)
    if not isinstance(linear, torch.nn.Linear) or tuple(weight.shape) != tuple(linear.weight.shape):
        raise ValueError(f"{name} is not a Linear layer of the stored weight's shape {tuple(weight.shape)}")
    dynamic = DynamicLinear(  # type: ignore[no-untyped-call]
        linear.in_features, linear.out_features, bias_=bias is not None, dtype=torch.qint8
    )
    dynamic.set_weight_bias(weight, bias)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, dynamic)


def _retie(model: Any, tied: Mapping[str, str]) -> None:
    """Tie the weights the architecture ties (loading assigned new tensors), and copy any other shared one."""
    import torch

    if tied and hasattr(model, "tie_weights"):
        model.tie_weights()
    state = model.state_dict()
    with torch.no_grad():
        for target, source in tied.items():
            if state[target].data_ptr() != state[source].data_ptr():
                state[target].copy_(state[source])


def _load_bnb(folder: Path, auto_class: Any, trust_remote_code: bool) -> Any:
    require_module("bitsandbytes", "loading a bitsandbytes-quantized model", "pip install bitsandbytes")
    try:
        model = auto_class.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"transformers cannot load the bitsandbytes variant {folder} ({first_line(exc)})") from exc
    return model.eval()


def runs_on_cpu_only(model: Any) -> bool:
    """True when the model holds PyTorch dynamic quantized layers, whose kernels exist for the CPU only."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(module, DynamicLinear) for module in model.modules())


def count_parameters(model: Any) -> int:
    """The model's parameter count, including the weights that dynamic quantization packed out of sight."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    packed = 0
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            weight, bias = module._weight_bias()  # type: ignore[no-untyped-call]
            packed += weight.numel() + (0 if bias is None else bias.numel())
    return int(sum(parameter.numel() for parameter in model.parameters())) + packed
