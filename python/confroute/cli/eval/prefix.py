"""`confroute eval prefix`: add the SE of each prompt's first K samples to an outcome table."""
from __future__ import annotations

import os

from .common import _draws

HELP = ("add the SE of each prompt's first K samples to a table "
        "(signal:<exec|exact>_se_<kind>_n<K>), from the samples eval build kept in draw order")


def add_arguments(pf) -> None:
    pf.add_argument("--table", required=True, help="an outcome table (eval build's --out)")
    pf.add_argument("--samples", type=int, action="append", required=True, metavar="K",
                    help="samples to keep (repeatable)")
    pf.add_argument("--start", type=int, default=0,
                    help="skip this many samples first: another window of the same draws "
                         "(signal names end in _from<START>), to see SE's draw-to-draw noise")
    pf.add_argument("--checkpoint", default=None,
                    help="eval build's checkpoint (default: the one the table's meta names)")
    pf.add_argument("--out", required=True, help="the table with the new signal columns")


def run(args) -> int:
    from confroute.eval.crossfit import with_signal
    from confroute.eval.data import load_table
    from confroute.eval.prefix import prefix_signals

    if os.path.abspath(args.out) == os.path.abspath(args.table):
        raise ValueError("--out must differ from --table (the table you gave is kept)")
    table = load_table(args.table)
    draws = _draws(args, table)
    for k in args.samples:
        for name, values in prefix_signals(draws, k, args.start).items():
            table = with_signal(table, name, values)
            print(f"signal:{name}")
    table.save(args.out)
    print(f"wrote {args.out}")
    return 0
