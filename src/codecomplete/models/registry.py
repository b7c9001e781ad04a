"""What differs between model families, read from the model's config and tokenizer (never literals).

spec = ModelSpec.from_pretrained(config, tokenizer)
spec.context_length, spec.eos_token_ids, spec.fim, spec.fim_end_token_ids
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codecomplete.models import fim as fim_mod

# Config attributes that hold the context length, in the order families use them.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")

# The families the engine is tested against (tests/engine/test_architectures.py).
KNOWN_FAMILIES = {"gpt2", "gpt_neo", "codegen", "gpt_bigcode", "llama", "qwen2"}


@dataclass
class ModelSpec:
    family: str  # config.model_type
    context_length: int
    vocab_size: int  # rows of the output embedding (ids >= this are invalid)
    eos_token_ids: list[int]
    bos_token_id: int | None  # fed as the prompt when a prompt is empty
    prompt_prefix_ids: list[int] = field(default_factory=list)  # what the tokenizer prepends (BOS)
    fim: fim_mod.FimTemplate | None = None
    fim_end_token_ids: list[int] = field(default_factory=list)

    @classmethod
    def from_pretrained(cls, config, tokenizer, fim_template: str | None = None) -> ModelSpec:
        ctx = 0
        for key in _CONTEXT_KEYS:
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                ctx = value
                break
        tok_max = getattr(tokenizer, "model_max_length", 0) or 0
        if not ctx or (0 < tok_max < ctx):
            ctx = tok_max if 0 < tok_max < 10**8 else (ctx or 2048)

        eos: list[int] = []
        for source in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
            for value in source if isinstance(source, list) else [source]:
                if isinstance(value, int) and value not in eos:
                    eos.append(value)
        bos = config.bos_token_id if isinstance(getattr(config, "bos_token_id", None), int) else None
        if bos is None:
            bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else (eos[0] if eos else None)

        vocab = tokenizer.get_vocab()
        configured = fim_template or getattr(config, "fim_template", None)
        template = fim_mod.detect(vocab, configured=configured)
        if template is not None and not all(t in vocab for t in template.special_tokens()):
            template = None  # configured, but the tokenizer lacks its tokens
        fim_end = [vocab[t] for t in template.end_tokens if t in vocab] if template else []

        prefix_ids = list(tokenizer("", add_special_tokens=True)["input_ids"])
        vocab_size = (
            config.get_text_config().vocab_size if hasattr(config, "get_text_config") else config.vocab_size
        )
        return cls(
            family=getattr(config, "model_type", "unknown"),
            context_length=int(ctx),
            vocab_size=int(vocab_size),
            eos_token_ids=eos,
            bos_token_id=bos,
            prompt_prefix_ids=prefix_ids,
            fim=template,
            fim_end_token_ids=fim_end,
        )
