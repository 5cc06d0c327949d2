"""Encoders with a task head on PyTorch: the real bundled MiniLM with each head, and a tiny random DistilBERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from slm_eval.backends import transformers as backend_module  # noqa: E402
from slm_eval.backends.base import EncoderRequest, LoadOptions, is_encoder_backend  # noqa: E402
from slm_eval.backends.encoder_heads import default_labels, encode  # noqa: E402
from slm_eval.backends.transformers_encoder import (  # noqa: E402
    HeadModel,
    TransformersEncoderBackend,
    load_encoder,
    load_head_model,
)
from slm_eval.errors import UserError  # noqa: E402
from slm_eval.models.catalogue import default_registry  # noqa: E402
from slm_eval.models.registry import ModelCard, Registry  # noqa: E402
from slm_eval.tasks.border.entities import ENTITY_TYPES, THREAT_LABELS  # noqa: E402

QUESTION = "Who was detained?"
CONTEXT = "Driver Nathaniel Balogun was detained at the Dover crossing on Tuesday night."
QA_CASES = [
    (QUESTION, CONTEXT),
    ("Where was the lorry stopped?", "The lorry was stopped at the Calais port after a tip-off from customs."),
    ("What was found?", "Officers found 12 kg of undeclared tobacco hidden in the spare tyre."),
]
NOTES = [
    "Nathaniel Balogun, a Nigerian national, presented passport P1234567 at Dover.",
    "Vehicle AB12 CDE carried EUR 9,500 in cash and two undeclared firearms.",
]


class StepClock:
    """A clock that moves forward 0.01 s at each reading."""

    def __init__(self) -> None:
        self.readings = 0

    def now(self) -> float:
        self.readings += 1
        return self.readings * 0.01


@pytest.fixture(scope="module")
def minilm() -> tuple[ModelCard, Path]:
    """The bundled MiniLM's card and folder (a ``BertModel`` without any task head)."""
    card = default_registry().resolve("all-minilm-l6-v2")
    return card, card.source.locate(Path("unused"))


def _head(minilm: tuple[ModelCard, Path], task: str, seed: int = 0) -> HeadModel:
    card, folder = minilm
    return load_head_model(card, folder, task, seed=seed)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def qa_head(minilm: tuple[ModelCard, Path]) -> HeadModel:
    """MiniLM with a QA head drawn from seed 0."""
    return _head(minilm, "qa", seed=0)


@pytest.fixture(scope="module")
def other_qa_head(minilm: tuple[ModelCard, Path]) -> HeadModel:
    """MiniLM with a QA head drawn from seed 1."""
    return _head(minilm, "qa", seed=1)


@pytest.fixture(scope="module")
def qa(qa_head: HeadModel) -> TransformersEncoderBackend:
    return TransformersEncoderBackend(qa_head, StepClock())


@pytest.fixture(scope="module")
def ner(minilm: tuple[ModelCard, Path]) -> TransformersEncoderBackend:
    """MiniLM with a token-classification head, loaded the way every caller loads it."""
    card, folder = minilm
    backend = backend_module.load(card, folder, LoadOptions(threads=2, context_length=512, encoder_task="ner"))
    assert isinstance(backend, TransformersEncoderBackend)
    return backend


@pytest.fixture(scope="module")
def classify(minilm: tuple[ModelCard, Path]) -> TransformersEncoderBackend:
    card, folder = minilm
    return load_encoder(card, folder, LoadOptions(threads=2, context_length=512, encoder_task="classify", seed=3))


def _logits(head: HeadModel, question: str = QUESTION, context: str = CONTEXT) -> np.ndarray:
    encoded = encode(head.tokenizer, "qa", EncoderRequest(question, context), head.max_length)
    inputs = {name: torch.from_numpy(array) for name, array in encoded.arrays(("input_ids", "attention_mask")).items()}
    inputs["token_type_ids"] = torch.tensor([encoded.token_type_ids])
    with torch.inference_mode():
        output = head.model(**inputs)
    return np.concatenate([output.start_logits.numpy(), output.end_logits.numpy()])


# --- the untrained heads of the bundled MiniLM ----------------------------------------------------------


@pytest.mark.slow
def test_every_head_of_the_base_encoder_is_untrained(
    qa: TransformersEncoderBackend, ner: TransformersEncoderBackend, classify: TransformersEncoderBackend
) -> None:
    for backend, task in ((qa, "qa"), (ner, "ner"), (classify, "classify")):
        assert backend.head_trained is False
        assert backend.task == task
        assert backend.capabilities.encoder_tasks == frozenset({task})
        assert backend.capabilities.generate is False
        assert backend.name == "transformers"
        assert is_encoder_backend(backend)
        assert backend.parameter_count is not None and 22_000_000 < backend.parameter_count < 23_000_000
    assert qa.labels == ()
    assert ner.labels == default_labels("ner")
    assert classify.labels == THREAT_LABELS


@pytest.mark.slow
def test_same_seed_gives_the_same_head(minilm: tuple[ModelCard, Path], qa_head: HeadModel) -> None:
    again = _head(minilm, "qa", seed=0)
    np.testing.assert_array_equal(_logits(qa_head), _logits(again))
    first = TransformersEncoderBackend(qa_head, StepClock()).predict([EncoderRequest(q, c) for q, c in QA_CASES])
    second = TransformersEncoderBackend(again, StepClock()).predict([EncoderRequest(q, c) for q, c in QA_CASES])
    assert [(p.text, p.confidence, dict(p.detail)) for p in first] == [
        (p.text, p.confidence, dict(p.detail)) for p in second
    ]


@pytest.mark.slow
def test_another_seed_gives_another_head(qa_head: HeadModel, other_qa_head: HeadModel) -> None:
    assert not np.allclose(_logits(qa_head), _logits(other_qa_head))


@pytest.mark.slow
def test_the_seed_draws_only_the_head(qa_head: HeadModel, other_qa_head: HeadModel) -> None:
    """The encoder's own weights are the bundled ones whatever the seed; only the head is random."""
    mine = dict(qa_head.model.named_parameters())
    theirs = dict(other_qa_head.model.named_parameters())
    encoder_names = [name for name in mine if not name.startswith("qa_outputs")]
    assert encoder_names
    assert all(torch.equal(mine[name], theirs[name]) for name in encoder_names)
    assert not torch.equal(mine["qa_outputs.weight"], theirs["qa_outputs.weight"])


# --- what each head answers ------------------------------------------------------------------------------


@pytest.mark.slow
def test_qa_answer_is_a_span_of_the_context(qa: TransformersEncoderBackend, qa_head: HeadModel) -> None:
    predictions = qa.predict([EncoderRequest(q, c) for q, c in QA_CASES])
    assert len(predictions) == len(QA_CASES)
    for (question, context), prediction in zip(QA_CASES, predictions, strict=True):
        start, end = prediction.detail["start"], prediction.detail["end"]
        assert 0 <= start < end <= len(context)
        assert context[start:end] == prediction.text
        assert prediction.text and prediction.text in context
        assert prediction.confidence is not None and 0 < prediction.confidence <= 1
        assert prediction.input_tokens == len(qa_head.tokenizer(question, context)["input_ids"])
        assert prediction.end_to_end_s > 0


@pytest.mark.slow
def test_predictions_are_timed_on_the_backends_clock(qa_head: HeadModel) -> None:
    clock = StepClock()
    backend = TransformersEncoderBackend(qa_head, clock)
    first, second = backend.predict([EncoderRequest(QUESTION, CONTEXT)] * 2)
    assert first.end_to_end_s == pytest.approx(0.01)
    assert second.started_at >= first.finished_at


@pytest.mark.slow
def test_qa_without_context_is_a_user_error(qa: TransformersEncoderBackend) -> None:
    with pytest.raises(UserError, match="context"):
        qa.predict([EncoderRequest(QUESTION, None)])


@pytest.mark.slow
def test_ner_answer_is_json_whose_entities_are_spans_of_the_text(ner: TransformersEncoderBackend) -> None:
    for text, prediction in zip(NOTES, ner.predict([EncoderRequest(text) for text in NOTES]), strict=True):
        payload = json.loads(prediction.text)
        entities = prediction.detail["entities"]
        assert payload == {"entities": [{"text": e["text"], "type": e["type"]} for e in entities]}
        for entity in entities:
            assert entity["type"] in ENTITY_TYPES
            assert 0 <= entity["start"] < entity["end"] <= len(text)
            assert text[entity["start"] : entity["end"]] == entity["text"]
        if entities:
            assert prediction.confidence is not None and 0 < prediction.confidence <= 1


@pytest.mark.slow
def test_classify_answer_is_a_threat_label(classify: TransformersEncoderBackend) -> None:
    (prediction,) = classify.predict([EncoderRequest(NOTES[1])])
    assert prediction.text in THREAT_LABELS
    scores = prediction.detail["scores"]
    assert set(scores) == set(THREAT_LABELS)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert prediction.confidence == pytest.approx(scores[prediction.text]) == pytest.approx(max(scores.values()))


@pytest.mark.slow
def test_empty_input_is_a_user_error(classify: TransformersEncoderBackend) -> None:
    with pytest.raises(UserError, match="empty input"):
        classify.predict([EncoderRequest("   ")])


@pytest.mark.slow
def test_a_closed_backend_says_so(qa_head: HeadModel) -> None:
    backend = TransformersEncoderBackend(qa_head, StepClock())
    backend.close()
    with pytest.raises(UserError, match="closed"):
        backend.predict([EncoderRequest(QUESTION, CONTEXT)])


# --- a folder whose head was trained ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_qa_folder(qa_head: HeadModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with its (seed 0) QA head saved as a model of its own: the head's weights are now on disk."""
    folder = tmp_path_factory.mktemp("minilm-qa")
    qa_head.model.save_pretrained(folder, safe_serialization=True)
    qa_head.tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_a_saved_head_is_reported_trained_and_loaded_not_redrawn(
    trained_qa_folder: Path, qa: TransformersEncoderBackend
) -> None:
    card = Registry([]).resolve(str(trained_qa_folder))
    assert card.kind == "encoder"
    backend = backend_module.load(
        card, card.source.locate(trained_qa_folder), LoadOptions(threads=2, encoder_task="qa", seed=99)
    )
    assert isinstance(backend, TransformersEncoderBackend)
    assert backend.head_trained is True
    requests = [EncoderRequest(q, c) for q, c in QA_CASES]
    saved = backend.predict(requests)
    original = qa.predict(requests)
    # Seed 99 would draw another head; the same answers show the saved head was used.
    assert [(p.text, p.detail["start"]) for p in saved] == [(p.text, p.detail["start"]) for p in original]
    for mine, theirs in zip(saved, original, strict=True):
        assert mine.confidence == pytest.approx(theirs.confidence, rel=1e-4)


@pytest.mark.slow
def test_another_head_on_a_saved_qa_model_is_untrained(trained_qa_folder: Path) -> None:
    card = Registry([]).resolve(str(trained_qa_folder))
    head = load_head_model(card, trained_qa_folder, "ner")
    assert head.trained is False
    assert head.labels == default_labels("ner")


def test_a_folder_without_weights_is_one_line(tmp_path: Path, minilm: tuple[ModelCard, Path]) -> None:
    _, source = minilm
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    card = Registry([]).resolve(str(tmp_path))
    with pytest.raises(UserError, match=r"cannot load .* with a qa head") as caught:
        load_head_model(card, tmp_path, "qa")
    assert "\n" not in str(caught.value)


def test_a_gguf_file_is_refused_for_an_encoder(minilm: tuple[ModelCard, Path], tmp_path: Path) -> None:
    card, _ = minilm
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(UserError, match="GGUF file; encoders load from a transformers folder"):
        load_head_model(card, gguf, "qa")


# --- a tiny random DistilBERT (its forward takes no token_type_ids) --------------------------------------

TINY_WORDS = [
    *("who", "was", "detained", "driver", "nathaniel", "balogun", "at", "the", "dover", "crossing"),
    *("border", "post", "passport", "officer", "found", "cash", "in", "lorry", "what"),
]


def _tiny_distilbert(folder: Path, head: str | None = None, num_labels: int = 2) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, ".", "?", ","]
    tokenizer = transformers.DistilBertTokenizer(vocab={token: index for index, token in enumerate(vocab)})
    assert len(tokenizer) == len(vocab)
    config = transformers.DistilBertConfig(
        vocab_size=len(vocab), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64
    )
    torch.manual_seed(11)
    if head is None:
        model = transformers.DistilBertModel(config)
    else:
        config.num_labels = num_labels
        model = getattr(transformers, head)(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_distilbert(tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.mark.parametrize("task", ["qa", "ner", "classify"])
def test_tiny_distilbert_runs_every_head(tiny_distilbert: Path, task: str) -> None:
    card = Registry([]).resolve(str(tiny_distilbert))
    assert card.kind == "encoder"
    options = LoadOptions(threads=1, context_length=512, encoder_task=task)  # type: ignore[arg-type]
    backend = backend_module.load(card, card.source.locate(tiny_distilbert), options)
    assert isinstance(backend, TransformersEncoderBackend)
    assert backend.head_trained is False
    context = "driver nathaniel balogun was detained at the dover crossing." if task == "qa" else None
    text = "who was detained?" if task == "qa" else "officer found cash in the lorry at dover."
    (prediction,) = backend.predict([EncoderRequest(text, context)])
    if task == "qa":
        assert context is not None
        assert context[prediction.detail["start"] : prediction.detail["end"]] == prediction.text != ""
    elif task == "ner":
        assert json.loads(prediction.text) == {
            "entities": [{"text": e["text"], "type": e["type"]} for e in prediction.detail["entities"]]
        }
        for entity in prediction.detail["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
    else:
        assert prediction.text in THREAT_LABELS
    backend.close()


def test_a_trained_classifier_with_placeholder_label_names_loads(tmp_path: Path) -> None:
    folder = _tiny_distilbert(tmp_path, "DistilBertForSequenceClassification", num_labels=2)
    card = Registry([]).resolve(str(folder))
    head = load_head_model(card, folder, "classify")
    assert head.trained is True
    assert len(head.labels) == 2


def test_a_folder_without_tokenizer_files_is_one_line(tiny_distilbert: Path, tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_distilbert / name).read_bytes())
    card = Registry([]).resolve(str(tmp_path))
    with pytest.raises(UserError, match="tokenizer") as caught:
        load_head_model(card, tmp_path, "qa")
    assert "\n" not in str(caught.value)
