#!/usr/bin/env python3
"""Expected token ids for Loft's tokenizer conformance tests.

Run with the reference venv (transformers 5.x, tokenizers 0.2x, tiktoken, sentencepiece, gguf):

    /opt/refvenv/bin/python tools/make_tokenizer_fixtures.py

It writes Tests/LoftTokenizersTests/Fixtures/tokenizers/<name>.json, one per tokenizer, each with
the corpus strings and, per string, the ids with and without special tokens, HF's decode of those
ids (with and without skip_special_tokens), and for the first strings HF's character offsets.

How each reference tokenizer is built (all are Hugging Face `tokenizers.Tokenizer` objects; the
ids come from `Tokenizer.encode`, the text from `Tokenizer.decode`):

* smollm2: `AutoTokenizer.from_pretrained(dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")`
  (transformers' own GGUF tokenizer loader: vocab, merges, added tokens, decoder), with one change:
  its pre-tokenizer is set to the one SmolLM2's own tokenizer.json has,
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)].
  transformers has no entry for `tokenizer.ggml.pre = "smollm"` and falls back to plain ByteLevel,
  which splits numbers differently from the model's tokenizer (and from llama.cpp's "smollm"
  pre-tokenizer): e.g. "  7", "½ ¾ ⅓" and Arabic-Indic digits.
* llama3: `TikTokenConverter(llama3.tiktoken, pattern=<Llama 3 regex>)` (the converter's default
  regex, which is Llama 3's), plus the 256 special tokens of Meta-Llama-3.1's tokenizer.json added
  from id 128000 (`<|begin_of_text|>`, `<|end_of_text|>`, `<|reserved_special_token_0|>`,
  `<|reserved_special_token_1|>`, `<|finetune_right_pad_id|>`, `<|reserved_special_token_2|>`,
  `<|start_header_id|>`, `<|end_header_id|>`, `<|eom_id|>`, `<|eot_id|>`, `<|python_tag|>`, then
  `<|reserved_special_token_3|>`..`_247|>`), and the post-processor of that tokenizer.json:
  Sequence[ByteLevel(trim_offsets=False), TemplateProcessing("<|begin_of_text|> $A")].
* qwen: `TikTokenConverter(qwen.tiktoken, pattern=<Qwen2 regex>)`, normalizer NFC (as Qwen2's
  tokenizer.json), and Qwen2.5's 22 added tokens from id 151643 (`<|endoftext|>`, `<|im_start|>`,
  `<|im_end|>`, ... `<|file_sep|>`; `<tool_call>` and `</tool_call>` are added but not special).
  No BOS.
* gpt2: `TikTokenConverter(gpt2.tiktoken, pattern=<GPT-2 regex>)` with `<|endoftext|>` = 50256
  special. No BOS.
* sentencepiece-gguf: a GGUF (tokenizer.ggml.model = "llama") holding mistral-v1's pieces, scores
  and types, loaded with `AutoTokenizer.from_pretrained(dir, gguf_file=...)` (merges generated from
  the scores; control pieces special). The Swift test writes the same GGUF itself.
* mistral-v1 / mistral-v3: transformers' `LlamaTokenizer.from_pretrained(dir)` on a folder holding
  only the `.model` file as `tokenizer.model` (SentencePieceExtractor + generate_merges; Metaspace
  prepend_scheme "first", byte fallback; control pieces become special added tokens), with the
  post-processor set to TemplateProcessing("<s> $A") as Mistral's tokenizer.json has (the
  converted one adds no BOS by default).
"""
import json
import os
import shutil
import sys
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, LlamaTokenizer
from transformers.convert_slow_tokenizer import TikTokenConverter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "tokenizers")
OUT = os.path.join(ROOT, "Tests", "LoftTokenizersTests", "Fixtures", "tokenizers")
GGUF = os.environ.get("LOFT_TEST_MODEL", os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"))

LLAMA3_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

LLAMA3_SPECIALS = (["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
                   + [f"<|reserved_special_token_{i}|>" for i in range(3, 248)])
QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
              "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
              "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
              "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
              "<|repo_name|>", "<|file_sep|>"]
QWEN_NOT_SPECIAL = {"<tool_call>", "</tool_call>"}


def corpus():
    s = [
        "Hello world", "Hello, world!", "hello world ", " leading space", "  two leading spaces",
        "trailing spaces   ", "tabs\tin\tthe\ttext", "\ttab first", "line one\nline two", "\n\nnewlines first",
        "ends with newline\n", "crlf\r\nline\r\n", "mixed \t \n whitespace \n\n  ", "   ", "\n", "\t", " ", "",
        "a", "I", "I'm", "I'M", "you're", "YOU'RE", "we've", "WE'VE", "they'll", "THEY'LL", "he'd", "HE'D",
        "it's", "IT'S", "don't", "DON'T", "can't stop won't stop", "'s 't 're 've 'm 'll 'd", "''s", "'hello'",
        "\"quoted\"", "rock 'n' roll", "O'Neil's dog's bone",
        "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "CamelCaseIdentifier",
        "snake_case_identifier", "kebab-case-word", "x = 1 + 2 * 3", "def f(x):\n    return x ** 2\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "if a != b && c >= d || !e:",
        "#include <stdio.h>\nint main() { printf(\"%d\\n\", 42); }", "let xs = [1, 2, 3].map { $0 * 2 }",
        "SELECT * FROM users WHERE id = 10;", "<div class=\"a\">text</div>", "{\"key\": [1, 2.5, null, true]}",
        "path/to/file.txt", "C:\\Windows\\System32", "~/.config/loft.toml", "a--b---c----d", "....", "!!!???",
        "...and then", "e.g. i.e. etc.", "$100.00", "€50", "£3.14", "¥1000", "50%", "#hashtag", "@mention",
        "https://example.com/path?query=1&x=y#frag", "http://www.test.org", "user@example.com",
        "ftp://files.example.net/pub/file.tar.gz",
        "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789",
        "1234567890", "12345678901234567890", "3.14159", "-42", "+7", "1e10", "0x1F", "1,000,000",
        "2024-01-15", "12:30:45", "v1.2.3", "abc123def", "123abc", "a1b2c3", "99 bottles", " 42", "  7",
        "١٢٣ Arabic digits", "½ ¾ ⅓", "²³", "①②③", "Ⅷ roman",
        "日本語のテキスト", "中文文本测试", "한국어 텍스트", "混合 mixed 文本 text", "東京タワー2024",
        "مرحبا بالعالم", "שלום עולם", "العربية: ١٢٣", "עברית English mixed",
        "café", "cafe\u0301", "naïve résumé", "e\u0301\u0302", "a\u0308\u0323", "Å vs A\u030a", "ﬁ ligature",
        "ｆｕｌｌｗｉｄｔｈ", "Ω Ω", "ǅ", "ſ", "'ſ", "K Kelvin",
        "😀", "😀😃😄", "Hello 😀 world", "👨‍👩‍👧‍👦 family", "👍🏽 thumbs", "🇺🇸🇫🇷 flags", "❤️", "a😀b",
        "🤖🤖🤖 robots", "☃ snowman ☃", "→ ← ↑ ↓", "∑∫∂√∞", "α β γ δ", "Привет, мир!", "Ελληνικά",
        "हिन्दी पाठ", "ไทย ภาษา", "Tiếng Việt có dấu", "Zürich Straße", "\u00a0nbsp\u00a0", "zero\u200bwidth",
        "em\u2003space", "ideographic\u3000space", "line\u2028sep", "\u0085next line", "soft\u00adhyphen",
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "a<|endoftext|>b",
        "text <|endoftext|> more", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>Hi", "<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<s>", "</s>", "<s>Hello</s>",
        "[INST] Hello [/INST]", "[INST]hi[/INST]", "<unk>", "<|reserved_special_token_5|>", "<tool_call>x</tool_call>",
        "<|im_start|><|im_end|>", "< |im_start| >", "<|im_start", "<|fim_prefix|>def", "<repo_name>x",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababab", "      eight spaces", "x        y",
        "\n\n\n\n", " \n \n ", "\t\t\tindent", "a\n\n\nb", "word\t\tword", "end\t", "end \n", " \t",
        "Mr. Smith's car", "U.S.A.", "It's 5 o'clock", "Rock&Roll", "C++ and C#", "a->b", "a=>b", "x<=y",
        "@@ -1,3 +1,4 @@", "// comment", "/* block */", "# Title\n\n- item 1\n- item 2",
        "| a | b |\n|---|---|", "**bold** _italic_ `code`", "<br/>", "&amp; &lt; &gt;",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.",
        "The year 1999 was followed by 2000, then 2001.", "Call 555-123-4567 now!", "Price: $1,234.56 (incl. tax)",
        "α=0.001, β₁=0.9", "H₂O and CO₂", "x² + y² = z²", "∀x ∈ ℝ", "ÀÉÎÕÜ", "ßẞ", "İstanbul ı",
        "\x00null", "bell\x07", "del\x7f", "\x1b[31mred\x1b[0m", "�replacement", "\ufeffbom",
        "very" * 20, "🎉" * 5, "ab" + " " * 17 + "cd", "\u0300 leading mark", "a\u0300\u0300\u0300",
    ]
    s += [str(10 ** k + k) for k in range(2, 16)]
    s += [" ".join(["word"] * k) for k in range(1, 6)]
    s += ["x" + " " * k + "y" for k in range(1, 6)]
    s += ["\n" * k + "z" for k in range(1, 4)]
    s += ["tab\t" * k for k in range(1, 4)]
    return s


def llama3():
    t = TikTokenConverter(vocab_file=os.path.join(SHARED, "llama3.tiktoken"), pattern=LLAMA3_REGEX).converted()
    t.add_special_tokens([AddedToken(x, normalized=False, special=True) for x in LLAMA3_SPECIALS])
    assert t.token_to_id("<|begin_of_text|>") == 128000 and t.token_to_id("<|reserved_special_token_247|>") == 128255
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", 128000)])])
    return t


def qwen():
    t = TikTokenConverter(vocab_file=os.path.join(SHARED, "qwen.tiktoken"), pattern=QWEN2_REGEX).converted()
    t.normalizer = normalizers.NFC()
    t.add_tokens([AddedToken(x, normalized=False, special=x not in QWEN_NOT_SPECIAL) for x in QWEN_ADDED])
    assert t.token_to_id("<|endoftext|>") == 151643 and t.token_to_id("<|file_sep|>") == 151664
    return t


def gpt2():
    t = TikTokenConverter(vocab_file=os.path.join(SHARED, "gpt2.tiktoken"), pattern=GPT2_REGEX).converted()
    t.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
    assert t.token_to_id("<|endoftext|>") == 50256
    return t


def sentencepiece(name):
    d = tempfile.mkdtemp()
    shutil.copy(os.path.join(SHARED, name), os.path.join(d, "tokenizer.model"))
    t = LlamaTokenizer.from_pretrained(d).backend_tokenizer
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return t


def sentencepiece_gguf():
    """A GGUF with tokenizer.ggml.model = "llama" (SentencePiece) built from mistral-v1's pieces,
    scores and types (no tensors), read back with transformers' GGUF tokenizer loader. The Swift
    test writes the same GGUF itself from the .model file (see GGUFSentencePieceTests)."""
    import gguf
    from transformers.convert_slow_tokenizer import import_protobuf
    m = import_protobuf().ModelProto()
    m.ParseFromString(open(os.path.join(SHARED, "mistral-v1.sentencepiece.model"), "rb").read())
    d = tempfile.mkdtemp()
    path = os.path.join(d, "sp.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(4096); w.add_embedding_length(64); w.add_block_count(1); w.add_feed_forward_length(128)
    w.add_head_count(4); w.add_head_count_kv(4); w.add_layer_norm_rms_eps(1e-5); w.add_rope_dimension_count(16)
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece.encode("utf-8") for p in m.pieces])
    w.add_token_scores([p.score for p in m.pieces])
    w.add_token_types([p.type for p in m.pieces])
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)
    w.add_add_bos_token(True); w.add_add_eos_token(False)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return AutoTokenizer.from_pretrained(d, gguf_file="sp.gguf").backend_tokenizer


GEMMA3_GGUF = os.environ.get("LOFT_TEST_GEMMA3", os.path.expanduser("~/.cache/loft/models/gemma-3-270m-q4_k_m.gguf"))


def gemma3():
    """Gemma 3 270M's SentencePiece vocabulary (262 144 pieces with scores) from its GGUF
    (tools/fetch-gemma3.sh), as transformers' GGUF loader builds it."""
    d, f = os.path.split(GEMMA3_GGUF)
    return AutoTokenizer.from_pretrained(d, gguf_file=f).backend_tokenizer


def smollm2():
    d, f = os.path.split(GGUF)
    t = AutoTokenizer.from_pretrained(d, gguf_file=f).backend_tokenizer
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return t


def training_text():
    with open(os.path.join(os.path.dirname(SHARED), "datasets", "alpaca_en_demo.json"), encoding="utf-8") as f:
        rows = json.load(f)
    return [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in rows[:300]] + corpus()


def tiny_tokenizers():
    """Small tokenizers trained here with `tokenizers` to cover tokenizer.json features the real
    families above do not use. Their tokenizer.json files are committed (they are small)."""
    text = training_text()
    out = {}

    # A: byte-level with add_prefix_space, NFKC, BOS+EOS template, added tokens with lstrip/rstrip/
    # single_word/normalized flags.
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(text, trainers.BpeTrainer(vocab_size=600, special_tokens=["<bos>", "<eos>", "<pad>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    t.add_special_tokens([AddedToken("[MASK]", lstrip=True, normalized=False), AddedToken("<sep>", rstrip=True, normalized=False)])
    t.add_tokens([AddedToken("cat", single_word=True, normalized=False), AddedToken("<note>", normalized=True),
                  AddedToken("Hello", normalized=False)])
    t.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>",
                                                     special_tokens=[("<bos>", t.token_to_id("<bos>")), ("<eos>", t.token_to_id("<eos>"))])
    out["tiny-bytelevel"] = (t, {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                                 "chat_template": "{% for m in messages %}{{ m['content'] }}<eos>{% endfor %}"})

    # B: Metaspace (prepend always, split) after Digits, Lowercase + Replace normalizers, unk token, Metaspace decoder.
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                               pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    t.train_from_iterator(text[:150], trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", t.token_to_id("<s>"))])
    out["tiny-metaspace"] = (t, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})

    # C: legacy SentencePiece-style normalizers (NFD, Replace, Prepend), no pre-tokenizer, whitespace-split
    # free BPE, Replace/Fuse/Strip decoders.
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Replace(" ", "▁"), normalizers.Prepend("▁")])
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    t.train_from_iterator([x[:200] for x in text[:120]], trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    t.add_special_tokens([AddedToken("</s>", normalized=False)])
    out["tiny-legacy-spm"] = (t, {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"})

    # D-F: the split regexes of GPT-4o/Llama 4 (o200k), Mistral Nemo (Tekken) and Qwen3.5, exactly as
    # transformers spells them, before a byte-level BPE.
    from transformers.integrations.gguf.gguf_tokenizer_mapping import _GPT4O_SPLIT, _TEKKEN_SPLIT
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX as QWEN35_SPLIT
    for name, regex in [("tiny-o200k", _GPT4O_SPLIT), ("tiny-tekken", _TEKKEN_SPLIT), ("tiny-qwen35", QWEN35_SPLIT)]:
        # Trained with no splitting at all, so the merges cross every boundary the regex draws:
        # any difference in where the regex splits shows in the ids.
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        t.decoder = decoders.ByteLevel()
        t.train_from_iterator([x[:300] for x in text], trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|end|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        out[name] = (t, {"eos_token": "<|end|>"})
    return out


def write_cases(name, tok, strings, extra=None):
    cases = []
    for i, s in enumerate(strings):
        e = tok.encode(s, add_special_tokens=True)
        raw = tok.encode(s, add_special_tokens=False)
        case = {"text": s, "ids": e.ids, "ids_no_special": raw.ids,
                "decode": tok.decode(e.ids, skip_special_tokens=False),
                "decode_skip_special": tok.decode(e.ids, skip_special_tokens=True)}
        if i % 7 == 0:
            case["offsets"] = [list(o) for o in raw.offsets]
        cases.append(case)
    path = os.path.join(OUT, name + ".json")
    doc = {"tokenizer": name, "vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
    doc.update(extra or {})
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")
    print(name, len(cases), "cases ->", os.path.relpath(path, ROOT))


def pretokenize_fixture(strings):
    """Where each family's split regex cuts each string, per `tokenizers`' Split(Regex, "isolated")
    (the onig engine), as piece lengths in Unicode scalars: a direct check of Loft's matchers."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import _GPT4O_SPLIT, _TEKKEN_SPLIT
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX as QWEN35_SPLIT
    patterns = {"gpt2": GPT2_REGEX, "llama3": LLAMA3_REGEX, "qwen2": QWEN2_REGEX, "qwen35": QWEN35_SPLIT,
                "o200k": _GPT4O_SPLIT, "tekken": _TEKKEN_SPLIT}
    out = {"strings": strings, "patterns": {}, "lengths": {}}
    for name, regex in patterns.items():
        pre = pre_tokenizers.Split(Regex(regex), behavior="isolated")
        out["patterns"][name] = regex
        out["lengths"][name] = [[len(piece) for piece, _ in pre.pre_tokenize_str(s)] for s in strings]
    path = os.path.join(OUT, "pretokenize.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")
    print("pretokenize", len(strings), "strings ->", os.path.relpath(path, ROOT))


EXTRA_STRINGS = ["CamelCase", "HTTPServer", "iPhone", "McDONALD's", "ǅungla ǈ", "ALLCAPS'RE", "x/y/z\n", "a/\n/b",
                 "ÀÉÎ Öl", "ʰʱ modifier", "一二三abc", "ab\u0301c", "\u0301x", "Ab\u0301", "\u0301\u0301 ab",
                 " \u0301a", "!\u0301", "it'S THEY'LL we'Ve", "'ſ 'K", "A'sB's", "x\r\n\r\n  y", " \n\t z",
                 "a \u3000b", "12345abc", "abc12345", "..\n\n", "Ǆǅǆ", "ᾈᾀ", "ǰ̌", "𝐀𝐁𝐂 math", "ⅰⅱ ⅲ", "'ſx", "'ſt x"]


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = corpus()
    builders = {"smollm2": smollm2, "llama3": llama3, "qwen": qwen, "gpt2": gpt2,
                "mistral-v1": lambda: sentencepiece("mistral-v1.sentencepiece.model"),
                "mistral-v3": lambda: sentencepiece("mistral-v3.sentencepiece.model"),
                "sentencepiece-gguf": sentencepiece_gguf, "gemma3": gemma3}
    only = sys.argv[1:]
    for name, build in builders.items():
        if only and name not in only:
            continue
        tok = build()
        if os.environ.get("LOFT_SAVE_TOKENIZER_JSON"):
            tok.save(os.path.join(os.environ["LOFT_SAVE_TOKENIZER_JSON"], name + ".json"))
        write_cases(name, tok, strings)
    if not only or "pretokenize" in only:
        pretokenize_fixture(EXTRA_STRINGS + strings)
    extra_strings = EXTRA_STRINGS + ["cat", "a cat sat", "concat", "cat_food", "x [MASK] y", "x   [MASK]y", "<sep>   z", "a <note> b",
                     "Hello there", "sayHello", "``quoted``", "ABC Def", "in 2023 and 1999"]
    for name, (tok, config) in tiny_tokenizers().items():
        if only and name not in only:
            continue
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
            json.dump(config, fh, ensure_ascii=False, indent=1)
        write_cases(name, Tokenizer.from_file(os.path.join(d, "tokenizer.json")), extra_strings + strings)


if __name__ == "__main__":
    main()
