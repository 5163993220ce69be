"""The docs' commands must keep working: every `python SCRIPT.py ...` in README.md, docs/*.md and models/README.md
(whichever exist when the tests run) is checked against the repository as it is.

Where commands are found: in fenced code blocks (``` or ~~~, any language) and in inline code spans, which may run
over a line break inside a paragraph (a table row is its own paragraph). In a code text, `# comments` (a `#` that
starts a word) are dropped, backslash-continued lines joined, a `$ ` prompt removed, and the text is split by
shlex into simple commands at `&&`, `||`, `;`, `|`, `&` and parentheses; redirections are dropped. A simple
command is ours when, after `NAME=value` assignments and `timeout [-s SIG] DURATION`, `nice`, `nohup`, `time`,
`env` or `exec` prefixes, its first word is a Python interpreter (`python`, `python3`, `.venv/bin/python`, any
path ending in one) and its first argument a `.py` file. `python -m ...` and `python -c ...` are not scripts of
ours and are skipped. Each command is one test case, named file:line.

What each command must pass:
1. the script exists in the repository;
2. the script's own argument parser accepts the arguments. Only the parser runs, nothing is trained or built and
   TensorFlow is not imported: a3c.py's flags go to hparams.parse_args (which also rejects an unknown --preset,
   through argparse's choices); reproduce.py's to reproduce.parse_args, which rejects an unknown row, and then
   every a3c.py command the row would run (flags after `--` included) to hparams.parse_args; every other script
   to its module's parse_args(argv) or build_parser(). A SystemExit other than --help's and any exception
   (ConfigError, ReproduceError, PlotError, ...) is a rejection, reported with its message;
3. every path the command names as an INPUT exists in the repository: the value of --model, the positional run
   directories of plot.py and tools/diagnose_checkpoint.py, and any other argument under models/, assets/,
   scripts/, tools/ or tests/ that is not the value of an output option.

Not checked as inputs (the skip list), and why:
* values of output options: --out, --export, --logdir, --workdir, --json, --gif (the command writes them; e.g.
  `average_checkpoints.py ... --out models/pong-swa` creates that directory);
* paths under runs/, eval/ and exported/: outputs of an earlier command (training, evaluation, export);
* a path an earlier command of the same file writes (the value of one of its output options): the docs' recipes
  chain commands, e.g. averaging into DIR and then evaluating DIR;
* placeholders: a path with an ALL-CAPS component (RUN, DIR, CKPT, RUN_A, ...), `...` or `…`, `<...>` or `$VAR`;
* absolute paths and `~/...`: outside the repository, set up by an earlier step (e.g. a `git worktree add` of an
  old commit under /tmp).

Decisions on the ambiguous cases:
* optional parts written in square brackets (`[--precision bfloat16]`) are checked as if given: the longer form;
* a bare `...` argument after an option that takes no `=` is kept as that option's (placeholder) value, and
  dropped elsewhere, where it stands for arguments left out;
* an ALL-CAPS placeholder given as an option's value where the parser needs a number or a known name
  (`--network NAME`, `--precision P`, `--seeds N`) is not a fault when the parser refuses that very value: the
  option exists (the parser got to its value), so the pair is dropped and the rest parsed again. A misspelt
  option with a placeholder (`--netwrok NAME`) is still reported, and so is a placeholder where a positional
  argument needs a known name (a reproduce.py row `ROW`): the docs should name a real row there;
* commands that are not Python scripts (sbatch, bash scripts/..., cp, git) are not checked.
Negative tests run the same extractor and checks on made-up markdown, so the suite cannot pass vacuously.
"""
from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import io
import os
import re
import shlex
import sys
from typing import NamedTuple

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_COMMANDS = 50  # well below the count when this was written (131): an extractor that finds nothing fails

OUTPUT_OPTIONS = ("--out", "--export", "--logdir", "--workdir", "--json", "--gif")
INPUT_OPTIONS = ("--model",)
POSITIONAL_INPUTS = {"plot.py": "run_dirs", "tools/diagnose_checkpoint.py": "checkpoints"}  # namespace attribute
CHECKED_TREES = ("models/", "assets/", "scripts/", "tools/", "tests/")
OUTPUT_TREES = ("runs/", "eval/", "exported/")
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", "|&"}
PREFIX_COMMANDS = {"nice", "nohup", "time", "env", "exec"}
INTERPRETER = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
PLACEHOLDER_PART = re.compile(r"^[A-Z][A-Z0-9_]*$")


class Command(NamedTuple):
    file: str  # the markdown file, relative to the repository
    line: int  # 1-based line where the command (or its code span) starts
    text: str  # the command as the docs show it, one line
    script: str | None  # the script path as given
    args: tuple[str, ...]
    error: str | None = None  # the command could not be read (shell quoting)
    written_before: frozenset = frozenset()  # output paths of the earlier commands of the same file

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


# ----------------------------------------------------------------------------------------------------------
# Extracting the commands
# ----------------------------------------------------------------------------------------------------------
def doc_files(root: str = REPO_ROOT) -> list[str]:
    """The markdown files whose commands are checked, relative to root: those that exist now."""
    names = ["README.md"] + sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md")))
    names.append(os.path.join("models", "README.md"))
    return [n for n in names if os.path.isfile(os.path.join(root, n))]


def strip_comment(line: str) -> str:
    """A shell line without its `# comment`: a `#` that starts a word, outside quotes."""
    quote, escaped = None, False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _fenced_texts(lines: list[str], start: int, end: int) -> list[tuple[int, str]]:
    """(line number, logical line) of a fenced block's lines [start, end): comments dropped, continuations joined."""
    texts, pending, first = [], "", None
    for number in range(start, end):
        line = strip_comment(lines[number])
        if first is None:
            first = number + 1
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            texts.append((first, pending + line))
        pending, first = "", None
    if pending.strip():
        texts.append((first, pending))
    return texts


def _inline_texts(lines: list[str], blocks: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """(line number, content) of the inline code spans in the given paragraphs (line ranges)."""
    found = []
    for start, end in blocks:
        text = "\n".join(lines[start:end])
        table = lines[start].lstrip().startswith("|")
        for match in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.DOTALL):
            content = match.group(2).replace("\n", " ").strip()
            if table:
                content = content.replace("\\|", "|")
            found.append((start + 1 + text.count("\n", 0, match.start()), strip_comment(content)))
    return found


def code_texts(markdown: str) -> list[tuple[int, str]]:
    """(line number, code) for every logical line of a fenced block and every inline code span, in file order."""
    lines = markdown.splitlines()
    texts, blocks, paragraph, i = [], [], None, 0
    while i < len(lines):
        fence = re.match(r"^\s*(`{3,}|~{3,})", lines[i])
        if fence:
            if paragraph is not None:
                blocks.append((paragraph, i))
                paragraph = None
            mark = fence.group(1)
            close = re.compile(r"^\s*" + re.escape(mark[0]) + "{" + str(len(mark)) + r",}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
            texts += _fenced_texts(lines, i + 1, end)
            i = end + 1
            continue
        if not lines[i].strip() or lines[i].lstrip().startswith("|"):  # a table row is a paragraph of its own
            if paragraph is not None:
                blocks.append((paragraph, i))
                paragraph = None
            if lines[i].strip():
                blocks.append((i, i + 1))
        elif paragraph is None:
            paragraph = i
        i += 1
    if paragraph is not None:
        blocks.append((paragraph, len(lines)))
    texts += _inline_texts(lines, blocks)
    return sorted(texts, key=lambda t: t[0])


def _tokens(code: str) -> list[str]:
    """Shell words and operators of one code text; ValueError for bad quoting."""
    code = re.sub(r"^\s*\$\s+", "", code)  # a console prompt
    code = re.sub(r"\[(\s*-[^\[\]]*)\]", r"\1", code)  # [--optional flags]: checked as given
    lexer = shlex.shlex(code, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # strip_comment did it, the way the shell does (a `#` inside a word is not one)
    return list(lexer)


def _simple_commands(tokens: list[str]) -> list[list[str]]:
    commands, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def _without_redirections(words: list[str]) -> list[str]:
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif set(word) <= set("<>&") and word:
            skip = True
            if kept and kept[-1].isdigit():  # `2>file`: the fd came out as a word of its own
                kept.pop()
        else:
            kept.append(word)
    return kept


def _strip_prefixes(words: list[str]) -> list[str]:
    """The command after `NAME=value` assignments and `timeout ... DURATION`, `nice`, `nohup`, ... prefixes."""
    while words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        elif words[0] == "timeout":
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in ("-s", "-k", "--signal", "--kill-after") else words[1:]
            words = words[1:]  # the duration
        elif words[0] in PREFIX_COMMANDS:
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] == "-n" else words[1:]
        else:
            return words
    return words


def _placeholder_dots(args: list[str]) -> list[str]:
    """Drop a bare `...` (arguments left out) unless it is the value of the option before it."""
    kept = []
    for arg in args:
        if arg in ("...", "…") and not (kept and kept[-1].startswith("--") and "=" not in kept[-1]):
            continue
        kept.append(arg)
    return kept


def python_commands(code: str) -> list[tuple[str, list[str]]]:
    """(script, arguments) of each `python SCRIPT.py ...` in a code text; ValueError for bad shell quoting."""
    found = []
    for words in _simple_commands(_tokens(code)):
        words = _strip_prefixes(_without_redirections(words))
        if not words or not INTERPRETER.match(words[0]):
            continue
        rest = words[1:]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[2:] if rest[0] in ("-W", "-X") else rest[1:]
        if rest and rest[0].endswith(".py"):
            found.append((rest[0], _placeholder_dots(rest[1:])))
    return found


def output_paths(args) -> set[str]:
    """The values of a command's output options."""
    paths = set()
    for i, arg in enumerate(args):
        option, eq, value = arg.partition("=")
        if option in OUTPUT_OPTIONS:
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            if value:
                paths.add(os.path.normpath(value))
    return paths


def commands_in(name: str, markdown: str) -> list[Command]:
    """Every Python command of one markdown file, in order, each knowing what the commands before it write."""
    found, written = [], set()
    for line, code in code_texts(markdown):
        if "python" not in code:
            continue
        text = " ".join(code.split())
        try:
            commands = python_commands(code)
        except ValueError as e:
            found.append(Command(name, line, text, None, (), error=f"cannot read it as a shell command: {e}"))
            continue
        for script, args in commands:
            found.append(Command(name, line, text, script, tuple(args), written_before=frozenset(written)))
            written |= output_paths(args)
    return found


def all_commands(root: str = REPO_ROOT) -> list[Command]:
    commands = []
    for name in doc_files(root):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            commands += commands_in(name, f.read())
    return commands


# ----------------------------------------------------------------------------------------------------------
# Checking a command
# ----------------------------------------------------------------------------------------------------------
def _repo_path(path: str) -> str | None:
    """path relative to the repository, or None when it points outside it."""
    if os.path.isabs(path) or path.startswith("~"):
        return None
    path = os.path.normpath(path)
    return None if path.startswith("..") else path


_modules: dict[str, object] = {}


def _module(script: str):
    """The script imported as a module (repository root and tests/ by name, other folders from the file)."""
    if script not in _modules:
        folder, stem = os.path.split(script[:-3])
        if folder in ("", "tests"):
            _modules[script] = importlib.import_module(stem)
        else:
            spec = importlib.util.spec_from_file_location(f"_docs_{folder}_{stem}".replace("/", "_"),
                                                          os.path.join(REPO_ROOT, script))
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there while the class body runs
            spec.loader.exec_module(module)
            _modules[script] = module
    return _modules[script]


def _parse_a3c(argv):
    import hparams
    return hparams.parse_args(argv)


def _parse_reproduce(argv):
    """reproduce.py's own parser, then each a3c.py command of the row (flags after `--` included) as a3c.py
    would parse it: a bad extra flag fails only when the row's training starts, hours in."""
    import hparams
    import reproduce
    args = reproduce.parse_args(argv)
    row = reproduce.ROWS[args.row]
    for leg in range(len(row.legs)):
        hparams.parse_args(reproduce.train_command(args, row, args.first_seed, "runs/docs-check", leg)[2:])
    return args


PARSERS = {"a3c.py": _parse_a3c, "reproduce.py": _parse_reproduce}


def parse(script: str, args) -> tuple[object, str | None]:
    """(the parsed namespace or None, None if the script's parser accepts args else why not). A placeholder value
    the parser refuses by name (`--network NAME`: "got 'NAME'") is dropped with its option and the rest parsed
    again: the option is known, as the parser got as far as its value."""
    args = list(args)
    while True:
        namespace, rejected = _parse_once(script, args)
        placeholder = next((a for a in args if rejected and PLACEHOLDER_PART.match(a) and f"'{a}'" in rejected), None)
        if placeholder is None:
            return namespace, rejected
        i = args.index(placeholder)
        del args[i - 1 if i and args[i - 1].startswith("-") else i:i + 1]


def _parse_once(script: str, args: list[str]) -> tuple[object, str | None]:
    parser = PARSERS.get(script)
    if parser is None:
        try:
            module = _module(script)
        except Exception as e:  # noqa: BLE001 - whatever stops the import, named
            return None, f"cannot import {script} to check its arguments: {type(e).__name__}: {e}"
        if hasattr(module, "parse_args"):
            parser = module.parse_args
        elif hasattr(module, "build_parser"):
            parser = lambda argv: module.build_parser().parse_args(argv)  # noqa: E731
        else:
            return None, f"{script} has no parse_args(argv) or build_parser() to check its arguments with"
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return parser(args), None
    except SystemExit as e:
        if e.code in (0, None):  # --help
            return None, None
        message = (err.getvalue().strip().splitlines() or [f"exit status {e.code}"])[-1]
        return None, f"{script} rejects the arguments: {message}"
    except Exception as e:  # noqa: BLE001 - ConfigError, ReproduceError, PlotError, ...: each is a rejection
        return None, f"{script} rejects the arguments: {type(e).__name__}: {e}"


def input_paths(script: str, args, namespace) -> list[str]:
    """The paths the command reads: --model, the positional inputs, and arguments under CHECKED_TREES that are
    not the value of an output option."""
    paths = []
    attribute = POSITIONAL_INPUTS.get(script)
    if namespace is not None and attribute:
        value = getattr(namespace, attribute, None)
        paths += value if isinstance(value, list) else [value] if value else []
    for i, arg in enumerate(args):
        before = args[i - 1] if i else ""
        option, eq, value = arg.partition("=")
        if arg.startswith("--") and eq:  # --option=value
            if option in INPUT_OPTIONS or (option not in OUTPUT_OPTIONS and value.startswith(CHECKED_TREES)):
                paths.append(value)
        elif before in INPUT_OPTIONS or (before not in OUTPUT_OPTIONS and arg.startswith(CHECKED_TREES)):
            paths.append(arg)
    return list(dict.fromkeys(p for p in paths if p))


def skip_reason(path: str, written_before=frozenset()) -> str | None:
    """Why an input path is not checked (the skip list in the module docstring), or None to check it."""
    if any(mark in path for mark in ("...", "…", "<", ">", "$")):
        return "placeholder"
    if any(PLACEHOLDER_PART.match(part) for part in path.split("/")):
        return "placeholder"
    relative = _repo_path(path)
    if relative is None:
        return "outside the repository"
    if relative.startswith(OUTPUT_TREES) or relative.rstrip("/") + "/" in OUTPUT_TREES:
        return "output of an earlier command"
    if any(relative == w or relative.startswith(w.rstrip("/") + "/") for w in written_before):
        return "written by an earlier command of the same file"
    return None


def problems(command: Command, root: str = REPO_ROOT) -> list[str]:
    """Everything wrong with one command (empty: it runs as the docs say)."""
    if command.error:
        return [command.error]
    script = _repo_path(command.script)
    if script is None or not os.path.isfile(os.path.join(root, script)):
        return [f"script {command.script} does not exist in the repository"]
    found = []
    namespace, rejected = parse(script, command.args)
    if rejected:
        found.append(rejected)
    for path in input_paths(script, command.args, namespace):
        if skip_reason(path, command.written_before) is None and not glob.glob(os.path.join(root, _repo_path(path))):
            found.append(f"input {path} does not exist in the repository")
    return found


def report(command: Command, found: list[str]) -> str:
    return f"{command.id}: {command.text}\n" + "\n".join(f"  - {p}" for p in found)


# ----------------------------------------------------------------------------------------------------------
# The docs as they are
# ----------------------------------------------------------------------------------------------------------
COMMANDS = all_commands()


def _ids(commands: list[Command]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for c in commands:
        seen[c.id] = seen.get(c.id, 0) + 1
        ids.append(c.id if seen[c.id] == 1 else f"{c.id}#{seen[c.id]}")
    return ids


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_doc_command_runs_as_written(command):
    found = problems(command)
    assert not found, report(command, found)


def test_the_docs_have_commands_to_check():
    assert "README.md" in doc_files()
    assert len(COMMANDS) >= MIN_COMMANDS, f"only {len(COMMANDS)} python commands found in {doc_files()}"
    scripts = {c.script for c in COMMANDS}
    assert {"a3c.py", "a3c_test.py", "reproduce.py"} <= scripts, scripts


# ----------------------------------------------------------------------------------------------------------
# The extractor and the checks on made-up docs
# ----------------------------------------------------------------------------------------------------------
FORMS = """\
# Title

```bash
python a3c.py --preset pong                      # a comment with --bad-flag in it
python3 a3c.py --preset cartpole \\
    --threads 1   # continued
.venv/bin/python a3c_test.py --model models/pong --out eval/p --greedy
PYTHON=/x/.venv/bin/python timeout -s INT 1800 python plot.py runs/a runs/b --labels "A3C,ACER" --out cmp
cd /tmp && python reproduce.py cartpole --seeds 1 --quick; python -m pytest -q tests
$ python benchmark.py --seconds 1 [--precision bfloat16] > bench.log 2>&1
sbatch --nodes=4 scripts/slurm/a3c.sbatch --preset pong
```

Prose with `python tools/diagnose_checkpoint.py RUN/checkpoints` and one over a line break: `python
a3c.py --logdir ...`, then `python -m stable_retro.import DIR`.

| a | `python reproduce.py pong --seeds 1 -- --learning-rate 1e-3` |
"""


def test_the_extractor_finds_every_form_and_only_python_scripts():
    found = [(c.line, c.script, c.args) for c in commands_in("FORMS.md", FORMS)]
    assert found == [
        (4, "a3c.py", ("--preset", "pong")),
        (5, "a3c.py", ("--preset", "cartpole", "--threads", "1")),
        (7, "a3c_test.py", ("--model", "models/pong", "--out", "eval/p", "--greedy")),
        (8, "plot.py", ("runs/a", "runs/b", "--labels", "A3C,ACER", "--out", "cmp")),
        (9, "reproduce.py", ("cartpole", "--seeds", "1", "--quick")),
        (10, "benchmark.py", ("--seconds", "1", "--precision", "bfloat16")),
        (14, "tools/diagnose_checkpoint.py", ("RUN/checkpoints",)),
        (14, "a3c.py", ("--logdir", "...")),
        (17, "reproduce.py", ("pong", "--seeds", "1", "--", "--learning-rate", "1e-3")),
    ]


def test_valid_commands_pass():
    for command in commands_in("FORMS.md", FORMS):
        assert problems(command) == [], report(command, problems(command))


@pytest.mark.parametrize("markdown, expected", [
    ("`python a3c.py --preset pong --learning-rat 1e-3`", "unrecognized arguments: --learning-rat"),
    ("`python a3c.py --preset pongg`", "invalid choice: 'pongg'"),
    ("`python a3c.py --preset pong --optimizer adamw`", "--optimizer must be one of"),
    ("`python a3c_test.py --model models/no-such-model --out eval/x`", "input models/no-such-model does not exist"),
    ("`python a3c_test.py --model models/pong --out eval/x --greedy --sample`", "not allowed with argument"),
    ("`python plot.py runs/a runs/b`", "several runs need --out"),
    ("`python reproduce.py pongg --seeds 1`", "unknown row 'pongg'"),
    ("`python reproduce.py pong --seeds 1 -- --learning-rat 1e-3`", "unrecognized arguments: --learning-rat"),
    ("`python benchmark.py --seconds 1 --preset pongg`", "invalid choice: 'pongg'"),
    ("`python tools/diagnose_checkpoint.py models/nope/checkpoints`", "input models/nope/checkpoints does not exist"),
    ("`python tests/memory_task.py --delay x`", "invalid int value: 'x'"),
    ("`python no_such_script.py --help`", "script no_such_script.py does not exist"),
    ("`python a3c.py --env-id 'ALE/Pong-v5`", "cannot read it as a shell command"),
    ("```\npython a3c_test.py --model models/pong \\\n  --out eval/x --episodes many\n```", "invalid int value"),
])
def test_bad_commands_are_reported(markdown, expected):
    commands = commands_in("BAD.md", markdown)
    assert len(commands) == 1
    found = problems(commands[0])
    assert any(expected in p for p in found), report(commands[0], found) if found else "not reported"


def test_a_placeholder_value_is_not_a_fault_but_a_misspelt_option_is():
    for markdown in ("`python benchmark.py --seconds 15 --network NAME --precision P`",
                     "`python reproduce.py pong --seeds N -- --learning-rate LR`"):
        command = commands_in("P.md", markdown)[0]
        assert problems(command) == [], report(command, problems(command))
    for markdown, expected in (("`python benchmark.py --netwrok NAME`", "unrecognized arguments: --netwrok NAME"),
                               ("`python benchmark.py --network NAME --precision fp8`", "got 'fp8'"),
                               ("`python reproduce.py ROW --seeds 1`", "arguments are required: row")):
        found = problems(commands_in("P.md", markdown)[0])
        assert any(expected in p for p in found), (markdown, found)


def test_a_path_is_skipped_only_for_a_reason_on_the_skip_list():
    for path in ("runs/pong", "eval/x", "exported/pong-lstm", "./runs/pong/checkpoints"):
        assert skip_reason(path) == "output of an earlier command", path
    for path in ("RUN", "RUN/checkpoints", "RUN_A", "models/CKPT", "models/...", "models/<name>", "$OUT/x"):
        assert skip_reason(path) == "placeholder", path
    assert skip_reason("/tmp/at-5.0M/models/pong") == "outside the repository"
    assert skip_reason("~/models/pong") == "outside the repository"
    assert skip_reason("models/pong-swa", frozenset({"models/pong-swa"})) is not None
    assert skip_reason("models/pong-swa/checkpoints", frozenset({"models/pong-swa"})) is not None
    assert skip_reason("models/pong-swa") is None and skip_reason("models/pong") is None


def test_an_input_written_earlier_in_the_same_file_is_not_required():
    markdown = ("```\npython average_checkpoints.py --model runs/p --last 2 --out models/new-avg\n"
                "python a3c_test.py --model models/new-avg --out eval/new-avg\n```\n")
    assert [problems(c) for c in commands_in("SWA.md", markdown)] == [[], []]
    alone = commands_in("ALONE.md", "`python a3c_test.py --model models/new-avg --out eval/new-avg`")
    assert problems(alone[0]) == ["input models/new-avg does not exist in the repository"]


def test_output_option_values_are_not_inputs():
    assert input_paths("plot.py", ["runs/a", "--out", "assets/new_curves"], None) == []
    assert input_paths("a3c_test.py", ["--model", "models/pong", "--export", "models/x"], None) == ["models/pong"]
    assert input_paths("x.py", ["--config=assets/a.json", "tests/fakes.py", "--out=models/y"], None) == \
        ["assets/a.json", "tests/fakes.py"]
    assert input_paths("a3c_test.py", ["--model=models/pong", "--out", "eval/x"], None) == ["models/pong"]
