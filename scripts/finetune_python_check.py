#!/usr/bin/env python3
"""Loads a graph written by bert_finetune in Python's onnxruntime and compares its positive-label
probabilities with what the extension's bert_score returned for the same texts.

    python3 scripts/finetune_python_check.py MODEL.onnx tokenizer.json expected.json [max_length]

expected.json: [[text, probability], ...], e.g. from
    SELECT json_agg(json_build_array(text, bert_score(text, 'my_model'))) FROM ...;
and the graph and tokenizer from persona.bert_model_store (onnx, tokenizer). Needs onnxruntime,
tokenizers and numpy (pip; only for this check, never at run time). Prints the largest
difference; exits 1 above 1e-4.
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main() -> int:
    onnx_path, tok_path, expected_path = sys.argv[1:4]
    max_length = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    expected = json.load(open(expected_path))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(tok_path)
    # tokenizer.json bakes in padding and truncation at 128: override both, as the extension does.
    tok.no_padding()
    tok.enable_truncation(max_length)
    worst = 0.0
    for text, want in expected:
        e = tok.encode(text)
        feed = {
            "input_ids": np.array([e.ids], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids], dtype=np.int64),
        }
        logits = sess.run(["logits"], feed)[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        worst = max(worst, abs(float(p[1]) - want))
    print(
        f"onnxruntime {ort.__version__}: inputs {[i.name for i in sess.get_inputs()]}, "
        f"outputs {[o.name for o in sess.get_outputs()]}; {len(expected)} texts, "
        f"max |P(python) - P(bert_score)| = {worst:.2e}"
    )
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
