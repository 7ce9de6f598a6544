"""Tiny random-weight text models (see :mod:`fmgate._local.tiny`).

``make("llama", path)`` trains a small tokenizer on a fixed English text, builds a
two-layer model of the named architecture with seeded random weights and saves both with
``save_pretrained``, so the folder loads with the ``Auto*`` classes exactly like a Hub download.
Nothing touches the network, and the same architecture gives byte-identical files each time.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .tools import HERMES_TEMPLATE

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["ARCHES", "make", "make_tiny_gguf"]

TokenizerKind = Literal["causal", "wordpiece", "roberta"]

# BERT's order: [PAD] is id 0, as BertConfig's default pad_token_id expects.
_WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# One fixed seed: the weights depend on nothing but the architecture.
_SEED = 1234

# Written for this module (no licence questions); varied enough for a vocabulary of a few hundred.
_CORPUS = """\
The small cat sat by the window and watched the rain fall on the quiet street. A kitten played
with a ball of red wool while the old dog slept near the warm fire. Every morning the baker opens
her shop at six o'clock, and the smell of fresh bread fills the whole town. Children walk to school
along the river, counting the boats and the birds that rest on the water.
Language models read text as tokens. A tokenizer splits each word into pieces that appear often in
the training data, so common words become one token and rare words become several. The model then
predicts the next token, one step at a time, until it writes an end of sequence token or reaches
the maximum length that the user asked for.
Running a model on your own computer keeps your data on the machine. Calling a service over the
network is often faster to start, but every request leaves the building and costs money per token.
Engineers compare the two by measuring latency, throughput, memory, energy and the price of each
answer. A fair comparison uses the same prompts, the same settings and many repeated calls.
The company reported revenue of twelve million dollars for the third quarter, an increase of eight
percent over last year. Costs rose more slowly than sales, and the board approved a new budget for
research, hiring and better tools. Analysts expect growth to continue next year.
In the garden there are apples, pears, plums and cherries. The farmer waters the trees in summer and
picks the fruit in autumn. Bees move from flower to flower, and a robin sings from the tall fence.
What is the capital of France? Paris is the capital of France. How many days are there in a week?
There are seven days in a week. Please answer briefly and politely. Thank you for your help!
Write a short story about a brave mouse who crossed a great mountain to find her family. She
carried a tiny bag of seeds, a map drawn on a leaf, and a song her mother taught her long ago.
Numbers such as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100 and 2024 appear in ordinary writing.
Symbols too: commas, full stops; colons: question marks? exclamation marks! quotes "like this",
brackets (like these), hyphens - dashes, slashes / and the at sign @ in an email address.
"""

# The roles transformers gives each special token, per tokenizer kind.
_SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "causal": dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
    "wordpiece": dict(
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        unk_token="[UNK]",
    ),
    "roberta": dict(
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        mask_token="<mask>",
        unk_token="<unk>",
    ),
}

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class _Arch:
    model_type: str
    tokenizer: TokenizerKind
    context: int  # tokens the tokenizer accepts (model_max_length)
    config: dict[str, Any] = field(default_factory=dict)
    # names of a sequence-classification head's classes; none: no such head
    labels: tuple[str, ...] = ()
    # a causal model's chat template, and tokens added to its vocabulary (not special: they
    # stay in decoded text, as Qwen 2.5's <tool_call> does)
    template: str = _CHAT_TEMPLATE
    added: tuple[str, ...] = ()

    @property
    def causal(self) -> bool:
        return self.tokenizer == "causal"


# Dimensions are tiny so CPU generation takes milliseconds; positions are real-sized (>= 512)
# so prompt-length and context-window logic behaves as with a real model.
_ARCHES: dict[str, _Arch] = {
    "llama": _Arch(
        "llama",
        "causal",
        2048,
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
    ),
    "gpt_neox": _Arch(
        "gpt_neox",
        "causal",
        2048,
        dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=2048,
        ),
    ),
    # GPT-2 ties its output head to the input embeddings: the file holds one copy.
    "gpt2": _Arch("gpt2", "causal", 1024, dict(n_embd=64, n_layer=2, n_head=4, n_positions=1024)),
    "bert": _Arch(
        "bert",
        "wordpiece",
        512,
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    ),
    "distilbert": _Arch(
        "distilbert", "wordpiece", 512, dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128)
    ),
    # RoBERTa numbers positions from pad_token_id + 1, so 512 tokens need 514 position slots.
    "roberta": _Arch(
        "roberta",
        "roberta",
        512,
        dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=514,
            type_vocab_size=1,
        ),
    ),
    "mobilebert": _Arch(
        "mobilebert",
        "wordpiece",
        512,
        dict(
            hidden_size=64,
            embedding_size=32,
            intra_bottleneck_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_feedforward_networks=2,
        ),
    ),
    # all-MiniLM-L6-v2 is a BERT with small dimensions; this one is smaller still.
    "minilm": _Arch(
        "bert",
        "wordpiece",
        512,
        dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96),
    ),
}

# The encoders with a sequence-classification head of three named classes, as a sentiment model.
_ARCHES |= {
    f"{name}-classifier": replace(_ARCHES[name], labels=("negative", "neutral", "positive"))
    for name in ("bert", "distilbert", "roberta", "mobilebert")
}

# Chat models whose template shows tools and reads calls back in the Hermes/Qwen format
# (<tool_call>{"name": ..., "arguments": ...}</tool_call>): tool calling and structured output
# run on them offline.
_TOOL_TOKENS = ("<tool_call>", "</tool_call>")
_ARCHES["llama-tools"] = replace(_ARCHES["llama"], template=HERMES_TEMPLATE, added=_TOOL_TOKENS)
# Qwen 2 takes Llama's dimensions under its own model type (its attention adds q/k/v biases)
_ARCHES["qwen2-tools"] = replace(_ARCHES["llama-tools"], model_type="qwen2")

ARCHES: tuple[str, ...] = tuple(_ARCHES)


def make(arch: str, path: Path) -> Path:
    """Build the tiny text model ``arch`` into ``path`` (``make_tiny_model`` documents them)."""
    spec = _ARCHES[arch]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _wrap_tokenizer(spec)
    model = _build_model(spec, tokenizer)
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(_model_card(arch), encoding="utf-8")
    return out


def _transformers() -> Any:
    """transformers as ``Any``: it ships ``py.typed`` but leaves many calls unannotated, which
    strict mypy rejects at every call site."""
    import transformers

    return transformers


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """A "Writing model shards" bar for a 1 MB file is noise in a test log."""
    logging = _transformers().utils.logging
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _build_model(spec: _Arch, tokenizer: Any) -> Any:
    import torch

    tf = _transformers()
    ids = _special_ids(spec, tokenizer)
    config = tf.AutoConfig.for_model(
        spec.model_type, vocab_size=len(tokenizer), **ids, **spec.config, **_label_maps(spec)
    )
    auto = _auto_class(spec)
    # fork_rng: seeding must not disturb the caller's own random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = auto.from_config(config)
    if spec.causal:
        # Stop on either the plain end of text or the end of a chat turn, as chat models do.
        eos = [ids["eos_token_id"], tokenizer.convert_tokens_to_ids("<|im_end|>")]
        model.generation_config = tf.GenerationConfig(
            bos_token_id=ids["bos_token_id"], eos_token_id=eos, pad_token_id=ids["pad_token_id"]
        )
    return model.eval()


def _label_maps(spec: _Arch) -> dict[str, Any]:
    if not spec.labels:
        return {}
    return {
        "id2label": dict(enumerate(spec.labels)),
        "label2id": {label: i for i, label in enumerate(spec.labels)},
    }


def _auto_class(spec: _Arch) -> Any:
    tf = _transformers()
    if spec.labels:
        return tf.AutoModelForSequenceClassification
    return tf.AutoModelForCausalLM if spec.causal else tf.AutoModel


def _special_ids(spec: _Arch, tokenizer: Any) -> dict[str, int]:
    ids = {"pad_token_id": tokenizer.pad_token_id}
    if spec.tokenizer != "wordpiece":  # BERT-likes' configs carry only the pad id
        ids |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    return ids


def _wrap_tokenizer(spec: _Arch) -> Any:
    extra = {"chat_template": spec.template} if spec.causal else {}
    tokenizer = _transformers().PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(spec.tokenizer),
        model_max_length=spec.context,
        **_SPECIAL_TOKENS[spec.tokenizer],
        **extra,
    )
    if spec.added:
        tokenizer.add_tokens(list(spec.added))
    return tokenizer


def _train_tokenizer(kind: TokenizerKind) -> Tokenizer:
    if kind == "causal":
        return _train_byte_bpe(["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"])
    if kind == "roberta":
        tok = _train_byte_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        from tokenizers.processors import RobertaProcessing

        tok.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
        return tok
    return _train_wordpiece()


def _train_byte_bpe(specials: list[str]) -> Tokenizer:
    """Byte-level BPE as GPT-2, Llama 3 and RoBERTa use: any text encodes, nothing is unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return tok


def _train_wordpiece() -> Tokenizer:
    """Lower-cased WordPiece with [CLS] ... [SEP] framing, as bert-base-uncased."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(
        models.WordPiece(_wordpiece_vocab(normalizer, pre_tokenizer), unk_token="[UNK]")
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tok


def _wordpiece_vocab(normalizer: Any, pre_tokenizer: Any) -> dict[str, int]:
    """Specials, every character (word-initial and ``##`` continuation) and every corpus word.

    Built here rather than by ``WordPieceTrainer``, whose choice among equally frequent pieces
    changes from run to run; this vocabulary depends on the corpus alone. Unseen words made of
    the corpus's characters still encode, character by character.
    """
    words: Counter[str] = Counter()
    for line in _CORPUS.splitlines():
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for w in words for c in w})
    by_frequency = sorted(words, key=lambda w: (-words[w], w))
    tokens = [*_WORDPIECE_SPECIALS, *chars, *(f"##{c}" for c in chars), *by_frequency]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def _model_card(arch: str) -> str:
    return (
        "---\n"
        "license: apache-2.0\n"
        "library_name: transformers\n"
        "tags:\n- fmgate-tiny\n- random-weights\n"
        "---\n\n"
        f"# tiny-{arch}\n\n"
        "The weights are random: made by `fmgate.testing.make_tiny_model` for tests and examples.\n"
        "Its outputs are meaningless; its shapes, tokenizer and files are those of a real model.\n"
    )


def make_tiny_gguf(path: str | os.PathLike[str]) -> Path:
    """The tiny ``llama`` written as a GGUF file at ``path``, as llama.cpp's converter writes one.

    Matrices are quantized to Q8_0 (norms stay float32), so the file is a quantized GGUF with
    its tokenizer and chat template in the header: the ``.gguf`` path of the transformers
    backend runs on it in well under a second. Needs the ``local`` and ``gguf`` extras.
    """
    import tempfile

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        _write_gguf(make("llama", Path(folder)), out)
    return out


def _write_gguf(folder: Path, out: Path) -> None:
    import json

    import gguf

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    writer = gguf.GGUFWriter(str(out), "llama")
    _gguf_header(writer, config)
    _gguf_tokenizer(writer, folder, config)
    _gguf_tensors(writer, folder, config)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _gguf_header(writer: Any, config: dict[str, Any]) -> None:
    import gguf

    heads = config["num_attention_heads"]
    writer.add_name("tiny-llama")
    writer.add_license("apache-2.0")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)


def _gguf_tokenizer(writer: Any, folder: Path, config: dict[str, Any]) -> None:
    """The byte-level BPE as llama.cpp's ``gpt2`` tokenizer model: tokens by id, merges."""
    import json

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    ids = {**spec["model"]["vocab"], **added}
    tokens = sorted(ids, key=ids.__getitem__)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in added else 1 for t in tokens])  # 3: control
    merges = spec["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_chat_template((folder / "chat_template.jinja").read_text(encoding="utf-8"))


def _gguf_tensors(writer: Any, folder: Path, config: dict[str, Any]) -> None:
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, array in load_file(folder / "model.safetensors").items():
        base, _, suffix = name.rpartition(".")
        target = f"{names.get_name(base)}.{suffix}"
        data = _llama_cpp_order(target, array.astype(np.float32), config)
        if data.ndim == 2:
            writer.add_tensor(target, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(target, data)


def _llama_cpp_order(name: str, weights: Any, config: dict[str, Any]) -> Any:
    """llama.cpp stores Q and K rows interleaved for its rotary embedding; transformers undoes
    this on load, so the file must have it done."""
    if ".attn_q." in name:
        heads = config["num_attention_heads"]
    elif ".attn_k." in name:
        heads = config["num_key_value_heads"]
    else:
        return weights
    shape = weights.shape
    return (
        weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )
