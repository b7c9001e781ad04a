from codecomplete.models import fim


def test_detects_each_family_from_its_special_tokens():
    for name, template in fim.TEMPLATES.items():
        if name == "codecomplete":
            continue
        vocab = {t: i for i, t in enumerate(["a", "b", *template.special_tokens(), *template.end_tokens])}
        assert fim.detect(vocab).name == name


def test_no_fim_tokens_means_no_template():
    assert fim.detect({"a": 0, "<|endoftext|>": 1}) is None


def test_configured_name_wins_over_detection():
    vocab = {"<fim_prefix>": 0, "<fim_suffix>": 1, "<fim_middle>": 2}
    assert fim.detect(vocab).name == "starcoder"
    assert fim.detect(vocab, configured="codecomplete").name == "codecomplete"


def test_psm_and_spm_layouts():
    t = fim.from_name("starcoder")
    assert t.render("def f(", "):", "psm") == "<fim_prefix>def f(<fim_suffix>):<fim_middle>"
    assert t.render("def f(", "):", "spm") == "<fim_prefix><fim_suffix>):<fim_middle>def f("
    ids = {"<fim_prefix>": 100, "<fim_suffix>": 101, "<fim_middle>": 102}
    assert t.encode([1, 2], [3], ids.__getitem__, "psm") == [100, 1, 2, 101, 3, 102]
    assert t.encode([1, 2], [3], ids.__getitem__, "spm") == [100, 101, 3, 102, 1, 2]


def test_codegen2_layout():
    t = fim.from_name("codegen2")
    assert t.render("a", "b") == "a<mask_1>b<|endoftext|><sep><mask_1>"
    assert "<eom>" in t.end_tokens


def test_trained_tokenizer_has_single_fim_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for special in ["<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>"]:
        ids = tok(special, add_special_tokens=False).input_ids
        assert len(ids) == 1, special
    text = "def f(x):\n    return  x  # ünïcode\n\t\n"
    assert tok.decode(tok(text).input_ids) == text


def test_newline_and_indentation_are_token_boundaries(tiny_model_dir):
    """A prompt cut right after Enter (with or without the auto-indent) ends on a token boundary."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    full = "def f(x):\n    return x\n"
    ids = tok(full, add_special_tokens=False).input_ids
    for cut in ("def f(x):\n", "def f(x):\n    "):
        head = tok(cut, add_special_tokens=False).input_ids
        assert ids[: len(head)] == head, cut
