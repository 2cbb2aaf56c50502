"""`python -m pathlab [ENTRY] [overrides]`: ENTRY is one of pathlab's entry points (train, eval,
predict, export, explore, gradcam, embed, probe, report, summarize, compare, bench); without one
it trains (`python -m pathlab experiment=fast_cpu`). `python -m pathlab` alone, or with --help,
prints the overview of every entry point (conf/hydra/help/pathlab.yaml): a bare command started
a default run that downloads PathMNIST, where a newcomer expected to be told what there is."""

import runpy
import sys

ENTRY_POINTS = (
    "train", "eval", "predict", "export", "explore", "gradcam", "embed", "probe", "report",
    "summarize", "compare", "bench",
)  # fmt: skip


def main() -> None:
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in ENTRY_POINTS else "train"
    if len(sys.argv) > 1 and sys.argv[1] == name:
        del sys.argv[1]
    # run the entry module as `python -m pathlab.<name>` would (Hydra names the job after it)
    runpy.run_module(f"pathlab.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
