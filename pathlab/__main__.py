"""`python -m pathlab [ENTRY] [overrides]`: ENTRY is one of pathlab's commands (the table in
pathlab/entry/table.py: train, eval, predict, export, ...); without one
it trains (`python -m pathlab experiment=fast_cpu`). `python -m pathlab` alone, or with --help,
prints the overview of every entry point (conf/hydra/help/pathlab.yaml): a bare command started
a default run that downloads PathMNIST, where a newcomer expected to be told what there is."""

import runpy
import sys

from pathlab.entry import table


def main() -> None:
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    commands = table.by_name()
    name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in commands else "train"
    if len(sys.argv) > 1 and sys.argv[1] == name:
        del sys.argv[1]
    # run the entry module as `python -m pathlab.<name>` would (Hydra names the job after it)
    runpy.run_module(commands[name].module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
