"""tfft's extractive QA against the Hugging Face Trainer's `run_qa` recipe, one run, same machine.

Data: the official SQuAD v1.1 dev set (`squad_v1_1/dev-v1.1.json.zip`), split
by paragraph as `../shared/data/README.md` suggests: XQuAD-en's 240 paragraphs
(1,190 questions) are the evaluation set, the other 1,827 paragraphs (9,380
questions) the training set. `--train_questions` keeps the first N training
questions (by paragraph order) when time is short.

Both peers: all-MiniLM-L6-v2, every weight trained, the same epochs, batch
size, learning rate, warmup, weight decay, sequence cap (384), `doc_stride`
(128), `max_answer_length` (30) and 20-best search. The Trainer runs twice. At
`run_qa`'s defaults: `AutoModelForQuestionAnswering`, the fast tokenizer with
`truncation="only_second"`, `return_overflowing_tokens` and offsets, windows
without the answer labelled `[CLS]`, padding to the cap (`run_qa`'s default
`pad_to_max_length`), and `postprocess_qa_predictions` (the best of the top-20
starts x top-20 ends of every window). At its best (`hf_trainer_best`): the
same, but the training windows padded per batch (`--pad_to_max_length False`,
`DataCollatorWithPadding`) and batched by length (`group_by_length=True`).
Both are scored by the same code (`tfft.metrics.squad_metrics`, tested equal
to the official v1.1 script).

    python benchmarks/qa_vs_trainer.py                          # both peers, full split
    python benchmarks/qa_vs_trainer.py --train_questions=3000 --epochs=1
    python benchmarks/qa_vs_trainer.py --epochs=1 --seeds=1,2    # seed spread: each seed, tfft then the Trainer

`--dev` tunes without touching XQuAD: it holds out every fifth training paragraph as a dev set (1,865
questions) and trains on the other 7,515, with XQuAD's paragraphs left out entirely. `--set` adds config overrides
for tfft only (the Trainer keeps `run_qa`'s recipe), e.g. `--set=train.adam_epsilon=1e-8`:

    python benchmarks/qa_vs_trainer.py --dev --peers=tfft --seeds=0,1 --set=train.adam_epsilon=1e-8
    python benchmarks/qa_vs_trainer.py --dev --peers=tfft --seeds=0,1 --set=train.megabatch=4
    python benchmarks/qa_vs_trainer.py --dev --peers=tfft --seeds=0,1 --set=train.group_by_length=false   # random batches

`--seeds` sets `train.seed` for tfft and `TrainingArguments.seed` for the Trainer (weights of the head,
data order, dropout). Each child's result is appended to `benchmarks/results/qa_vs_trainer.jsonl` as it
finishes, so a long run that is cut off keeps the seeds it completed.

The Trainer needs PyTorch: `pip install torch==2.13.0` (the CPU wheel) and `accelerate`.
"""

from __future__ import annotations

import json
import pathlib
import zipfile

import numpy as np
from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and squad_v1_1/.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "hf_trainer_best", "hf_trainer"], "Peers to run, in this order.")
_EPOCHS = flags.DEFINE_integer("epochs", 0, "Epochs (0: the config's).")
_TRAIN_QUESTIONS = flags.DEFINE_integer("train_questions", 0, "Use the first N training questions (0: all 9,380).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; for each, every peer in --peers order.")
_DEV = flags.DEFINE_bool("dev", False, "Evaluate on every fifth training paragraph, not XQuAD (for tuning).")
_SET = flags.DEFINE_multi_string("set", [], "Config overrides for tfft only, `section.key=value`.")
_SPLIT_DIR = pathlib.Path("runs/squad_split")


def write_split(data: pathlib.Path, train_questions: int, dev_split: bool = False) -> tuple[int, int]:
    """Writes `runs/squad_split/{train,eval}.json`: SQuAD v1.1 dev without / with XQuAD's paragraphs.

    With `dev_split`, XQuAD's paragraphs are left out and every fifth other paragraph is evaluated instead.
    """
    with zipfile.ZipFile(data / "squad_v1_1" / "dev-v1.1.json.zip") as archive:
        squad = json.loads(archive.read("dev-v1.1.json"))
    xquad = json.loads((data / "squad_v1_1" / "xquad.en.json").read_text(encoding="utf-8"))
    held_out = {qa["id"] for article in xquad["data"] for p in article["paragraphs"] for qa in p["qas"]}
    train, evaluation, kept, others = [], [], 0, 0
    for article in squad["data"]:
        train_paragraphs, eval_paragraphs = [], []
        for paragraph in article["paragraphs"]:
            if any(qa["id"] in held_out for qa in paragraph["qas"]):
                evaluated = not dev_split
                if not evaluated:
                    continue
            else:
                others += 1
                evaluated = dev_split and others % 5 == 0
            if evaluated:
                eval_paragraphs.append(paragraph)  # with all of SQuAD's answers per question
            elif not train_questions or kept < train_questions:
                train_paragraphs.append(paragraph)
                kept += len(paragraph["qas"])
        train.append({"title": article["title"], "paragraphs": train_paragraphs})
        evaluation.append({"title": article["title"], "paragraphs": eval_paragraphs})
    _SPLIT_DIR.mkdir(parents=True, exist_ok=True)
    for name, articles in (("train", train), ("eval", evaluation)):
        (_SPLIT_DIR / f"{name}.json").write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    count = lambda articles: sum(len(p["qas"]) for a in articles for p in a["paragraphs"])  # noqa: E731
    return count(train), count(evaluation)


# Each child prints {"seconds", "examples", "windows", "peak_rss_mb", "answers": {id: text}}.
TFFT = """
import json, sys
from tfft import evaluate, train
from tfft.config import load_config
from common import peak_rss_mb
from timing import StepTimer
config = load_config("configs/squad_minilm.yaml", json.loads(sys.argv[1]))
evaluation, config.data.validation = config.data.validation, ""  # trained like the Trainer: no evaluation during
timer = StepTimer()
result = train.run(config, callbacks=[timer])
task = result.task
examples = task.read(evaluation, split="validation")
outputs = evaluate.predict_outputs(task, result.model, result.packer, examples, 64)
train_examples = task.read(config.data.train, split="train")
print(json.dumps({"seconds": timer.total_seconds, "steps": len(timer.times), "steady_ms": timer.steady_ms,
                  "step_seconds": sum(timer.times[3:]), "examples": len(train_examples) * config.train.epochs,
                  "windows": task.prepare(train_examples, result.packer).elements * config.train.epochs,
                  "peak_rss_mb": peak_rss_mb(),
                  "answers": dict(zip(examples.ids, [a.decode() for a in outputs["answer"]]))}))
"""

HF_TRAINER = """
import collections, json, sys, tempfile, time
import numpy as np, torch
from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments, default_data_collator)
from tfft import tasks
from tfft.config import load_config
from common import freeze_like_tfft, peak_rss_mb, predict_in_order
config = load_config("configs/squad_minilm.yaml", json.loads(sys.argv[1]))
best = sys.argv[2] == "best"  # training windows padded per batch and grouped by length
task, tc, qc = tasks.create(config), config.train, config.task
train, evaluation = task.read(config.data.train, "train"), task.read(config.data.validation, "validation")
path, length, stride = config.model.backbone, config.model.sequence_length, qc.doc_stride
tokenizer = AutoTokenizer.from_pretrained(path)

def windows(examples, padding="max_length"):  # run_qa's prepare_train_features / prepare_validation_features
    return tokenizer([q.lstrip() for q in examples.texts], examples.pairs, truncation="only_second", max_length=length,
                     stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=padding)

enc = windows(train, padding=False if best else "max_length")
rows = []
for i, offsets in enumerate(enc["offset_mapping"]):
    ids, sequence = enc["input_ids"][i], enc.sequence_ids(i)
    answer = train.labels[enc["overflow_to_sample_mapping"][i]]["answers"][0]
    start_char, end_char = answer["answer_start"], answer["answer_start"] + len(answer["text"])
    first = sequence.index(1)
    last = len(sequence) - 1 - sequence[::-1].index(1)
    start = end = 0  # [CLS] when this window does not hold the whole answer
    if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
        start = first
        while start <= last and offsets[start][0] <= start_char:
            start += 1
        start -= 1
        end = last
        while end >= first and offsets[end][1] >= end_char:
            end -= 1
        end += 1
    rows.append({"input_ids": ids, "attention_mask": enc["attention_mask"][i], "token_type_ids": enc["token_type_ids"][i],
                 "start_positions": start, "end_positions": end})

class Steps(TrainerCallback):
    times = []
    def on_step_begin(self, args, state, control, **kw): self._s = time.perf_counter()
    def on_step_end(self, args, state, control, **kw): self.times.append(time.perf_counter() - self._s)

steps = Steps()
model = AutoModelForQuestionAnswering.from_pretrained(path)
freeze_like_tfft(model, config.model)  # the weights tfft trains (every one, with the benchmark's overrides)
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=tc.batch_size,
                         per_device_eval_batch_size=64, num_train_epochs=tc.epochs, learning_rate=tc.learning_rate,
                         warmup_ratio=tc.warmup_ratio, weight_decay=tc.weight_decay, max_grad_norm=tc.clipnorm,
                         lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to=[], seed=tc.seed,
                         use_cpu=True, logging_steps=100, dataloader_num_workers=0, group_by_length=best)
collator = DataCollatorWithPadding(tokenizer) if best else default_data_collator
trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[steps])
result = trainer.train()

enc = windows(evaluation)
eval_rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
              "token_type_ids": enc["token_type_ids"][i]} for i in range(len(enc["input_ids"]))]
start_logits, end_logits = predict_in_order(trainer, eval_rows).predictions
features = collections.defaultdict(list)
for i, example in enumerate(enc["overflow_to_sample_mapping"]):
    features[example].append(i)
answers = {}
for example, context in enumerate(evaluation.pairs):  # run_qa's postprocess_qa_predictions, n_best 20
    best, best_score = "", -np.inf
    for i in features[example]:
        sequence, offsets = enc.sequence_ids(i), enc["offset_mapping"][i]
        starts = np.argsort(start_logits[i])[-1 : -qc.n_best - 1 : -1]
        ends = np.argsort(end_logits[i])[-1 : -qc.n_best - 1 : -1]
        for s in starts:
            for e in ends:
                if sequence[s] != 1 or sequence[e] != 1 or e < s or e - s + 1 > qc.max_answer_length:
                    continue
                score = start_logits[i][s] + end_logits[i][e]
                if score > best_score:
                    best, best_score = context[offsets[s][0] : offsets[e][1]], score
    answers[evaluation.ids[example]] = best
steady = sorted(steps.times[3:]) or [0.0]
print(json.dumps({"seconds": result.metrics["train_runtime"], "steps": len(steps.times),
                  "steady_ms": 1000 * steady[len(steady) // 2], "examples": len(train) * tc.epochs,
                  "windows": len(rows) * tc.epochs, "step_seconds": sum(steps.times[3:]),
                  "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(),
                  "answers": answers}))
"""

#: peer -> (name in the table, child code, its extra argument).
PEERS = {
    "tfft": ("tfft", TFFT, "-"),
    "hf_trainer_best": ("Hugging Face `Trainer`, `run_qa`, dynamic padding + `group_by_length=True`", HF_TRAINER, "best"),
    "hf_trainer": ("Hugging Face `Trainer`, `run_qa` defaults (padding to 384)", HF_TRAINER, "default"),
}


def main(argv):
    del argv
    from tfft import metrics, tasks
    from tfft.config import load_config

    data = common.data_dir(_DATA_DIR.value)
    n_train, n_eval = write_split(data, _TRAIN_QUESTIONS.value, _DEV.value)
    values = [f"model.backbone={data / 'all_minilm_l6_v2'}", "train.overwrite_output_dir=true", "export.enabled=false",
              "output_dir=runs/bench_qa", "model.freeze_embeddings=false"]
    if _EPOCHS.value:
        values.append(f"train.epochs={_EPOCHS.value}")
    config = load_config("configs/squad_minilm.yaml", values)
    split = "dev (every fifth training paragraph)" if _DEV.value else "XQuAD-en"
    print(f"{n_train} training questions, {n_eval} {split} questions, {config.train.epochs} epoch(s), "
          f"tfft overrides: {_SET.value or 'none'}", flush=True)
    evaluation = tasks.create(config).read(config.data.validation, split="validation")
    golds = [[a["text"] for a in label["answers"]] for label in evaluation.labels]
    results, rows = {}, []
    for seed in _SEEDS.value:
        for peer in _PEERS.value:
            extra = _SET.value if peer == "tfft" else []
            out = common.run_child(PEERS[peer][1], json.dumps([*values, f"train.seed={seed}", *extra]),
                                   PEERS[peer][2], timeout=6 * 3600)
            scores = metrics.squad_metrics(golds, [out["answers"][i] for i in evaluation.ids])
            results[peer, seed] = r = {**{k: v for k, v in out.items() if k != "answers"}, **scores}
            common.append_result("qa_vs_trainer", {"peer": peer, "seed": seed, "epochs": config.train.epochs,
                                                   "train_questions": n_train, "split": split, "set": extra, **r})
            print(peer, seed, json.dumps(r), flush=True)
            row = {"peer": PEERS[peer][0], "seed": seed, "EM": round(r["exact_match"], 2), "F1": round(r["f1"], 2),
                   "train questions/s": r["examples"] / r["seconds"], "train windows": r["windows"],
                   "train s": round(r["seconds"], 1), "train-step s": round(r["step_seconds"], 1),
                   "peak RSS MB": round(r["peak_rss_mb"])}
            if peer != "tfft" and ("tfft", seed) in results:
                t = results["tfft", seed]
                row["tfft speed-up"] = common.speed_up(t, r)
                row["tfft speed-up (train steps)"] = common.ratio(r["step_seconds"], t["step_seconds"])
                row["tfft - peer EM / F1"] = f"{t['exact_match'] - r['exact_match']:+.2f} / {t['f1'] - r['f1']:+.2f}"
            rows.append(row)
    if len(_SEEDS.value) > 1:
        for peer in _PEERS.value:
            em = np.array([results[peer, seed]["exact_match"] for seed in _SEEDS.value])
            f1 = np.array([results[peer, seed]["f1"] for seed in _SEEDS.value])
            rows.append({"peer": PEERS[peer][0], "seed": "mean (std)", "EM": f"{em.mean():.2f} ({em.std(ddof=1):.2f})",
                         "F1": f"{f1.mean():.2f} ({f1.std(ddof=1):.2f})"})
    common.report("qa_vs_trainer", rows,
                  ["peer", "seed", "EM", "F1", "train questions/s", "train windows", "train-step s",
                   "tfft speed-up (train steps)", "train s", "tfft speed-up", "peak RSS MB", "tfft - peer EM / F1"],
                  {"raw": {f"{peer} seed {seed}": r for (peer, seed), r in results.items()},
                   "train_questions": n_train, "eval_questions": n_eval, "split": split, "tfft_set": _SET.value,
                   "epochs": config.train.epochs,
                   "sequence_length": config.model.sequence_length, "doc_stride": config.task.doc_stride})


if __name__ == "__main__":
    app.run(main)
