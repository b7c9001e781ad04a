"""Fill-in-the-middle templates, shared by serving (prompt building) and training (augmentation).

A template is a layout of pieces: special tokens (by role) and the prefix/suffix text. Serving and
training both go through `encode`, so what the server sends is exactly what the model was trained on.
Templates are picked from the tokenizer's special tokens (`detect`), or named explicitly
(`config.fim_template`, `--fim-template`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Order = Literal["psm", "spm"]
# A layout piece: "pre"/"suf" are the texts; "<P>", "<S>", "<M>" the template's tokens; anything
# else is a literal special token string.
Piece = str


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix_token: str | None
    suffix_token: str | None
    middle_token: str | None
    psm: tuple[Piece, ...]
    spm: tuple[Piece, ...] | None  # None: the family was not trained with SPM
    end_tokens: tuple[str, ...] = ()  # tokens that end the middle besides EOS
    detect: tuple[str, ...] = ()  # all must be in the vocabulary for auto-detection

    def layout(self, order: Order) -> tuple[Piece, ...]:
        if order == "spm" and self.spm is not None:
            return self.spm
        return self.psm

    def special_tokens(self) -> list[str]:
        toks = [self.prefix_token, self.suffix_token, self.middle_token]
        toks += [p for p in self.psm + (self.spm or ()) if p not in ("pre", "suf", "<P>", "<S>", "<M>")]
        seen: list[str] = []
        for t in toks:
            if t and t not in seen:
                seen.append(t)
        return seen

    def _token(self, piece: Piece) -> str:
        return {"<P>": self.prefix_token, "<S>": self.suffix_token, "<M>": self.middle_token}.get(
            piece, piece
        )  # type: ignore[return-value]

    def render(self, prefix: str, suffix: str, order: Order = "psm") -> str:
        """The prompt as text (for logs and for clients that want to see it)."""
        parts = []
        for piece in self.layout(order):
            parts.append(prefix if piece == "pre" else suffix if piece == "suf" else self._token(piece))
        return "".join(parts)

    def encode(
        self,
        prefix_ids: Sequence[int],
        suffix_ids: Sequence[int],
        token_to_id: Callable[[str], int],
        order: Order = "psm",
    ) -> list[int]:
        """Join already-tokenised prefix and suffix with the template's special token ids.

        Tokenising the parts separately keeps BPE merges from crossing the template's boundaries,
        the same way training builds its examples.
        """
        out: list[int] = []
        for piece in self.layout(order):
            if piece == "pre":
                out.extend(prefix_ids)
            elif piece == "suf":
                out.extend(suffix_ids)
            else:
                out.append(token_to_id(self._token(piece)))
        return out


def _std(name: str, p: str, s: str, m: str, end: tuple[str, ...], spm: bool) -> FimTemplate:
    return FimTemplate(
        name=name,
        prefix_token=p,
        suffix_token=s,
        middle_token=m,
        psm=("<P>", "pre", "<S>", "suf", "<M>"),
        # The SPM variant of "Efficient Training of Language Models to Fill in the Middle"
        # (Bavarian et al. 2022, appendix D), as StarCoder was trained.
        spm=("<P>", "<S>", "suf", "<M>", "pre") if spm else None,
        end_tokens=end,
        detect=(p, s, m),
    )


# Order matters for detection: the first template whose tokens are all present wins.
TEMPLATES: dict[str, FimTemplate] = {
    # This project's own models (`codecomplete tokenizer train`): StarCoder's token names, trained
    # with both PSM and SPM. Picked when the model's config says fim_template="codecomplete".
    "codecomplete": _std(
        "codecomplete", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", ("<|endoftext|>",), True
    ),
    "starcoder": _std("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", ("<|endoftext|>",), True),
    "santacoder": _std(
        "santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>", ("<|endoftext|>",), True
    ),
    "qwen2.5-coder": _std(
        "qwen2.5-coder",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        ("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"),
        False,
    ),
    "deepseek-coder": _std(
        "deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", ("<|EOT|>",), False
    ),
    # CodeLlama's sentencepiece tokens carry a leading "▁" in the vocabulary.
    "codellama": _std("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", ("▁<EOT>", "<EOT>"), True),
    # CodeGen2: prefix <mask_1> suffix <|endoftext|> <sep> <mask_1>, the middle ends at <eom>.
    "codegen2": FimTemplate(
        name="codegen2",
        prefix_token=None,
        suffix_token=None,
        middle_token="<mask_1>",
        psm=("pre", "<mask_1>", "suf", "<|endoftext|>", "<sep>", "<mask_1>"),
        spm=None,
        end_tokens=("<eom>", "<|endoftext|>"),
        detect=("<mask_1>", "<sep>", "<eom>"),
    ),
}


def from_name(name: str) -> FimTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown FIM template {name!r}; known: {', '.join(TEMPLATES)}") from None


def detect(vocab: set[str] | dict[str, int], configured: str | None = None) -> FimTemplate | None:
    """The template for a tokenizer's vocabulary, or None when it has no FIM tokens.

    `configured` (from the model config's `fim_template` or a flag) wins when given. Plain
    auto-detection never returns "codecomplete": its tokens are StarCoder's, and the two templates
    build the same prompts.
    """
    if configured:
        return from_name(configured)
    for name, template in TEMPLATES.items():
        if name == "codecomplete":
            continue
        if template.detect and all(tok in vocab for tok in template.detect):
            return template
    return None


# --- extra context (other files) placed before the local context ---------------------------------


@dataclass(frozen=True)
class ContextChunk:
    """A piece of another file the editor sends along (llama.cpp's `input_extra`, Tabby's
    `declarations` and snippets)."""

    filename: str
    text: str


# Families trained with a repo-level layout: (repo-name token, file-separator token). Qwen2.5-Coder's
# tokens are always in its vocabulary; StarCoder2's <repo_name>/<file_sep> are not in StarCoder1 or
# in this project's tokenizer, which share the "starcoder" FIM template, so those get comments.
REPO_TOKENS: dict[str, tuple[str, str]] = {"qwen2.5-coder": ("<|repo_name|>", "<|file_sep|>")}

_HASH = ("py", "sh", "bash", "zsh", "rb", "pl", "r", "yaml", "yml", "toml", "cmake", "mk", "nim", "jl")
_SLASH = (
    "c", "h", "cc", "cpp", "cxx", "hpp", "cu", "js", "mjs", "cjs", "jsx", "ts", "tsx", "java", "go",
    "rs", "cs", "swift", "kt", "kts", "scala", "php", "dart", "zig", "v", "sol", "proto", "groovy",
)  # fmt: skip
_DASH = ("sql", "lua", "hs", "elm", "ada", "vhd")
_LANGUAGES = {
    "python": "#", "shellscript": "#", "ruby": "#", "perl": "#", "r": "#", "yaml": "#",
    "toml": "#", "dockerfile": "#", "makefile": "#", "julia": "#",
    "c": "//", "cpp": "//", "javascript": "//", "javascriptreact": "//", "typescript": "//",
    "typescriptreact": "//", "java": "//", "go": "//", "rust": "//", "csharp": "//", "swift": "//",
    "kotlin": "//", "scala": "//", "php": "//", "dart": "//", "zig": "//", "solidity": "//",
    "sql": "--", "lua": "--", "haskell": "--", "elm": "--",
}  # fmt: skip


def comment_prefix(filename: str | None = None, language: str | None = None) -> str:
    """The line-comment marker for a language id (VS Code's, as Tabby sends) or a file name."""
    if language and language.lower() in _LANGUAGES:
        return _LANGUAGES[language.lower()]
    name = (filename or "").rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name
    if ext in _SLASH:
        return "//"
    if ext in _DASH:
        return "--"
    return "#"  # also Dockerfile, Makefile and unknown files


def render_context(
    template: str | None,
    chunks: Sequence[ContextChunk],
    *,
    filename: str | None = None,
    language: str | None = None,
    repo_name: str = "myproject",
) -> str:
    """Text that goes in front of the local prefix so the model sees the other files first.

    Families with a repo-level layout get it (Qwen2.5-Coder: `<|repo_name|>repo`, then
    `<|file_sep|>path\\ntext` per chunk, then `<|file_sep|>` and the current file's name, as
    llama.cpp's /infill builds it); every other model gets each chunk as comment lines headed
    `Path: <file>` (the layout Tabby's server uses), so a model without such training reads them
    as code comments rather than as code of the current file. Empty when there are no chunks.
    """
    chunks = [c for c in chunks if c.text]
    if not chunks:
        return ""
    tokens = REPO_TOKENS.get(template or "")
    if tokens is not None:
        repo, sep = tokens
        parts = [f"{repo}{repo_name}\n"]
        for c in chunks:
            text = c.text if c.text.endswith("\n") else c.text + "\n"
            parts.append(f"{sep}{c.filename or 'tmp'}\n{text}")
        parts.append(f"{sep}{filename or 'filename'}\n")
        return "".join(parts)
    lines: list[str] = []
    for i, c in enumerate(chunks):
        mark = comment_prefix(filename or c.filename, language)
        lines.append(f"{mark} Path: {c.filename or 'tmp'}")
        lines.extend(f"{mark} {line}" if line.strip() else mark for line in c.text.splitlines())
        if i < len(chunks) - 1:
            lines.append(mark)
    return "\n".join(lines) + "\n"
