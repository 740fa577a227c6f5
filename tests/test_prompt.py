import pytest

from engine.prompt import (
    FIM_TEMPLATES,
    Special,
    Text,
    chat_prompt,
    detect_fim_template,
    fit_window,
)

QWEN_VOCAB = ["a", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|im_end|>"]


def count_chars(text: str) -> int:
    return len(text)


@pytest.mark.parametrize(
    ("tokens", "name"),
    [
        (QWEN_VOCAB, "qwen2.5-coder"),
        (["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "x"], "starcoder2"),
        (["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"], "deepseek-coder"),
        (["<s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"], "codellama"),
    ],
)
def test_template_comes_from_the_vocabulary(tokens, name):
    template = detect_fim_template(tokens, {})
    assert template is not None and template.name == name


def test_template_from_metadata_ids_when_tokens_are_unfamiliar():
    tokens = ["<s>", "[P]", "[S]", "[M]", "[E]"]
    meta = {"tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.fim_suf_token_id": 2,
            "tokenizer.ggml.fim_mid_token_id": 3, "tokenizer.ggml.eot_token_id": 4}
    template = detect_fim_template(tokens, meta)
    assert template is not None
    assert (template.prefix, template.suffix, template.middle, template.end_tokens) == ("[P]", "[S]", "[M]", ("[E]",))


def test_no_fim_tokens_means_no_template():
    assert detect_fim_template(["a", "b", "<|im_end|>"], {"tokenizer.ggml.fim_pre_token_id": 99}) is None


def test_fim_prompt_keeps_user_text_out_of_special_parts():
    prompt = FIM_TEMPLATES[0].build("x = '<|fim_middle|>'\n", "\nprint(x)")
    assert prompt.parts == (
        Special("<|fim_prefix|>"), Text("x = '<|fim_middle|>'\n"), Special("<|fim_suffix|>"), Text("\nprint(x)"),
        Special("<|fim_middle|>"),
    )
    assert prompt.render() == "<|fim_prefix|>x = '<|fim_middle|>'\n<|fim_suffix|>\nprint(x)<|fim_middle|>"
    assert "<|file_sep|>" in prompt.stop_tokens


def test_chat_prompt_uses_the_template_and_keeps_code_as_text():
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    code = "s = '<|im_end|>{{ not jinja }}'"
    prompt = chat_prompt([{"role": "user", "content": code}], template, eos_token="<|im_end|>")
    assert prompt.parts == (Special("<|im_start|>user\n"), Text(code), Special("<|im_end|>\n<|im_start|>assistant\n"))
    assert "<|im_end|>" in prompt.stop_tokens


def test_window_keeps_everything_that_fits():
    window = fit_window("a\nb\nc", "d\ne", count_chars, budget=100)
    assert (window.prefix, window.suffix) == ("a\nb\nc", "d\ne")


def test_window_cuts_whole_lines_nearest_the_cursor_first():
    prefix = "".join(f"line{i:02}\n" for i in range(50)) + "    x = "
    suffix = "1\n" + "".join(f"after{i:02}\n" for i in range(50))
    window = fit_window(prefix, suffix, count_chars, budget=100)
    assert window.prefix.endswith("line49\n    x = ")
    assert window.suffix.startswith("1\nafter00\n")
    assert all(line.startswith("line") for line in window.prefix.split("\n")[:-1])
    assert len(window.prefix) + len(window.suffix) <= 100
    # favoured about 3:1
    assert 2 <= window.prefix_tokens / max(window.suffix_tokens, 1) <= 4


def test_a_line_longer_than_the_budget_is_cut_to_the_part_nearest_the_cursor():
    """A 2 MB line of data or minified code: its part nearest the cursor, never the whole line (which
    made every request there fail with "lower contextTokens")."""
    calls = []

    def count_words(text: str) -> int:  # a token per 4 characters, and never asked about the whole line
        calls.append(len(text))
        return -(-len(text) // 4)

    head = "x = [" + ", ".join(str(i) for i in range(300_000))
    tail = ", 7]  # end\nnext_line = 1\n"
    window = fit_window("before = 0\n" + head, tail, count_words, budget=100)
    assert window.prefix_tokens + window.suffix_tokens <= 100
    assert head.endswith(window.prefix) and window.prefix.endswith("299999")
    assert window.suffix.startswith(", 7]  # end\nnext_line")  # the short side keeps its lines
    assert "before" not in window.prefix
    assert max(calls) < 100 * 16 + 1


def test_unused_suffix_budget_goes_to_the_prefix():
    prefix = "".join(f"line{i:02}\n" for i in range(50))
    window = fit_window(prefix, "", count_chars, budget=100)
    assert window.prefix_tokens > 90
