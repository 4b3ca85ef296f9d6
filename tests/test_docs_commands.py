"""The documentation's commands parse: every `cskd ...` command line shown in README.md and
docs/*.md is parsed by the real parser (cskd.cli.main.build_parser), and `cskd train` lines are
also resolved to a TrainConfig, so a renamed option, preset or method fails here, naming the file
and line.

Where commands are taken from:
- fenced code blocks, line by line (a line ending in a backslash continues on the next);
- inline code spans (`...`) outside fenced blocks.
In either, the command starts at a token that is exactly `cskd` in command position: first on the
line, or after `-m` (`python -m cskd ...`, `torchrun ... -m cskd ...`) or after a shell operator
(`pip install -e . && cskd demo`). It ends at the next shell operator (`&&`, `|`, `;`, `>`, ...);
`#` starts a shell comment. `cskd:` (an error message) and `cskd/...` (a path) are not commands.
An inline span that is only `cskd` (the package, or the method) is skipped, and one that is only
`cskd WORD` names a command: WORD must be one of the parser's commands.

Placeholders: an upper-case word of PLACEHOLDERS (`RUN`, `DIR`, `TABLE`, ...) standing as a whole
token, optionally followed by `...`, is replaced by the concrete value listed there; `--help` is
dropped (the rest of the line is parsed). Anything else is parsed as written, so an example with
`[optional]` brackets or an unknown placeholder fails: write examples with concrete values.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAIN_COMMANDS = ("train", "predict", "analyze", "sweep", "reproduce", "prepare", "import", "dashboard", "demo",
                 "models")
PLACEHOLDERS = {"RUN": "checkpoints/run", "RUN_DIR": "checkpoints/run", "DIR": "checkpoints/out",
                "TABLE": "table1", "NAME": "cub200", "F": "file.npy", "ARCHIVE": "archive.tgz", "PATH": "archive.tgz",
                "N": "4", "COMMAND": "train"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "2>&1", "(", ")"}
NAME_ONLY = "<name only>"  # marks an inline `cskd WORD`: a command's name, not a command line
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def commands_in_line(text: str) -> list[list[str]]:
    """The cskd command lines in one shell line, each as its argv after `cskd` (placeholders kept)."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        tokens = list(lex)
    except ValueError:  # an unbalanced quote: not a shell line
        return []
    found = []
    for i, tok in enumerate(tokens):
        if tok != "cskd" or not (i == 0 or tokens[i - 1] == "-m" or tokens[i - 1] in SHELL_OPERATORS):
            continue
        argv = []
        for t in tokens[i + 1:]:
            if t in SHELL_OPERATORS:
                break
            argv.append(t)
        found.append(argv)
    return found


def fenced_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks of `markdown`, in order."""
    blocks, current = [], None
    for line in markdown.splitlines():
        if FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def extract(markdown: str) -> list[tuple[int, str, list[str]]]:
    """(1-based line number, the command as written, its argv) of every cskd command in `markdown`;
    an inline command name (`cskd train`) has the argv [name, NAME_ONLY]."""
    out = []
    in_fence, pending, pending_start = False, "", 0
    for n, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            in_fence, pending = not in_fence, ""
            continue
        if in_fence:
            if not pending:
                pending_start = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            full, pending = pending + line, ""
            out += [(pending_start, full.strip(), argv) for argv in commands_in_line(full)]
        else:
            for span in INLINE.findall(line):
                for argv in commands_in_line(span):
                    if len(argv) == 1:
                        argv = [argv[0], NAME_ONLY]
                    if argv:
                        out.append((n, span, argv))
    return out


def concrete(argv: list[str]) -> list[str]:
    """argv with placeholders replaced and `--help` dropped (see the module docstring)."""
    result = []
    for tok in argv:
        if tok in ("--help", "-h"):
            continue
        bare = tok[:-3] if tok.endswith("...") else tok
        result.append(PLACEHOLDERS.get(bare, tok))
    return result


def all_commands() -> list[tuple[str, int, str, list[str]]]:
    return [(p.relative_to(ROOT).as_posix(), n, text, argv)
            for p in DOC_FILES for n, text, argv in extract(p.read_text(encoding="utf-8"))]


COMMANDS = all_commands()


def parse(argv: list[str]):
    """build_parser().parse_args(argv), or a failure naming argparse's message."""
    from cskd.cli.main import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"exit status {e.code}: {err.getvalue().strip()}") from None


def check_train(args) -> None:
    """`cskd train`'s options resolved as the command would resolve them (presets, methods,
    protocol contradictions), and the data set and model names it would build."""
    from cskd.cli.train_options import config_from_args
    from cskd.data.sets import DATASETS
    from cskd.models import MODELS

    cfg = config_from_args(args)
    assert cfg.dataset in DATASETS, f"unknown --dataset {cfg.dataset}"
    assert cfg.model in MODELS, f"unknown --model {cfg.model}"


def check_sweep(args) -> None:
    from cskd.config import METHODS, PRESETS

    assert set(args.presets) <= set(PRESETS), f"unknown preset(s) {sorted(set(args.presets) - set(PRESETS))}"
    assert set(args.methods) <= set(METHODS), f"unknown method(s) {sorted(set(args.methods) - set(METHODS))}"


@pytest.mark.parametrize("where, text, argv", [(f"{f}:{n}", t, a) for f, n, t, a in COMMANDS],
                         ids=[f"{f}:{n}" for f, n, _, _ in COMMANDS])
def test_documented_command_parses(where, text, argv):
    if argv[1:] == [NAME_ONLY]:
        from cskd.cli.main import build_parser

        commands = next(a for a in build_parser()._actions if a.dest == "command").choices
        assert argv[0] in commands, f"{where}: `{text}` names no cskd command (commands: {', '.join(commands)})"
        return
    try:
        args = parse(concrete(argv))
        if args.command == "train":
            check_train(args)
        elif args.command == "sweep":
            check_sweep(args)
    except Exception as e:  # a UserError from resolving, an AssertionError from parsing
        pytest.fail(f"{where}: `{text}` does not parse: {e}", pytrace=False)


def test_extractor_finds_the_documented_commands():
    """Enough commands that the parametrized test cannot pass on nothing, and an example of each
    main command in the README."""
    assert len(COMMANDS) >= 15, f"only {len(COMMANDS)} cskd commands found in {[p.name for p in DOC_FILES]}"
    in_readme = {argv[0] for f, _, _, argv in COMMANDS if f == "README.md" and argv}
    assert set(MAIN_COMMANDS) <= in_readme, f"README.md shows no example of {sorted(set(MAIN_COMMANDS) - in_readme)}"


def test_extractor_rules():
    """The rules of the module docstring, on a hand-written page."""
    page = "\n".join([
        "Run `cskd demo --seeds 2` or `cskd: error: bad` or `cskd/runfolder/`.",  # 1
        "```",
        "pip install -e . && cskd demo   # a comment",  # 3
        "torchrun --nproc-per-node 2 \\",  # 4
        "  -m cskd train --seed 0 --out 'a b' > log.txt",
        "python -m cskd models",  # 6
        "echo cskd train",  # 7: not in command position
        "```",
        "`cskd predict RUN... --split val` `cskd analyze` `cskd`",  # 9
    ])
    got = [(n, argv) for n, _, argv in extract(page)]
    assert got == [(1, ["demo", "--seeds", "2"]), (3, ["demo"]), (4, ["train", "--seed", "0", "--out", "a b"]),
                   (6, ["models"]), (9, ["predict", "RUN...", "--split", "val"]),
                   (9, ["analyze", NAME_ONLY])]
    assert concrete(["predict", "RUN...", "--split", "val", "--help"]) == ["predict", "checkpoints/run", "--split",
                                                                           "val"]


def test_a_wrong_command_fails():
    """The check itself can fail: a misspelt option and an unknown preset are caught."""
    with pytest.raises(AssertionError, match="unrecognized arguments: --epochz"):
        parse(["train", "--epochz", "3"])
    from cskd.errors import UserError

    with pytest.raises(UserError):
        check_train(parse(["train", "--preset", "cifar100-resnet999"]))


def test_quick_start_matches_ci():
    """The README's two quick-start commands are fenced blocks of their own, and the test command
    is exactly the last line of .ci/run."""
    blocks = fenced_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    ci_last = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci_last == "pip install -e '.[test]' && python -m pytest -q"
    assert "pip install -e . && cskd demo" in blocks
    assert ci_last in blocks


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower(), flags=re.ASCII).replace(" ", "-")


def test_links_between_pages_resolve():
    """Every relative link in README.md and docs/*.md names an existing file (and heading)."""
    broken = []
    for page in DOC_FILES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
