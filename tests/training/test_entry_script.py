"""The entry script: run as SageMaker runs it (``python train.py --key value``, ``SM_*`` folders), and its errors."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from slm_eval.training.job import Hyperparameters
from slm_eval.training.scripts.train import main
from tests.training.engine_fixtures import QA_RECORDS, SFT_RECORDS, tiny_bert, tiny_decoder, write_split

SOURCE = Path(__file__).resolve().parents[2] / "src" / "slm_eval"
# What the SageMaker Hugging Face training container is known to hold, besides the standard library.
CONTAINER_PACKAGES = {"numpy", "torch", "transformers", "peft", "safetensors", "slm_eval"}
CONTAINER_SAFE = (
    "training/job.py",
    "training/sft_data.py",
    "training/encoder_data.py",
    "training/engine.py",
    "training/engine_models.py",
    "training/engine_control.py",
    "training/engine_stop.py",
    "training/scripts/train.py",
)


def imported_modules(path: Path, *, nested: bool) -> set[str]:
    """The modules ``path`` imports: at module level, and inside functions too when ``nested``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree) if nested else iter(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_file(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    package = SOURCE / relative / "__init__.py"
    return package if package.is_file() else SOURCE / relative.with_suffix(".py")


def test_the_entry_script_imports_only_what_the_training_container_holds() -> None:
    """Every module the container-safe ones import, following this package's own modules, is allowed there."""
    allowed = set(sys.stdlib_module_names) | CONTAINER_PACKAGES
    pending = [(SOURCE / relative, True) for relative in CONTAINER_SAFE]
    seen: set[Path] = set()
    offenders: list[str] = []
    while pending:
        path, nested = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, nested=nested):
            if name.split(".")[0] not in allowed:
                offenders.append(f"{path.relative_to(SOURCE)} imports {name}")
            elif name.startswith("slm_eval"):
                parts = name.split(".")
                for depth in range(2, len(parts) + 1):  # each package's __init__ runs too
                    target = module_file(".".join(parts[:depth]))
                    if target.is_file():
                        pending.append((target, False))
    assert offenders == []
    assert SOURCE / "backends" / "encoder_heads.py" in seen  # the border label sets, followed


def test_importing_the_entry_script_and_engine_loads_neither_torch_nor_transformers() -> None:
    """The CLI imports them to name their errors; the heavy libraries load only when training starts."""
    code = (
        "import sys, slm_eval.training.scripts.train, slm_eval.training.engine;"
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def stage_container(root: Path) -> dict[str, Path]:
    """``/opt/ml`` remapped under ``root``: the code folder (train.py beside a copy of slm_eval) and the channels."""
    ml = root / "opt" / "ml"
    code = ml / "code"
    code.mkdir(parents=True)
    shutil.copy2(SOURCE / "training" / "scripts" / "train.py", code / "train.py")
    shutil.copytree(SOURCE, code / "slm_eval", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    folders = {
        "code": code,
        "model": ml / "model",
        "train": ml / "input" / "data" / "train",
        "validation": ml / "input" / "data" / "validation",
        "base": ml / "input" / "data" / "model",
        "output": ml / "output" / "data",
        "checkpoints": ml / "checkpoints",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def container_environment(folders: dict[str, Path]) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    environ.update(
        SM_MODEL_DIR=str(folders["model"]),
        SM_CHANNEL_TRAIN=str(folders["train"]),
        SM_CHANNEL_VALIDATION=str(folders["validation"]),
        SM_CHANNEL_MODEL=str(folders["base"]),
        SM_OUTPUT_DATA_DIR=str(folders["output"]),
        SM_NUM_GPUS="0",
    )
    return environ


def hyperparameter_arguments(hp: Hyperparameters, checkpoints: Path) -> list[str]:
    """``--key value`` for each hyperparameter, as the container passes the job's HyperParameters map."""
    arguments: list[str] = []
    for key, value in {**hp.to_hyperparameters(), "checkpoint-dir": str(checkpoints)}.items():
        arguments += [f"--{key}", value]
    return arguments


def run_container(folders: dict[str, Path], hp: Hyperparameters) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *hyperparameter_arguments(hp, folders["checkpoints"])],
        cwd=folders["code"],
        env=container_environment(folders),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def pack_and_unpack(model_dir: Path, destination: Path) -> Path:
    """What SageMaker does with the model folder: ``model.tar.gz`` of its contents, then unpacked elsewhere."""
    archive = destination / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    unpacked = destination / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
def test_lora_in_a_simulated_sagemaker_container_leaves_a_packable_adapter(tmp_path: Path) -> None:
    import peft
    import transformers

    folders = stage_container(tmp_path)
    tiny_decoder(folders["base"])
    write_split(folders["train"].parent, "train", SFT_RECORDS * 2)
    write_split(folders["validation"].parent, "validation", SFT_RECORDS)
    hp = Hyperparameters(task="sft", epochs=1, batch_size=4, learning_rate=5e-3, threads=2)
    result = run_container(folders, hp)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"saved the trained model (adapter) in {folders['model']}" in result.stdout
    assert "validation loss" in result.stdout  # the loss lines reach the container's log stream
    # The staged copy of the package ran, not the installed one.
    assert list((folders["code"] / "slm_eval" / "training" / "__pycache__").glob("engine.*.pyc"))
    names = {item.name for item in folders["model"].iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"training_metrics.json", "hyperparameters.json"} <= names
    assert not any(name.startswith("checkpoint") for name in names)
    assert list(folders["checkpoints"].glob("checkpoint-*"))
    assert (folders["output"] / "training_metrics.json").is_file()
    unpacked = pack_and_unpack(folders["model"], tmp_path)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(folders["base"]))
    assert peft.PeftModel.from_pretrained(base, str(unpacked)) is not None


@pytest.mark.integration
def test_an_encoder_in_a_simulated_sagemaker_container_leaves_a_whole_model(tmp_path: Path) -> None:
    import transformers

    folders = stage_container(tmp_path)
    tiny_bert(folders["base"], head="BertModel")
    write_split(folders["train"].parent, "train", QA_RECORDS)
    write_split(folders["validation"].parent, "validation", QA_RECORDS)
    hp = Hyperparameters(task="qa", method="full", epochs=1, batch_size=2, threads=2, max_length=64)
    result = run_container(folders, hp)
    assert result.returncode == 0, result.stderr[-2000:]
    unpacked = pack_and_unpack(folders["model"], tmp_path)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(str(unpacked))
    assert type(model).__name__ == "BertForQuestionAnswering"
    assert transformers.AutoTokenizer.from_pretrained(str(unpacked)).is_fast


def test_a_user_mistake_is_one_line_on_stderr_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--task", "sft", "--model", str(tmp_path / "base.gguf")], environ={})
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: no training data: give --train-dir (the folder holding train.jsonl)\n"
    code = main(["--task", "sft", "--epochs", "many"], environ={"SM_CHANNEL_TRAIN": str(tmp_path)})
    assert code == 2
    assert capsys.readouterr().err == "error: --epochs takes a number, not 'many'\n"


def test_missing_data_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "m.gguf").write_bytes(b"GGUF")
    environ = {"SM_CHANNEL_TRAIN": str(tmp_path / "train"), "SM_CHANNEL_MODEL": str(base)}
    argv = ["--task", "sft", "--model-dir", str(tmp_path / "model"), "--resume", "auto"]
    assert main(argv, environ=environ) == 2
    assert "no train.jsonl in" in capsys.readouterr().err


def test_a_corrupt_gguf_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    write_split(tmp_path, "train", SFT_RECORDS)
    argv = ["--task", "sft", "--model", str(tmp_path / "m.gguf"), "--train-dir", str(tmp_path / "train")]
    assert main([*argv, "--model-dir", str(tmp_path / "model")], environ={}) == 2
    assert "cannot load the tokenizer of m.gguf" in capsys.readouterr().err
