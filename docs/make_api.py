"""Write docs/api.md: every public name of `cskd` and `analysis` (their `__all__`) with its
signature and the first line of its docstring; for classes also their public constructors and
methods. tests/test_api_docs.py fails when the page is stale.

    python docs/make_api.py      (with cskd installed: pip install -e .)
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "api.md"
MODULES = ("cskd", "cskd.analysis")
HEADER = """# API reference

The public names of the two importable packages (`cskd`, and `cskd.analysis`: the repository's
`analysis/` folder, installed under cskd's name), generated from the code by `python docs/make_api.py`
(a test fails when this page is stale). Each entry: the signature, where it is defined, and the
first line of its docstring; the docstrings state the definitions (units, ranges, bin
conventions) and carry a runnable example.

- `cskd`: CS-KD inside your own training loop (the loss, the class-wise batch sampler, the models).
- `cskd.analysis`: metrics and figures on plain arrays (numpy arrays or tensors of logits, probabilities,
  labels and features), importable without the rest of cskd.
"""


def first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def members(cls) -> list[tuple[str, object]]:
    """The public classmethods, methods and properties a class defines itself."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (classmethod, staticmethod)):
            out.append((name, value.__func__))
        elif inspect.isfunction(value) or isinstance(value, property):
            out.append((name, value))
    return out


def entry(module_name: str, name: str, obj) -> list[str]:
    where = getattr(obj, "__module__", None) or module_name
    if inspect.isclass(obj):
        lines = [f"### `{module_name}.{name}{signature(obj)}`", "", f"class, defined in `{where}`. {first_line(obj)}",
                 ""]
        for member, value in members(obj):
            if isinstance(value, property):
                lines.append(f"- `.{member}` (property): {first_line(value)}")
            else:
                lines.append(f"- `.{member}{signature(value)}`: {first_line(value)}")
        return [*lines, ""] if lines[-1] != "" else lines
    if callable(obj):
        return [f"### `{module_name}.{name}{signature(obj)}`", "", f"defined in `{where}`. {first_line(obj)}", ""]
    return [f"### `{module_name}.{name}`", "", f"constant: `{obj!r}`" if len(repr(obj)) < 80
            else f"constant of type `{type(obj).__name__}`", ""]


def render() -> str:
    lines = [HEADER]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", first_line(module), ""]
        for name in module.__all__:
            lines += entry(module_name, name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
