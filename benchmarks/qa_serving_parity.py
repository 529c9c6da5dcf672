"""The QA export gives the same answers as `tfft evaluate`, on all 1,190 XQuAD evaluation questions.

Run `python benchmarks/qa_vs_trainer.py` first: it trains tfft's model in `runs/bench_qa`. This script exports it
(the next SavedModel version under `saved_models/bench_qa_parity/`), computes the answers in memory with
`tfft.evaluate.predict_outputs` (what `tfft evaluate` scores), then asks the SavedModel for the same questions from a
separate process that imports only TensorFlow and TensorFlow Text, and compares answers, offsets and scores.

    python benchmarks/qa_serving_parity.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app

import common

SERVE = """
import json, sys
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401  (the tokenizer's ops)
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
rows = json.load(open(sys.argv[2]))
out = {"answer": [], "start": [], "end": [], "score": []}
for i in range(0, len(rows["question"]), 32):
    got = signature(question=tf.constant(rows["question"][i:i + 32]), context=tf.constant(rows["context"][i:i + 32]))
    out["answer"] += [a.decode() for a in got["answer"].numpy()]
    for k in ("start", "end", "score"):
        out[k] += got[k].numpy().tolist()
print(json.dumps({**out, "modules": sorted(m for m in ("keras", "keras_hub", "tfft") if m in sys.modules)}))
"""


def main(argv):
    del argv
    from tfft import evaluate, export, metrics
    from tfft.config import load_config
    from tfft.model import load_trained

    config = load_config("runs/bench_qa/config.yaml", ["data.validation=runs/squad_split/eval.json",
                                                        "name=bench_qa_parity", "export.warmup_requests=0"])
    path = export.run(config)
    trained = load_trained(config)
    examples = trained.task.read(config.data.validation, split="validation")
    outputs = evaluate.predict_outputs(trained.task, trained.model, trained.packer, examples, 64)
    expected = [a.decode() for a in outputs["answer"]]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"question": examples.texts, "context": examples.pairs}, f)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", SERVE, str(path), f.name], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    same_answer = sum(a == b for a, b in zip(expected, served["answer"], strict=True))
    same_offsets = sum(int(s) == int(t) and int(e) == int(u) for s, e, t, u in
                       zip(outputs["start"], outputs["end"], served["start"], served["end"], strict=True))
    score_diff = max(abs(float(a) - float(b)) for a, b in zip(outputs["score"], served["score"], strict=True))
    golds = [[a["text"] for a in label["answers"]] for label in examples.labels]
    rows = [{"questions": len(expected), "same answer": same_answer, "same start/end": same_offsets,
             "max |score diff|": f"{score_diff:.2e}", "EM in memory": round(metrics.squad_metrics(golds, expected)["exact_match"], 2),
             "EM served": round(metrics.squad_metrics(golds, served["answer"])["exact_match"], 2),
             "modules in the serving process": ", ".join(served["modules"]) or "none of keras, keras_hub, tfft"}]
    common.report("qa_serving_parity", rows, list(rows[0]), {"export": str(path)})


if __name__ == "__main__":
    app.run(main)
