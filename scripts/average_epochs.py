"""Average the weights of a run's best epochs into one weights file (weight averaging).

The run must have been trained with ``--keep-epochs`` (``OUT/epochs/epoch_NN.pt``). The K
epochs with the best validation F1 (``history.jsonl``) are averaged, parameters and batch-norm
statistics alike; the threshold of the written file is left at 0.5: choose it on validation
with ``scripts/threshold_on_validation.py FILE``. ``weijian train --average-top K`` does the
same at the end of training.

    uv run --frozen python scripts/average_epochs.py RUN_DIR --top K --out FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from change_detection.training import average_epochs, top_epochs
from change_detection.weights import network_kwargs_of, save_weights


def main() -> None:
    """Average the top-K epochs of RUN_DIR into FILE and say which epochs they were."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training output folder (history.jsonl, epochs/)")
    parser.add_argument("--top", type=int, required=True, help="number of epochs averaged")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write")
    args = parser.parse_args()
    if args.top < 1:
        parser.error("--top must be at least 1")
    epochs = top_epochs(args.run / "history.jsonl", args.top)
    model = average_epochs(args.run, epochs)
    first = args.run / "epochs" / f"epoch_{epochs[0] + 1:02d}.pt"
    meta = {**model.metadata, "threshold": 0.5}
    save_weights(args.out, model.net, model.network, meta, network_kwargs_of(first))
    print(f"{args.out}: average of epochs {', '.join(str(e + 1) for e in epochs)}")


if __name__ == "__main__":
    main()
