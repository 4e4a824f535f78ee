"""`confroute eval report`: the paper's Table 1 (Markdown + PNG) from replay output folders."""
from __future__ import annotations

HELP = "the paper's Table 1 (Markdown + PNG) from replay output folders"


def add_arguments(rp) -> None:
    rp.add_argument("folders", nargs="+", metavar="FOLDER",
                    help="`eval replay --out` folders (one per benchmark/table)")
    rp.add_argument("--out", default=None, help="output folder (default: the first FOLDER)")


def run(args) -> int:
    from confroute.eval.report import write_report

    paths = write_report(args.folders, args.out or args.folders[0])
    print(open(paths["markdown"]).read())
    print(f"wrote {paths['markdown']}, {paths['png']}")
    return 0
