"""Every reference in a comment points at something in this repository.

Comments, docstrings, template and static-file comments and the Markdown files cite the
project's own documents (docs/reliability.md with its entry ids, docs/product.md with its
numbered sections, docs/architecture.md) and its files (``connector/sync/lease.py``,
``connector.sync.lease``). A reader must be able to follow each one, so this test fails when:

- a comment cites a document kept outside the repository (the old upper-case document names)
  or an issue number of an outside tracker, or names an entry id without saying it lives in
  docs/reliability.md;
- an entry id or a section cited does not exist in docs/reliability.md or docs/product.md;
- a repository path or dotted module cited in a comment does not exist;
- a test that docs/reliability.md names by its file and name (``path::test``) does not exist.

Plain file reading and ``tokenize``: no Django, no database, well under a second.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SCANNED_DIRS = (
    "crm",
    "inbox",
    "connector",
    "notes",
    "notifications",
    "demo",
    "tests",
    "bench",
    "bin",
    "schema",
    "docs",
)
SCANNED_TOP = ("README.md", "Makefile", "Dockerfile", "docker-compose.yml", ".ci/run")
SKIPPED_PARTS = {"__pycache__", "vendor", "node_modules"}
# The apps with templates/ and static/ folders.
APPS = ("crm", "inbox", "notes", "notifications")

# Entry ids of docs/reliability.md: S-01 (sync), P- (parser), X- (rendering), A- (attachments),
# M- (sending), C- (credentials and access), I- (infrastructure).
ENTRY_ID = re.compile(r"(?<![\w-])([SPXAMCI]-\d{2})(?![\w-])")
OUTSIDE_DOC = re.compile(
    r"\b(?:" + "|".join(["RELI" + "ABILITY", "SP" + "EC", "ARCHI" + "TECTURE"]) + r")\b"
)
OUTSIDE_ISSUE = re.compile(r"(?i)\bissues? \d+[a-z]?\b")
DOC_SECTIONS = re.compile(
    r"docs/(product|reliability)\.md((?:,? ?(?:and )?§\d+(?:\.\d+)?(?:,? rules? \d+)?)+)"
)
SECTION = re.compile(r"§(\d+)(?:\.(\d+))?(?:,? rules? (\d+))?")
PREFIXES = "crm|inbox|connector|demo|tests|bench|bin|docs|schema|templates|static"
REPO_PATH = re.compile(rf"(?<![\w./@:-])((?:{PREFIXES})/[\w./*-]*[\w/*])")
MODULE = re.compile(r"(?<![\w./@:-])((?:crm|inbox|connector|demo|tests)(?:\.[A-Za-z_]\w*)+)\b")
FILE_SUFFIXES = {"py", "html", "css", "js", "md", "txt", "json", "svg", "eml", "xml", "xsd"}
STATEMENT_START = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:::(\w+))?")


@dataclass(frozen=True)
class Comment:
    """One comment as a reader sees it: a docstring, a block of ``#`` lines, a paragraph."""

    path: str
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


# --- Finding the files and their comments -----------------------------------------------------


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in SCANNED_TOP if (ROOT / name).is_file()]
    for top in SCANNED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or SKIPPED_PARTS & set(path.relative_to(ROOT).parts):
                continue
            if path.suffix in (".py", ".html", ".js", ".css", ".md", ".xsd", ".xml"):
                files.append(path)
            elif top == "bin" and not path.suffix:
                files.append(path)
    return files


def python_comments(rel: str, source: str) -> list[Comment]:
    """``#`` comments (consecutive lines are one block) and string statements (docstrings)."""
    out: list[Comment] = []
    block: list[str] = []
    block_start = last_line = 0
    previous = tokenize.NEWLINE
    candidate = None  # a string that starts a statement: a docstring if the statement ends
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if block and token.start[0] != last_line + 1:
                out.append(Comment(rel, block_start, "\n".join(block)))
                block = []
            if not block:
                block_start = token.start[0]
            block.append(token.string)
            last_line = token.start[0]
            continue
        if token.type == tokenize.NL:
            continue
        if candidate is not None and token.type == tokenize.NEWLINE:
            out.append(Comment(rel, candidate.start[0], candidate.string))
        candidate = None
        if token.type == tokenize.STRING and previous in STATEMENT_START:
            candidate = token
        previous = token.type
    if block:
        out.append(Comment(rel, block_start, "\n".join(block)))
    return out


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def _matches(rel: str, source: str, pattern: str, *, merge: bool = True) -> list[Comment]:
    """Comments matching `pattern`; with `merge`, comments on consecutive lines are one."""
    out: list[Comment] = []
    end = -1
    for m in re.finditer(pattern, source, re.S):
        between = source[end : m.start()]
        if merge and out and not between.strip() and between.count("\n") <= 1:
            out[-1] = Comment(rel, out[-1].line, out[-1].text + "\n" + m.group(0))
        else:
            out.append(Comment(rel, _line(source, m.start()), m.group(0)))
        end = m.end()
    return out


def comments_of(path: Path) -> list[Comment]:
    rel = path.relative_to(ROOT).as_posix()
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return python_comments(rel, source)
    if path.suffix == ".html":
        return _matches(rel, source, r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}|<!--.*?-->")
    if path.suffix == ".css":
        return _matches(rel, source, r"/\*.*?\*/")
    if path.suffix == ".js":
        return _matches(rel, source, r"/\*.*?\*/|(?<![:\\'\"])//[^\n]*")
    if path.suffix in (".xsd", ".xml"):
        return _matches(rel, source, r"<!--.*?-->")
    if path.suffix == ".md":  # every paragraph is prose a reader follows
        return _matches(rel, source, r"(?:[^\n]+\n?)+", merge=False)
    return _matches(rel, source, r"(?m)^[ \t]*#(?!!)[^\n]*(?:\n[ \t]*#[^\n]*)*")  # shell, make


@cache
def all_comments() -> tuple[Comment, ...]:
    return tuple(c for path in scanned_files() for c in comments_of(path))


# --- What the documents define ----------------------------------------------------------------


@cache
def reliability_ids() -> frozenset[str]:
    text = (DOCS / "reliability.md").read_text(encoding="utf-8")
    return frozenset(re.findall(r"(?m)^#+ .*?\b([SPXAMCI]-\d{2})\b", text))


@cache
def sections(doc: str) -> dict[str, str]:
    """ "4" and "4.1" -> the text under that heading (sub-sections included in "4")."""
    text = (DOCS / f"{doc}.md").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    heads = list(re.finditer(r"(?m)^(#+) (\d+)(?:\.(\d+))?\.? ", text))
    for i, head in enumerate(heads):
        depth = len(head.group(1))
        end = next((h.start() for h in heads[i + 1 :] if len(h.group(1)) <= depth), len(text))
        key = head.group(2) + (f".{head.group(3)}" if head.group(3) else "")
        found[key] = text[head.start() : end]
    return found


def section_problem(doc: str, cited: re.Match) -> str:
    number, sub, rule = cited.groups()
    key = f"{number}.{sub}" if sub else number
    text = sections(doc).get(key)
    if text is None:
        return f"docs/{doc}.md has no section {key}"
    if rule and not re.search(rf"(?m)^\s*{rule}\. ", text):
        return f"docs/{doc}.md section {key} has no rule {rule}"
    return ""


def path_exists(cited: str) -> bool:
    cited = cited.split("*")[0].rstrip(".")
    if (ROOT / cited).exists():
        return True
    # A template or static file named the way Django finds it: "inbox/_message.html".
    return any(
        (ROOT / app / kind / cited).exists() for app in APPS for kind in ("templates", "static")
    )


def module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[-1] in FILE_SUFFIXES:
        return True  # a file name such as inbox.css, not a module
    here = ROOT / parts[0]
    for part in parts[1:]:
        if here.suffix == ".py":
            return True  # the rest names something inside the module
        if (here / part).is_dir():
            here = here / part
        elif (here / f"{part}.py").is_file():
            here = here / f"{part}.py"
        else:  # a name the package exports, or a model named the Django way: inbox.Message
            inits = [here / "__init__.py", here / "models.py"]
            return any(f.is_file() and re.search(rf"\b{part}\b", f.read_text()) for f in inits)
    return True


# --- The checks -------------------------------------------------------------------------------


def outside_references() -> list[str]:
    problems = []
    for comment in all_comments():
        if comment.path.startswith("docs/"):
            continue
        for pattern in (OUTSIDE_DOC, OUTSIDE_ISSUE):
            for m in pattern.finditer(comment.text):
                problems.append(f"{comment.where()}: {m.group(0)!r} is not in the repository")
        if ENTRY_ID.search(comment.text) and "docs/reliability.md" not in comment.text:
            ids = sorted(set(ENTRY_ID.findall(comment.text)))
            problems.append(f"{comment.where()}: {', '.join(ids)} without docs/reliability.md")
    return problems


def unknown_ids() -> list[str]:
    known = reliability_ids()
    return [
        f"{c.where()}: {entry} is not an entry of docs/reliability.md"
        for c in all_comments()
        for entry in ENTRY_ID.findall(c.text)
        if entry not in known
    ]


def unknown_sections() -> list[str]:
    problems = []
    for comment in all_comments():
        for cited in DOC_SECTIONS.finditer(comment.text):
            for section in SECTION.finditer(cited.group(2)):
                problem = section_problem(cited.group(1), section)
                if problem:
                    problems.append(f"{comment.where()}: {problem}")
    return problems


def missing_paths() -> list[str]:
    problems = []
    for comment in all_comments():
        for m in REPO_PATH.finditer(comment.text):
            if not path_exists(m.group(1)):
                problems.append(f"{comment.where()}: {m.group(1)} does not exist")
        for m in MODULE.finditer(comment.text):
            if not module_exists(m.group(1)):
                problems.append(f"{comment.where()}: module {m.group(1)} does not exist")
    return problems


@cache
def names_in(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def missing_tests() -> list[str]:
    text = (DOCS / "reliability.md").read_text(encoding="utf-8")
    problems = []
    for m in TEST_REF.finditer(text):
        path, name, method = m.groups()
        wanted = f"{name}::{method}" if method else name
        if not (ROOT / path).is_file():
            problems.append(f"{m.group(0)}: no file {path}")
        elif wanted not in names_in(path):
            problems.append(f"{m.group(0)}: no test {wanted} in {path}")
    return problems


CHECKS = {
    "outside references": outside_references,
    "unknown reliability ids": unknown_ids,
    "unknown sections": unknown_sections,
    "missing paths": missing_paths,
    "missing tests": missing_tests,
}


@pytest.mark.parametrize("check", CHECKS, ids=list(CHECKS))
def test_references_point_into_the_repository(check):
    problems = CHECKS[check]()
    assert not problems, f"{len(problems)} {check}:\n" + "\n".join(problems)


def test_the_checks_see_what_they_must():
    """The patterns catch the old forms and leave RFC, CVE, hex and URLs alone."""
    old = "RELI" + "ABILITY S-11; see SP" + "EC 4 rule 2 (issue 7)"
    assert OUTSIDE_DOC.findall(old) == ["RELI" + "ABILITY", "SP" + "EC"]
    assert OUTSIDE_ISSUE.findall(old) == ["issue 7"]
    innocent = "RFC 3501 6.4.8, CVE-2024-6923, 0x1f-20, X-Mailer, bpo-37461, ISO-2022-JP, utf-16"
    assert ENTRY_ID.findall(innocent) == []
    assert ENTRY_ID.findall("(S-23), S-05..S-09; P-01/X-10") == [
        "S-23",
        "S-05",
        "S-09",
        "P-01",
        "X-10",
    ]
    assert REPO_PATH.findall("https://example.com/inbox/x.py, connector/sync/lease.py.") == [
        "connector/sync/lease.py"
    ]
    assert not module_exists("connector.sending") and module_exists("connector.sync.lease.Lease")
    assert not path_exists("connector/lease.py") and path_exists("inbox/_message.html")
    assert reliability_ids() >= {"S-01", "S-29", "P-10", "X-15", "A-06", "M-07", "C-16", "I-09"}
    assert {"1", "4", "4.1"} <= set(sections("product"))
