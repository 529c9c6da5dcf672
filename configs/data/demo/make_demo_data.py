"""Writes the demo data set that `configs/demo.yaml` trains on.

A synthetic review-sentiment task, small enough for 2 CPU cores, learnable
but not trivial: half the sentences are plain ("the plot was dull."), the
rest use negation ("was not great") and contrast ("... but ...",
"although ...") that flip what a bag of words would guess. Counting positive
words scores about 0.65; going past that takes word order. 4% of the labels
are flipped, as in real annotations.

Run from the repository root (the output is deterministic):

    python configs/data/demo/make_demo_data.py
"""

import csv
import pathlib
import random

ASPECTS = [
    "the acting", "the plot", "the soundtrack", "the ending", "the dialogue",
    "the battery", "the screen", "the keyboard", "the delivery", "the price",
    "the service", "the food", "the room", "the staff", "the coffee",
    "the camera", "the design", "the pacing", "the story", "the support",
]
POSITIVE = [
    "great", "wonderful", "excellent", "superb", "delightful", "brilliant",
    "solid", "charming", "fantastic", "lovely", "impressive", "pleasant",
]
NEGATIVE = [
    "awful", "terrible", "dull", "boring", "disappointing", "clumsy",
    "weak", "bland", "poor", "annoying", "mediocre", "frustrating",
]
LABEL_NOISE = 0.04  # Like real annotations: a few labels are wrong (accuracy ceiling ~0.96).
KINDS = ["plain", "negated", "but", "although", "negated_but"]
OPENERS = ["", "", "", "honestly, ", "overall, ", "to be fair, ", "in short, "]


def _adjective(rng, positive):
    return rng.choice(POSITIVE if positive else NEGATIVE)


def _example(rng):
    label = rng.random() < 0.5
    opener = rng.choice(OPENERS)
    a1, a2 = rng.sample(ASPECTS, 2)
    # Plain sentences (half) teach the words; the rest need word order.
    kind = rng.choices(KINDS, weights=[50, 15, 20, 10, 5])[0]
    if kind == "plain":
        text = f"{a1} was {_adjective(rng, label)}."
    elif kind == "negated":
        text = f"{a1} was not {_adjective(rng, not label)}."
    elif kind == "but":
        text = f"{a1} was {_adjective(rng, not label)} but {a2} was {_adjective(rng, label)}."
    elif kind == "although":
        text = f"although {a1} was {_adjective(rng, not label)}, {a2} was {_adjective(rng, label)}."
    else:
        text = f"{a1} was {_adjective(rng, label)} but {a2} was not {_adjective(rng, label)}."
        label = not label
    if rng.random() < LABEL_NOISE:
        label = not label
    return opener + text, "positive" if label else "negative"


def write(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            writer.writerow(_example(rng))


if __name__ == "__main__":
    here = pathlib.Path(__file__).parent
    write(here / "train.csv", 4000, seed=0)
    write(here / "validation.csv", 1000, seed=1)
