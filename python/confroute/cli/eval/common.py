"""What the eval actions share: where a table comes from (`eval replay`, `eval guarantee`),
and the samples eval build kept, in draw order (`eval prefix`, `eval adaptive`)."""
from __future__ import annotations

import os


def add_table_source(p, table_help: str) -> None:
    """--benchmark (a recorded table in --data) or --table, --data and --split."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", choices=["gsm8k", "mmlu", "mt-bench"],
                     help="a benchmark in the --data folder")
    src.add_argument("--table", help=table_help)
    p.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"),
                   help="folder laid out like shared/data (default: $CONFROUTE_DATA)")
    p.add_argument("--split", default="dev", help="file suffix of the split (default: dev)")


def _draws(args, table):
    """The table's rows' per-sample draws, in the table's row order."""
    from confroute.eval.prefix import checkpoint_records, draws_of

    ck = args.checkpoint or table.meta.get("checkpoint")
    if not ck:
        raise ValueError(f"{args.table}: the table's meta names no checkpoint: give "
                         f"--checkpoint")
    if not args.checkpoint and not os.path.exists(ck):
        ck = os.path.join(os.path.dirname(os.path.abspath(args.table)), ck)
    if not os.path.exists(ck):
        raise ValueError(f"checkpoint not found: {ck}")
    recs = {r.id: r for r in checkpoint_records(ck, table.meta.get("signals_from"))}
    missing = [i for i in table.ids if i not in recs]
    if missing or not table.ids:
        raise ValueError(f"{ck}: no record of {len(missing) or 'any'} of the table's rows "
                         f"(first: {missing[0] if missing else None!r})")
    return draws_of([recs[i] for i in table.ids])
