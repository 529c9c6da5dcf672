"""The training split as one object (`tfft.training_data`): in memory and streamed give the run the same things."""

import numpy as np

from conftest import sentiment_rows, write_csv
from tfft import backbones, data, tasks, training_data
from tfft.config import ModelConfig, load_config

ROWS = [(text, f"{word} {word}", label) for (text, label), word in
        zip(sentiment_rows(200, seed=1), ["zyzzyva", "quokka"] * 100, strict=True)]


def _data(tmp_path, streaming: str):
    path = write_csv(tmp_path / "train.csv", ROWS, header=("text", "second", "label"))
    config = load_config(None, [f"data.train={path}", "data.text_pair_column=second", f"data.streaming={streaming}"])
    task = tasks.create(config)
    return task, training_data.read_training_data(task, config)


def test_in_memory_and_streamed_data_give_the_same_labels_texts_and_epoch(tmp_path, tiny_preset):
    task, memory = _data(tmp_path, "false")
    streamed_task, streamed = _data(tmp_path, "true")
    assert isinstance(memory, training_data.InMemory) and isinstance(streamed, training_data.Streamed)
    task.fit_vocabulary(memory.labelled)
    streamed_task.fit_vocabulary(streamed.labelled)
    assert task.label_names == streamed_task.label_names
    assert sorted(set(memory.labelled.labels)) == sorted(streamed.labelled.labels) == ["neg", "pos"]
    assert sorted(memory.sample_texts()) == sorted(streamed.sample_texts())
    source = backbones.resolve(ModelConfig(backbone=str(tiny_preset), sequence_length=16))
    source.prepare(None, None)
    packer = source.packer()
    assert memory.prepare(packer).truncated == 0 and streamed.prepare(packer) is None  # streamed rows are not held
    assert memory.elements == streamed.elements == 200
    batches = [list(d.dataset(packer, data.Batching(50), seed=0, epochs=1).take(4)) for d in (memory, streamed)]
    assert [len(b[1]) for b in batches[0]] == [len(b[1]) for b in batches[1]] == [50] * 4
    counts = [np.bincount(np.concatenate([b[1].numpy() for b in batch]), minlength=2) for batch in batches]
    np.testing.assert_array_equal(counts[0], counts[1])  # one epoch of each holds every row once


def test_a_recipe_learns_words_that_only_the_second_text_holds(tmp_path):
    """Issue 26: the recipe backbones learned their vocabulary from `text` only."""
    for streaming in ("false", "true"):
        _, train = _data(tmp_path, streaming)
        source = backbones.resolve(ModelConfig(backbone="tiny-bert", sequence_length=16))
        source.prepare(train.sample_texts(), None)
        assert {"zyzzyva", "quokka"} <= set(source.vocabulary), streaming
