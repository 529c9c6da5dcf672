"""Training step time of ModernBERT, DeBERTa-v3 and ELECTRA through tfft against the same models in the Hugging Face Trainer.

No pretrained weights of these families are on this machine, so each model is
built at its published size with random weights by `transformers` (PyTorch) and
saved as a Hugging Face folder that both peers load:

- DeBERTa-v3-small: 6 layers x 768, 12 heads, 3,072 feed-forward, 128,100
  tokens, 256 relative buckets; a SentencePiece vocabulary (8,000 pieces)
  trained on the SST-2 training sentences, with DeBERTa-v3's special ids.
- ModernBERT-base: 22 layers x 768, 12 heads, 1,152-wide GeGLU, 50,368
  tokens, global attention every third layer and a 128-position window
  elsewhere; a byte-level BPE vocabulary (8,000 tokens) trained on the SST-2
  training sentences, with ModernBERT's special tokens.
- ELECTRA-small discriminator: 12 layers x 256, 4 heads, 1,024 feed-forward,
  128-wide embeddings projected to 256; BERT's uncased WordPiece vocabulary
  (all-MiniLM-L6-v2's `vocab.txt`, the one ELECTRA uses).

Each peer trains one epoch on the first `--train_examples` SST-2 sentences,
batch 32, texts padded to the longest in their batch (cap 128), embeddings
frozen on both sides and every encoder layer training (the trainable counts
are printed). The Trainer runs at its defaults (random batches) and at its best
(`group_by_length=True`). `train-step s` is the time inside the training steps
after 3 warm-up steps. Accuracy is not compared: the weights are random.

    python benchmarks/families_speed.py                      # 2,048 sentences, the three families
    python benchmarks/families_speed.py --families=electra_small --rounds=2
    python benchmarks/families_speed.py --families=deberta_v3_small --peers=tfft,hf_trainer_grouped

The Trainer needs PyTorch: `pip install torch==2.13.0` (the CPU wheel).
"""

import csv
import json
import multiprocessing
import pathlib
import shutil

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 2048, "SST-2 training sentences per peer.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Runs of each peer; the order rotates every round.")
_FAMILIES = flags.DEFINE_list("families", ["modernbert_base", "deberta_v3_small", "electra_small"], "Which models.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "hf_trainer_grouped", "hf_trainer"],
                           "Peers: tfft, hf_trainer_grouped (the Trainer at its best), hf_trainer (its defaults).")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/families_speed", "Where the random checkpoints and runs go.")

SIZES = {
    "deberta_v3_small": dict(
        vocab_size=128100, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type="p2c|c2p", layer_norm_eps=1e-7, max_relative_positions=-1,
        position_biased_input=False, type_vocab_size=0,
    ),
    "modernbert_base": dict(
        vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
        max_position_embeddings=8192, global_attn_every_n_layers=3, local_attention=128, global_rope_theta=160000.0,
        local_rope_theta=10000.0,
    ),
    "electra_small": dict(
        vocab_size=30522, embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=512,
    ),
}

TFFT = """
import json, sys
from tfft import train
from tfft.config import load_config
from common import peak_rss_mb
from timing import StepTimer
folder, data, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
overrides = [f"model.backbone={folder}", f"data.train={data}/sst2/train.tsv", "data.validation=",
             f"data.max_train_examples={n}", f"output_dir={out}", "train.overwrite_output_dir=true",
             "export.enabled=false", "model.freeze_layers=0"]
timer = StepTimer()
result = train.run(load_config("configs/sst2_minilm.yaml", overrides), callbacks=[timer])
trainable = sum(int(w.numpy().size) for w in result.model.backbone.trainable_weights)
print(json.dumps({"seconds": timer.total_seconds, "steps": len(timer.times), "steady_ms": timer.steady_ms,
                  "step_seconds": sum(timer.times[3:]), "peak_rss_mb": peak_rss_mb(), "trainable": trainable}))
"""

HF_TRAINER = """
import csv, json, sys, tempfile, time
import pandas as pd, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)
from common import peak_rss_mb
folder, data, n, grouped = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "grouped"
train = pd.read_csv(f"{data}/sst2/train.tsv", sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False)[:n]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
base = model.base_model
# tfft's embedding group: token (and position, segment) embeddings and their norm, ELECTRA's projection, DeBERTa's
# relative-position table and its norm. Every encoder layer trains, as with freeze_layers: 0.
encoder = getattr(base, "encoder", None)
frozen = [base.embeddings, getattr(base, "embeddings_project", None), getattr(encoder, "rel_embeddings", None),
          getattr(encoder, "LayerNorm", None)]
for module in filter(None, frozen):
    for parameter in module.parameters():
        parameter.requires_grad = False
trainable = sum(p.numel() for p in base.parameters() if p.requires_grad)
enc = tokenizer(train["sentence"].tolist(), truncation=True, max_length=128)
rows = [{**{k: v[i] for k, v in enc.items()}, "labels": int(y)} for i, y in enumerate(train["label"])]
class Steps(TrainerCallback):
    times = []
    def on_step_begin(self, args, state, control, **kw): self._s = time.perf_counter()
    def on_step_end(self, args, state, control, **kw): self.times.append(time.perf_counter() - self._s)
steps = Steps()
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32, num_train_epochs=1,
                         learning_rate=2e-4, warmup_ratio=0.1, weight_decay=0.01, lr_scheduler_type="linear",
                         save_strategy="no", report_to=[], seed=0, use_cpu=True, logging_steps=50,
                         dataloader_num_workers=0, group_by_length=grouped)
out = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer),
              callbacks=[steps]).train()
steady = sorted(steps.times[3:]) or [0.0]
print(json.dumps({"seconds": out.metrics["train_runtime"], "steps": len(steps.times),
                  "steady_ms": 1000 * steady[len(steady) // 2], "step_seconds": sum(steps.times[3:]),
                  "peak_rss_mb": peak_rss_mb(), "trainable": trainable, "threads": torch.get_num_threads()}))
"""

PEERS = {
    "tfft": ("tfft (`configs/sst2_minilm.yaml` settings)", TFFT),
    "hf_trainer_grouped": ("Hugging Face `Trainer`, `group_by_length=True`", HF_TRAINER),
    "hf_trainer": ("Hugging Face `Trainer`, defaults (random batches)", HF_TRAINER),
}
flags.register_validator("peers", lambda peers: set(peers) <= set(PEERS), f"--peers: each one of {sorted(PEERS)}")


def sst2_sentences(data: pathlib.Path) -> list[str]:
    with open(data / "sst2" / "train.tsv", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def write_checkpoint(family: str, data: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """A random-weight Hugging Face folder of `family` at its published size, with its tokenizer files."""
    import io

    import sentencepiece
    import torch
    import transformers

    if (folder / "model.safetensors").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if family == "electra_small":
        shutil.copy(data / "all_minilm_l6_v2" / "vocab.txt", folder / "vocab.txt")
        transformers.ElectraTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
        model = transformers.ElectraForPreTraining(transformers.ElectraConfig(**SIZES[family]))
    elif family == "modernbert_base":
        write_bpe_tokenizer(sst2_sentences(data), folder)
        model = transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(
            **SIZES[family], pad_token_id=3, cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2))
    else:
        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sst2_sentences(data)), model_writer=proto, vocab_size=8000, model_type="unigram",
            pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
            unk_piece="[UNK]", minloglevel=2,
        )
        (folder / "spm.model").write_bytes(proto.getvalue())
        transformers.DebertaV2Tokenizer(str(folder / "spm.model")).save_pretrained(folder)
        model = transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(**SIZES[family]))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_bpe_tokenizer(sentences: list[str], folder: pathlib.Path) -> None:
    """A byte-level BPE `tokenizer.json` as ModernBERT's (no prefix space, `[CLS] a [SEP]`), 8,000 tokens."""
    import tokenizers
    import transformers

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator(sentences, tokenizers.trainers.BpeTrainer(
        vocab_size=8000, special_tokens=specials, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]").save_pretrained(folder)


def main(argv):
    del argv
    data, n = common.data_dir(_DATA_DIR.value), _TRAIN_EXAMPLES.value
    work = pathlib.Path(_WORK_DIR.value).resolve()
    rows, raw = [], {}
    for family in _FAMILIES.value:
        folder = work / family
        # In a fresh process: the children would report this one's peak RSS, inherited across fork and exec, as theirs.
        writer = multiprocessing.get_context("spawn").Process(target=write_checkpoint, args=(family, data, folder))
        writer.start()
        writer.join()
        peers = _PEERS.value
        results = {peer: [] for peer in peers}
        for round_index in range(_ROUNDS.value):
            order = peers[round_index % len(peers):] + peers[: round_index % len(peers)]
            for peer in order:
                last = str(work / f"{family}_run") if peer == "tfft" else ("grouped" if "grouped" in peer else "random")
                out = common.run_child(PEERS[peer][1], str(folder), str(data), str(n), last)
                print(family, peer, json.dumps(out), flush=True)
                results[peer].append(out)
        raw[family] = results
        best = {peer: min(runs, key=lambda r: r["step_seconds"]) for peer, runs in results.items()}
        for peer, out in best.items():
            rows.append({
                "model": family, "peer": PEERS[peer][0], "train-step s": round(out["step_seconds"], 1),
                "steady ms/step": out["steady_ms"],
                "tfft speed-up": common.ratio(out["step_seconds"], best["tfft"]["step_seconds"]) if "tfft" in best else "",
                "trainable backbone weights": f"{out['trainable']:,}", "peak RSS MB": round(out["peak_rss_mb"]),
            })
    common.report("families_speed", rows, ["model", "peer", "train-step s", "steady ms/step", "tfft speed-up",
                                           "trainable backbone weights", "peak RSS MB"],
                  {"train_examples": n, "batch_size": 32, "rounds": _ROUNDS.value, "raw": raw})


if __name__ == "__main__":
    app.run(main)
