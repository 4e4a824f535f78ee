"""What the CPU-safety choice costs: llama.cpp with its extra buffer types (AMX kernels and
repacked weights, where the build has them) against the plain CPU kernels, on the real SmolLM2
and Qwen, prompt (prefill) and decode tokens/s. The "extra_bufts_on" rows are the reference: what
the machine can do where those paths work; "off" is what confroute falls back to where a probe
saw them crash. On a machine where they crash, set CONFROUTE_EXTRA_BUFTS=off for both rows'
reference or skip the "on" rows (-k off).

Run: python -m pytest bench/bench_llama_cpu.py --benchmark-only
Tokens/s are in each row's extra_info; the group's ratio column reads "off vs on".
"""
import pytest

from confroute.models import store
from confroute.models.llama import probe as llama_probe

PROMPT = [{"role": "user", "content": (
    "Summarize in two sentences why the Roman Empire split into a western and an eastern half, "
    "naming the emperor who made the division permanent and the two capitals that resulted, "
    "and say which half lasted longer and for roughly how many more centuries. ") * 3}]
DECODE_TOKENS = 48


def _edge(name, extra, monkeypatch):
    from confroute.models import local_model

    monkeypatch.setenv(llama_probe.ENV, "on" if extra else "off")
    m = local_model(name, n_ctx=1024, n_seq_max=1, seed=0)
    assert m.cpu_choice.extra_bufts is extra
    m.generate(PROMPT, max_tokens=2)  # warm up the graph allocation
    return m


@pytest.mark.parametrize("extra", [True, False], ids=["extra_bufts_on", "extra_bufts_off"])
@pytest.mark.parametrize("name", [store.DEFAULT_EDGE, store.DEFAULT_CLOUD])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_llama_cpu_paths(benchmark, monkeypatch, name, extra, phase):
    benchmark.group = f"llama.cpp {phase}, {name}"
    m = _edge(name, extra, monkeypatch)
    n_prompt = len(m.prompt_tokens(PROMPT))
    if phase == "prefill":
        fn, tokens = (lambda: m.next_token_logprobs(PROMPT, [0])), n_prompt
    else:
        out = m.generate(PROMPT, max_tokens=DECODE_TOKENS)
        tokens = out.usage["completion_tokens"]
        fn = lambda: m.generate(PROMPT, max_tokens=DECODE_TOKENS)  # noqa: E731
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
    secs = benchmark.stats.stats.median
    if phase == "decode":  # take the prompt's share out: decode tokens/s alone
        p = m.next_token_logprobs  # same prefill as generate's first step
        import time

        t = time.perf_counter()
        p(PROMPT, [0])
        secs = max(secs - (time.perf_counter() - t), 1e-9)
    benchmark.extra_info.update(tokens=tokens, tokens_per_s=round(tokens / secs, 1),
                                extra_bufts=extra)
    m.close()
