"""Benchmark helpers: the build in the header, and each group's speed-up over its reference
(a benchmark whose name contains 'reference') printed at the end of the run."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))  # reference.py


def pytest_report_header(config):
    import confroute

    return f"confroute {confroute.__version__}: {confroute.build_info()}; cpus={os.cpu_count()}"


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if not session or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        if bench.stats is None:
            continue
        groups.setdefault(bench.group, []).append(bench)
    lines = []
    for group, benches in groups.items():
        refs = [b for b in benches if "reference" in b.name]
        if not refs:
            continue
        ref = refs[0]
        for b in benches:
            if b is ref:
                continue
            rates = [x.extra_info.get("tokens_per_s") for x in (b, ref)]
            if all(rates):   # benchmarks that make different amounts of work: compare rates
                lines.append(f"{group}: {b.name} makes {rates[0] / rates[1]:,.2f}x the tokens/s "
                             f"of {ref.name} (threads: {b.extra_info.get('threads', '?')})")
            else:
                lines.append(f"{group}: {b.name} is {ref.stats.median / b.stats.median:,.1f}x "
                             f"faster than {ref.name} (medians)")
    if lines:
        terminalreporter.write_sep("-", "speed-up over the reference in the same run")
        for line in lines:
            terminalreporter.write_line(line)
