"""Quality vs % cloud calls, one line per router, with the weak and strong models as
horizontal lines (the layout of RouteLLM's and the paper's figures). matplotlib is imported
here, on first use, with the Agg backend (no display needed)."""
from __future__ import annotations

import os


def plot_report(report, path, title=None) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = report.table
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    try:
        ax.axhline(report.q_strong, color="black", ls="--", lw=1,
                   label=f"strong: {t.strong} ({report.q_strong:.3g})")
        ax.axhline(report.q_weak, color="grey", ls=":", lw=1.2,
                   label=f"weak: {t.weak} ({report.q_weak:.3g})")
        for r in report.results:
            apgr = r.metrics.get("apgr")
            extra = f" (APGR {apgr:.3f})" if apgr == apgr else ""  # NaN != NaN
            ax.plot(100 * r.curve.share, r.curve.quality, lw=1.6, label=r.label + extra)
        ax.set_xlabel("% calls to the strong (cloud) model")
        ax.set_ylabel("quality" if not t.is_binary else "accuracy")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(title or f"{t.name}: {len(t)} prompts")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        tmp = os.fspath(path) + ".tmp.png"
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return os.fspath(path)
