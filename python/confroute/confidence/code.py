"""Code in chat text, read without running it: the code of an answer (:func:`extract_code`)
and the example calls a prompt shows or implies (:func:`example_calls`). The behaviour
clusters (:mod:`confroute.confidence.execution`) run those calls; the code benchmarks
(:mod:`confroute.eval.code_tasks`) build their tasks with them."""
from __future__ import annotations

import ast
import re
from typing import List, Optional, Tuple

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(answer: str, entry_point: Optional[str] = None) -> str:
    """The code of a chat answer: among its fenced blocks (python or unlabelled; an unclosed
    last block counts), the first that defines ``entry_point``, else the first that parses,
    else the first; an answer without fences is taken whole."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    blocks = [b for lang, b in blocks if lang in ("", "python", "py", "python3")] or \
        [b for _, b in blocks]
    if not blocks:
        return answer.strip("\n")
    if entry_point:
        pat = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)
        for b in blocks:
            if pat.search(b):
                return b
    for b in blocks:
        if _parses(b):
            return b
    return blocks[0]


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
        return True
    except (SyntaxError, ValueError):
        return False


def assert_call(test: str, where: str = "") -> Tuple[str, str]:
    """The function an MBPP assert calls and the source of that call: the first call of a
    plain name inside the assert (``assert set(f(x)) == ...`` gives ``f``, ``f(x)``)."""
    try:
        node = ast.parse(test.strip())
    except SyntaxError:
        raise ValueError(f"{where}: the test {test!r} is not Python") from None
    if not node.body or not isinstance(node.body[0], ast.Assert):
        raise ValueError(f"{where}: the test {test!r} is not an assert")
    named = [n for n in ast.walk(node.body[0].test) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)]
    # a builtin only when nothing else is called: a task may redefine sum()
    calls = [n for n in named if n.func.id not in _BUILTINS] or named
    if not calls:
        raise ValueError(f"{where}: no function call in the test {test!r}")
    c = min(calls, key=lambda n: (n.lineno, n.col_offset))
    return c.func.id, ast.unparse(c)


def docstring_calls(prompt: str, entry_point: str, limit: int = 8) -> Tuple[str, ...]:
    """The example calls of ``entry_point`` written in a HumanEval prompt, each as call source
    without the expected value: ``>>> f(x)`` lines and prose calls ('f(x) ==> y'; a prose call
    of an undefined name with the right arity, a typo in the docstring, is read as ``f``),
    then 'For lst = [..] the output should be ..' / 'Input: arr = [..], k = 4' lines, then
    'Input: 12' lines of a one-argument function."""
    params, required, defined = _signature(prompt, entry_point)
    out: List[str] = []

    def add(call):
        if len(out) < limit and call not in out:
            out.append(call)

    for name, src in _literal_calls(prompt):
        if name in defined and name != entry_point or name in _BUILTINS:
            continue
        call = ast.parse(src, mode="eval").body
        n = len(call.args) + len(call.keywords)
        fits = params is None or len(required) <= n <= len(params)
        if fits and (name == entry_point or params is not None):
            call.func = ast.Name(entry_point, ast.Load())
            add(ast.unparse(call))
    if params:
        names = "|".join(re.escape(p) for p in params)
        for line in prompt.splitlines():
            m = re.search(rf"\b({names})\s*=(?!=)", line)
            if m:
                rest = line[m.start():]
                for end in range(len(rest), 0, -1):
                    call = _parse_call(entry_point, rest[:end])
                    if call is not None and {k.arg for k in call.keywords} >= set(required) \
                            and not call.args:
                        add(ast.unparse(call))
                        break
            elif len(params) == 1:
                m = re.match(r"\s*Input:\s*(.+?)\s*$", line)
                call = _parse_call(entry_point, m.group(1)) if m else None
                if call is not None and len(call.args) == 1:
                    add(ast.unparse(call))
    return tuple(out)


_BUILTINS = frozenset(dir(__import__("builtins")))


def _signature(prompt: str, entry_point: str):
    """(parameter names, required ones, names the prompt defines); (None, (), set()) when the
    prompt does not parse."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return None, (), set()
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                                 ast.ClassDef))}
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef) and n.name == entry_point:
            names = [a.arg for a in n.args.args]
            return names, names[:len(names) - len(n.args.defaults)], defined
    return None, (), defined


def _parse_call(name: str, args_src: str):
    try:
        call = ast.parse(f"{name}({args_src})", mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(call, ast.Call) or not all(
            _literal(a) for a in list(call.args) + [k.value for k in call.keywords]):
        return None
    return call


def _literal_calls(text: str):
    """(name, source) of every ``name(...)`` in the text whose arguments are literals."""
    for m in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)\(", text):
        end = _matching_paren(text, m.end() - 1)
        if end is None:
            continue
        if text[:m.start()].rstrip().endswith("def"):
            continue  # a signature
        src = text[m.start():end + 1].replace("\n", " ")
        call = _parse_call(m.group(1), src[len(m.group(1)) + 1:-1])
        if call is not None:
            yield m.group(1), ast.unparse(call)


_BY_TYPE = {"str": ("'abc'", "'Hello world'", "''"), "int": ("0", "1", "12"),
            "float": ("0.5", "2.0", "-1.5"), "bool": ("True", "False", "True"),
            "list": ("[]", "[1, 2, 3]", "[5, 3, 5, 2]"), "tuple": ("()", "(1, 2)", "(3, 1, 2)"),
            "dict": ("{}", "{'a': 1}", "{'a': 1, 'B': 2}")}
_BY_NAME = {"s": "str", "string": "str", "text": "str", "word": "str", "n": "int", "k": "int",
            "x": "int", "num": "int", "number": "int", "a": "int", "b": "int", "lst": "list",
            "arr": "list", "l": "list", "numbers": "list", "nums": "list"}


def example_calls(prompt: str, entry_point: str) -> Tuple[str, ...]:
    """The calls of ``entry_point`` to judge programs by, from a request alone (a chat
    message, code in a fence or not): the examples it shows (:func:`docstring_calls`), a lone
    example with two variants of it (:func:`variant_calls`), or, where it shows none, three
    calls proposed from the signature (:func:`signature_calls`); () when there is no
    signature either."""
    # the code the request shows, where it shows some in a fence: its signature parses there
    code = extract_code(prompt, entry_point)
    calls = docstring_calls(prompt, entry_point) or docstring_calls(code, entry_point) or \
        _asserted_calls(prompt, entry_point)
    if len(calls) == 1:
        return variant_calls(calls[0])
    return calls or signature_calls(prompt, entry_point) or signature_calls(code, entry_point)


def _asserted_calls(prompt: str, entry_point: str) -> Tuple[str, ...]:
    """The calls of ``entry_point`` in the request's ``assert`` lines (MBPP shows one; the
    name may be a builtin's, or spaced from its parenthesis)."""
    out = []
    for line in prompt.splitlines():
        if line.strip().startswith("assert "):
            try:
                name, call = assert_call(line)
            except ValueError:
                continue
            if name == entry_point and call not in out:
                out.append(call)
    return tuple(out)


def signature_calls(prompt: str, entry_point: str) -> Tuple[str, ...]:
    """Three calls built from the signature alone (annotation, else a conventional parameter
    name: ``s`` a string, ``n`` an int, ...), for a docstring that shows no example."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ()
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
               and n.name == entry_point), None)
    if fn is None:
        return ()
    kinds = []
    for a in fn.args.args:
        ann = ast.unparse(a.annotation) if a.annotation is not None else ""
        kind = next((k for k in _BY_TYPE if ann.lower().startswith(k)), None) or \
            _BY_NAME.get(a.arg)
        if kind is None:
            return ()
        kinds.append(kind)
    return tuple(f"{entry_point}({', '.join(_BY_TYPE[k][i] for k in kinds)})" for i in range(3))


def variant_calls(call_src: str) -> Tuple[str, ...]:
    """The request's example call and two variants of it, each argument changed within its
    type (ints +1 / halved, strings reversed / halved, lists reversed / halved): more inputs
    from what the user wrote, none from the hidden tests."""
    out = [call_src]
    for how in (0, 1):
        c = ast.parse(call_src, mode="eval").body
        c.args = [_vary(a, how) for a in c.args]
        s = ast.unparse(c)
        if s not in out:
            out.append(s)
    return tuple(out)


def _vary(node, how: int):
    try:
        v = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return node
    if isinstance(v, bool):
        w = not v
    elif isinstance(v, int):
        w = v + 1 if how == 0 else v // 2
    elif isinstance(v, float):
        w = v + 1.0 if how == 0 else v / 2
    elif isinstance(v, (str, list, tuple)):
        w = v[::-1] if how == 0 else v[: len(v) // 2]
    else:
        return node
    return ast.parse(repr(w), mode="eval").body


def _literal(node) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _matching_paren(s: str, i: int):
    depth, quote = 0, None
    for j in range(i, min(len(s), i + 2000)):
        ch = s[j]
        if quote:
            if ch == quote and s[j - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return None
