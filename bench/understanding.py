"""How well the bot understands members: the held-out part of the labelled corpus.

    python bench/understanding.py                 # the held-out part (never used to tune)
    python bench/understanding.py --wrong         # and every line it got wrong
    python bench/understanding.py --part train    # the training part (a sanity check)

Trains the pipeline exactly as the service does at start-up (config.example.toml's [chat],
its FAQ entries and the programme's tiers), then prints accuracy per intent and overall, the
confusion between intents, the share of lines that would have reached a person without the
member asking, and CPU time per message. Goals: ≥ 95% right, hand-overs without asking
≤ 0.5%, ≤ 1 ms CPU per message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_config  # noqa: E402
from handlers.understanding.evaluation import evaluate  # noqa: E402
from handlers.understanding.pipeline import DATA, Understander, read_corpus  # noqa: E402


def main() -> None:
    """Train, evaluate, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("heldout", "train"), default="heldout")
    parser.add_argument("--wrong", action="store_true", help="list the lines it got wrong")
    parser.add_argument("--config", default=str(ROOT / "config.example.toml"))
    args = parser.parse_args()
    config = load_config(args.config, environ={})
    started = time.process_time()
    understander = Understander.from_config(config.chat, config.programme)
    trained = time.process_time() - started
    rows = read_corpus(DATA / f"{args.part}.tsv")
    for _ in range(2):  # warm the caches as a running service has them
        evaluate(understander, rows)
    report = evaluate(understander, rows)
    print(f"training: {trained * 1000:.0f} ms CPU on {len(read_corpus(DATA / 'train.tsv'))} lines")
    print(f"\n{args.part}: {report.lines} lines")
    print(f"{'intent':<16}{'right':>7}{'lines':>7}{'accuracy':>10}")
    for name, (right, total) in report.by_intent.items():
        print(f"{name:<16}{right:>7}{total:>7}{right / total:>10.1%}")
    print(f"{'overall':<16}{report.right:>7}{report.lines:>7}{report.accuracy:>10.1%}")
    print("\nconfusion (label → understood as: lines)")
    for (label, got), count in report.confusion.most_common():
        print(f"  {label} → {got}: {count}")
    print(f"\nasked back instead of answering: {report.clarified} lines")
    print(
        f"reached a person without asking: {len(report.handed_over)} lines "
        f"({report.handover_share:.2%})"
    )
    for text in report.handed_over:
        print(f"  {text}")
    print(f"CPU per message: {report.cpu_per_message * 1e6:.0f} µs")
    if args.wrong:
        print("\nwrong:")
        for label, got, text in report.wrong:
            print(f"  [{label} → {got}] {text}")


if __name__ == "__main__":
    main()
