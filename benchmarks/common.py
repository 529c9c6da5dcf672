"""Shared pieces of the benchmarks: data paths, tables, resource use, child processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def data_dir(flag_value: str | None) -> pathlib.Path:
    """`--data_dir`, else `$TFFT_DATA_DIR`, else `../shared/data` beside the repository."""
    path = pathlib.Path(flag_value or os.environ.get("TFFT_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "all_minilm_l6_v2" / "model.safetensors").is_file():
        raise SystemExit(f"No all_minilm_l6_v2 weights under {path}: pass --data_dir or set TFFT_DATA_DIR.")
    return path.resolve()


def sst2_overrides(data: pathlib.Path, train_examples: int, output_dir: str) -> list[str]:
    overrides = [
        f"model.backbone={data / 'all_minilm_l6_v2'}",
        f"data.train={data / 'sst2' / 'train.tsv'}",
        f"data.validation={data / 'sst2' / 'dev.tsv'}",
        f"output_dir={output_dir}",
        "train.overwrite_output_dir=true",
        "export.enabled=false",
    ]
    if train_examples:
        overrides.append(f"data.max_train_examples={train_examples}")
    return overrides


def freeze_like_tfft(model, model_config) -> int:
    """Freezes a Hugging Face (PyTorch) model's weights as `model_config` freezes tfft's; returns the trainable count.

    `freeze_layers: N` freezes the embeddings (unless `freeze_embeddings` is
    false) and the lowest N encoder layers; -1 freezes the whole encoder. The
    heads (and the pooler) train on both sides, so both peers train the same
    weights.
    """
    base = model.base_model
    frozen = []
    if model_config.freeze_layers == -1:
        frozen.append(base)
    else:
        if model_config.freeze_embeddings:
            frozen.append(base.embeddings)
        frozen.extend(base.encoder.layer[: model_config.freeze_layers])
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def predict_in_order(trainer, rows):
    """`trainer.predict(rows)`, its rows in `rows`' order.

    transformers 4.57 length-groups `predict()` too when the Trainer was made
    with `group_by_length=True` (`Trainer._get_eval_sampler`), which returns
    the predictions in another order than the rows'; scored against the rows'
    labels, they look like chance.
    """
    trainer.args.group_by_length = False
    return trainer.predict(rows)


def train_final_weights(config, callbacks=()):
    """Trains `config` as the Trainer peers train, then scores its `data.validation` once: `(result, scores)`.

    The run is given no validation split (one would make it restore its best epoch, chosen on the very split it is
    then scored on); its final weights score the split with the task's own scoring. Runs in a child (imports tfft).
    """
    from tfft import evaluate, train

    scored = config.data.validation
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, validation=""))  # the caller's stays
    result = train.run(config, callbacks=list(callbacks))
    examples = result.task.read(scored, split="validation")
    outputs = evaluate.predict_outputs(result.task, result.model, result.packer, examples, 64)
    return result, result.task.score(examples, outputs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_child_rss_mb() -> float:
    """The peak RSS of the largest child process that has ended (`tfft search`'s trials, `tfft cv`'s runs)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(value):
        return f"{value:,.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, rows: list[dict], columns: list[str], extra: dict | None = None) -> None:
    """Prints the table and writes it, with the rows, to benchmarks/results/<name>.{md,json}."""
    table = markdown_table(rows, columns)
    print(f"\n{name} ({machine()})\n\n{table}\n", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows, **(extra or {})}, indent=2))


def append_result(name: str, record: dict) -> None:
    """Appends one child's result, with the time and machine, to benchmarks/results/<name>.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **record}
    with open(RESULTS / f"{name}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def mean_and_std(values: list[float]) -> str:
    """`"mean ± std"` to 4 places: the sample standard deviation (n - 1), 0 for a single value."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def ratio(peer_seconds: float, tfft_seconds: float) -> str:
    """`peer_seconds / tfft_seconds` as `1.23x`; `n/a` when tfft timed no steady step (a run of 3 steps or fewer)."""
    return f"{peer_seconds / tfft_seconds:.2f}x" if tfft_seconds else "n/a"


def speed_up(tfft: dict, peer: dict) -> str:
    """tfft's training examples per second over the peer's, from children's `examples` and `seconds`."""
    return f"{(tfft['examples'] / tfft['seconds']) / (peer['examples'] / peer['seconds']):.2f}x"


def alternating(names, rounds: int):
    """(round, name) for every name in every round, the order reversed in odd rounds: peers measured in turn, so that
    the machine's drift over a run falls on each of them alike."""
    names = list(names)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            yield round_, name


def interleaved_ms(functions: dict, calls: int, rounds: int) -> dict:
    """Each of `functions` (traced already) called `calls` times per round, in `alternating` rounds: name -> its mean
    milliseconds per call in each round."""
    times = {name: [] for name in functions}
    for _, name in alternating(functions, rounds):
        start = time.perf_counter()
        for _ in range(calls):
            functions[name]()
        times[name].append(1000 * (time.perf_counter() - start) / calls)
    return times


#: peer -> what it adds to the environment of its process (`run_child`'s `env`), for every benchmark that has it.
#: `tfft_eigen`: TensorFlow's own kernels, which on an x86 CPU without AVX-512's newer extensions are Eigen's, as
#: before tfft turned oneDNN's on there (`tfft/__init__.py`).
PEER_ENV = {"tfft_eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"}}


def run_child(module_code: str, *args: str, timeout: int = 3600, env: dict[str, str] | None = None) -> dict:
    """Runs one measurement in a fresh process (own peak RSS), `env` added to ours; returns the JSON it prints last."""
    path = os.pathsep.join(filter(None, [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", module_code, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def worktrees(commits: dict[str, str], prefix: str):
    """Checks each commit (name -> git revision) out in a temporary git worktree; yields (folder, name -> tree).

    The worktrees, and the temporary folder that holds them, are removed on the way out.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        trees = {}
        try:
            for name, revision in commits.items():
                trees[name] = f"{work}/{name}"
                subprocess.run(["git", "worktree", "add", "--detach", trees[name], revision], cwd=REPO, check=True)
            yield work, trees
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=REPO, check=False)


def run_in_tree(tree: str, module_code: str, *args: str, timeout: int = 3600) -> dict:
    """`run_child` with worktree `tree`'s tfft imported first; the child fails if another tfft was imported."""
    head = (f"import sys; sys.path.insert(0, {tree!r})\nimport tfft\n"
            f"assert tfft.__file__.startswith({tree!r}), f'imported {{tfft.__file__}}, not the worktree\\'s tfft'\n")
    return run_child(head + module_code, *args, timeout=timeout)


def profiled_kernels(logdir: str):
    """`(op name, op type, seconds)` of every TensorFlow CPU kernel that `tf.profiler` recorded under `logdir`."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(pathlib.Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id]
                if ":" not in name or name.endswith(":Process") or "__inference" in name:
                    continue
                op, kind = name.rsplit(":", 1)
                yield op, kind, event.duration_ps / 1e12
