"""How well the bot understands members: the held-out part of the labelled corpus.

    python bench/understanding.py                 # the held-out part: figures only
    python bench/understanding.py --cv 5          # 5-fold cross-validation on the training part,
                                                  # with every training line it got wrong
    python bench/understanding.py --part train    # the training part itself (a sanity check)

Trains the pipeline exactly as the service does at start-up (config.example.toml's [chat],
its FAQ entries and the programme's tiers), then prints accuracy per intent and overall, the
confusion between intents, the share of lines that would have reached a person without the
member asking, and CPU time per message. Goals: ≥ 95% right, hand-overs without asking
≤ 0.5%, ≤ 1 ms CPU per message.

The held-out part is never used to choose anything, so for it only counts are printed, never
its lines: work is guided by ``--cv`` on the training part alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Config, load_config  # noqa: E402
from handlers.understanding.evaluation import Report, cross_validate, evaluate  # noqa: E402
from handlers.understanding.normalise import normalise  # noqa: E402
from handlers.understanding.pipeline import DATA, Understander, read_corpus  # noqa: E402


def _print_report(title: str, report: Report, show_lines: bool) -> None:
    print(f"\n{title}: {report.lines} lines")
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
    if show_lines:
        for text in report.handed_over:
            print(f"  {text}")
    print(f"CPU per message: {report.cpu_per_message * 1e6:.0f} µs")
    if show_lines:
        print("\nwrong:")
        for label, got, text in sorted(report.wrong):
            print(f"  [{label} → {got}] {text}")


def _cross_validation(
    config: Config, rows: Sequence[tuple[str, str]], folds: int, seed: int
) -> Report:
    def train(lines: Sequence[tuple[str, str]]) -> Understander:
        return Understander.from_config(config.chat, config.programme, lines)

    return cross_validate(train, rows, folds, seed)


def main() -> None:
    """Train, evaluate, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("heldout", "train"), default="heldout")
    parser.add_argument(
        "--cv", type=int, metavar="K", help="K-fold cross-validation on the training part"
    )
    parser.add_argument(
        "--seed", type=int, default=17, help="how --cv shuffles the lines into folds"
    )
    parser.add_argument(
        "--wrong", action="store_true", help="list the training lines it got wrong (--part train)"
    )
    parser.add_argument("--config", default=str(ROOT / "config.example.toml"))
    args = parser.parse_args()
    if args.wrong and args.part == "heldout" and args.cv is None:
        parser.error("the held-out part's lines are never listed: use --cv K or --part train")
    config = load_config(args.config, environ={})
    train_rows = read_corpus(DATA / "train.tsv")
    if args.cv is not None:
        report = _cross_validation(config, train_rows, args.cv, args.seed)
        _print_report(f"{args.cv}-fold cross-validation on train", report, show_lines=True)
        return
    started = time.process_time()
    understander = Understander.from_config(config.chat, config.programme)
    trained = time.process_time() - started
    rows = read_corpus(DATA / f"{args.part}.tsv")
    for _ in range(2):  # warm the caches as a running service has them
        evaluate(understander, rows)
    report = evaluate(understander, rows)
    print(f"training: {trained * 1000:.0f} ms CPU on {len(train_rows)} lines")
    _print_report(args.part, report, show_lines=args.part == "train" and args.wrong)
    if args.part == "heldout":
        # Short messages (你好, 谢谢, 我的积分) recur: the figure on the held-out lines whose
        # text is not also a training line says how well new phrasings are understood.
        seen = {normalise(text).text for _, text in train_rows}
        unseen = [row for row in rows if normalise(row[1]).text not in seen]
        novel = evaluate(understander, unseen)
        print(
            f"\nheld-out lines whose normalised text is also a training line: "
            f"{len(rows) - len(unseen)}; on the other {novel.lines}: {novel.accuracy:.1%} right, "
            f"{len(novel.handed_over)} reached a person without asking"
        )


if __name__ == "__main__":
    main()
