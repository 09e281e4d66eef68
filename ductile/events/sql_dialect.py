"""The one home of the differences between SQLite's SQL and PostgreSQL's (issue 17).

The projections and the log write SQLite-flavoured SQL with ``?`` (or ``:name``) placeholders.
``to_postgres`` turns one such statement into what psycopg sends to PostgreSQL, or refuses with
``UntranslatableSQL`` naming the construct, so that statement is written once per dialect instead
of being translated into something that runs but means another thing.

What it translates (each a rewrite with the same meaning on both engines):

- ``?`` → ``%s`` and ``:name`` → ``%(name)s``; a literal ``%`` → ``%%`` everywhere, string
  literals included, because psycopg reads every ``%`` of a query that has parameters (which is
  why the result must always be executed with a parameter sequence, ``()`` when there are none);
- column types: ``INTEGER``/``INT`` → ``BIGINT`` (we store nanosecond timestamps, beyond 32 bits),
  ``BLOB`` → ``BYTEA``, ``REAL`` → ``DOUBLE PRECISION``; ``INTEGER PRIMARY KEY`` so becomes
  ``BIGINT PRIMARY KEY`` (no implicit rowid: inserting NULL there fails instead of numbering);
- ``INSERT OR IGNORE INTO t …`` → ``INSERT INTO t … ON CONFLICT DO NOTHING``;
- ``a IS b`` / ``a IS NOT b`` between values → ``IS [NOT] DISTINCT FROM`` (PostgreSQL's ``IS``
  takes only NULL, TRUE, FALSE), ``==`` → ``=``, ``ifnull(`` → ``coalesce(``, ``instr(a, b)`` →
  ``strpos(a, b)``, ``main.t`` → ``t``, ``BEGIN DEFERRED`` → ``BEGIN``, a ``STRICT`` table option
  dropped (PostgreSQL's columns are always strict), backquoted/bracketed names → double quotes;
- comments are dropped (a ``?`` or ``%`` in one would otherwise be read as a placeholder).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

# Functions SQLite has and PostgreSQL lacks, or has with another meaning.
_SQLITE_ONLY_FUNCTIONS = frozenset({
    "json_extract", "json_each", "json_tree", "json_set", "json_insert", "json_replace", "json_remove",
    "json_patch", "json_type", "json_valid", "json_array_length", "json_quote", "json_group_array",
    "json_group_object", "json", "strftime", "julianday", "datetime", "date", "time", "unixepoch",
    "printf", "format", "iif", "total", "group_concat", "randomblob", "zeroblob", "typeof",
    "last_insert_rowid", "changes", "total_changes", "hex", "unhex", "quote", "likely", "unlikely",
    "likelihood", "glob", "soundex", "sqlite_version",
})
# Words whose meaning exists only in SQLite, wherever they appear outside literals.
_SQLITE_ONLY_WORDS = {
    "rowid": "the rowid column", "_rowid_": "the rowid column", "oid": "the rowid column",
    "autoincrement": "AUTOINCREMENT", "glob": "GLOB", "regexp": "REGEXP",
    "sqlite_master": "the sqlite_master table", "sqlite_schema": "the sqlite_schema table",
    "sqlite_sequence": "the sqlite_sequence table",
    "like": "LIKE (case-insensitive for ASCII in SQLite, case-sensitive in PostgreSQL)",
}
# A statement that starts with one of these is SQLite's own.
_SQLITE_ONLY_STATEMENTS = {"pragma": "PRAGMA", "attach": "ATTACH", "detach": "DETACH", "vacuum": "VACUUM",
                           "reindex": "REINDEX", "replace": "REPLACE INTO"}
_TYPES = {"integer": "BIGINT", "int": "BIGINT", "blob": "BYTEA", "real": "DOUBLE PRECISION"}
_RENAMED_FUNCTIONS = {"ifnull": "coalesce", "instr": "strpos"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<string>'(?:[^']|'')*'?)
    |(?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
    |(?P<number>0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
    |(?P<op>::|\|\||==|!=|<>|<=|>=|<<|>>)
    |(?P<param>\?\d*|[:@$][A-Za-z_][A-Za-z0-9_]*)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<char>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class UntranslatableSQL(ValueError):
    """A SQLite statement with no safe PostgreSQL translation: write it once per dialect."""

    def __init__(self, construct: str, sql: str) -> None:
        self.construct = construct
        self.sql = sql
        super().__init__(f"no safe PostgreSQL form for {construct}; write this statement per dialect: {sql.strip()}")


class _Token(NamedTuple):
    kind: str
    text: str


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "char"
        text = m.group()
        if kind == "string" and (len(text) < 2 or not text.endswith("'")):
            raise UntranslatableSQL("an unterminated string literal", sql)
        if kind == "comment":
            continue
        if kind == "quoted" and text[0] in "`[":
            text = '"' + text[1:-1].replace('"', '""') + '"'
        out.append(_Token(kind, text))
    return out


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """``sql`` (SQLite's dialect, one or more statements) as PostgreSQL for psycopg; raises
    ``UntranslatableSQL`` naming the first construct with no safe translation."""
    tokens = _tokens(sql)
    statements: list[list[_Token]] = [[]]
    for t in tokens:
        if t == _Token("char", ";"):
            statements.append([])
        else:
            statements[-1].append(t)
    _check_placeholders(tokens, sql)
    return ";".join(_statement(s, sql) for s in statements).strip()


def _check_placeholders(tokens: list[_Token], sql: str) -> None:
    styles = {("?" if t.text == "?" else t.text[0]) for t in tokens if t.kind == "param"}
    for t in tokens:
        if t.kind == "param" and (t.text[0] in "@$" or (t.text[0] == "?" and t.text != "?")):
            raise UntranslatableSQL(f"the placeholder {t.text}", sql)
    if len(styles) > 1:
        raise UntranslatableSQL("positional and named placeholders in one statement", sql)


def _statement(tokens: list[_Token], sql: str) -> str:
    return _Statement(tokens, sql).translate()


class _Statement:
    """One statement's tokens and their rewritten texts (``out``, one per token)."""

    def __init__(self, tokens: list[_Token], sql: str) -> None:
        self.tokens = tokens
        self.sql = sql
        # The significant tokens (no whitespace) by their index in ``tokens``: neighbours are looked
        # at through them, so "INSERT  OR\nIGNORE" reads as three adjacent words.
        self.sig = [i for i, t in enumerate(tokens) if t.kind != "ws"]
        self.out = [t.text for t in tokens]

    def word(self, k: int) -> str | None:
        """Significant token ``k`` in lower case if it is a bare word, else None."""
        if 0 <= k < len(self.sig) and self.tokens[self.sig[k]].kind == "word":
            return self.tokens[self.sig[k]].text.lower()
        return None

    def text(self, k: int) -> str | None:
        return self.tokens[self.sig[k]].text if 0 <= k < len(self.sig) else None

    def refuse(self, construct: str) -> UntranslatableSQL:
        return UntranslatableSQL(construct, self.sql)

    def blank(self, k: int) -> None:
        """Remove significant token ``k`` and the whitespace right after it."""
        i = self.sig[k]
        self.out[i] = ""
        if i + 1 < len(self.tokens) and self.tokens[i + 1].kind == "ws":
            self.out[i + 1] = ""

    def translate(self) -> str:
        if not self.sig:
            return "".join(self.out)
        first = self.word(0)
        if first in _SQLITE_ONLY_STATEMENTS:
            raise self.refuse(_SQLITE_ONLY_STATEMENTS[first])
        if first == "begin" and self.word(1) in ("immediate", "exclusive"):
            raise self.refuse(f"BEGIN {str(self.word(1)).upper()} (PostgreSQL has no database write lock: "
                              "serialize writers with a row lock)")
        if first == "begin" and self.word(1) == "deferred":
            self.blank(1)
        depth = 0
        ignore = False  # an INSERT OR IGNORE: ON CONFLICT DO NOTHING goes before RETURNING or at the end
        returning_at: int | None = None
        for k, i in enumerate(self.sig):
            t = self.tokens[i]
            depth += (t.text == "(") - (t.text == ")")
            if t.kind in ("string", "quoted"):
                if t.kind == "string" and self.word(k - 1) == "x" and self.sig[k - 1] == i - 1:
                    raise self.refuse("a blob literal X'…'")
                self.out[i] = t.text.replace("%", "%%")
            elif t.kind == "param":
                if self.word(k + 1) == "is":
                    # SQLite has no types to infer; PostgreSQL infers a parameter's type from its
                    # first use, and "$1 IS NULL" gives it none. CAST(? AS TEXT) works on both.
                    raise self.refuse(f"a placeholder tested with IS ({t.text} IS …: write CAST({t.text} AS <type>) IS …)")
                self.out[i] = "%s" if t.text == "?" else f"%({t.text[1:]})s"
            elif t.text == "%":
                self.out[i] = "%%"
            elif t.text == "==":
                self.out[i] = "="
            elif t.kind == "word":
                if self._word(k, depth, first):
                    ignore = True
                elif self.word(k) == "returning" and depth == 0:
                    returning_at = k
                elif self.word(k) == "conflict" and self.word(k - 1) == "on" and ignore:
                    raise self.refuse("INSERT OR IGNORE with its own ON CONFLICT clause")
        if ignore:
            if returning_at is not None:
                self.out[self.sig[returning_at]] = "ON CONFLICT DO NOTHING RETURNING"
            else:
                self.out[self.sig[-1]] += " ON CONFLICT DO NOTHING"
        return "".join(self.out)

    def _word(self, k: int, depth: int, first: str | None) -> bool:
        """Rewrite or refuse bare word ``k``; True when it is the OR of an INSERT OR IGNORE."""
        w = self.word(k)
        assert w is not None
        i = self.sig[k]
        is_call = self.text(k + 1) == "("
        if w in _SQLITE_ONLY_WORDS:
            raise self.refuse(_SQLITE_ONLY_WORDS[w])
        if is_call and w in _SQLITE_ONLY_FUNCTIONS:
            raise self.refuse(f"the SQLite function {w}()")
        if is_call and w in ("min", "max") and self._arguments(k + 1) > 1:
            raise self.refuse(f"{w}() with several arguments (GREATEST/LEAST skip NULLs, SQLite's return NULL)")
        if w == "indexed":
            raise self.refuse("INDEXED BY / NOT INDEXED")
        if w == "without" and self.word(k + 1) == "rowid":
            raise self.refuse("WITHOUT ROWID")
        if w == "temp" and self.text(k + 1) == ".":
            raise self.refuse("the temp schema")
        if is_call and w in _RENAMED_FUNCTIONS:
            self.out[i] = _RENAMED_FUNCTIONS[w]
        elif w in _TYPES and not is_call and self.text(k - 1) != ".":
            self.out[i] = _TYPES[w]
        elif w == "main" and self.text(k + 1) == ".":
            self.out[i] = ""
            self.out[self.sig[k + 1]] = ""
        elif w == "is":
            self._is(k)
        elif w == "strict" and depth == 0 and first == "create":
            self.blank(k)
        elif w == "or" and self.word(k - 1) in ("insert", "update"):
            statement, action = str(self.word(k - 1)).upper(), str(self.word(k + 1) or "").upper()
            if statement != "INSERT" or action != "IGNORE":
                raise self.refuse(f"{statement} OR {action} (PostgreSQL needs a conflict target: ON CONFLICT (…))")
            self.blank(k)
            self.blank(k + 1)
            return True
        return False

    def _arguments(self, open_k: int) -> int:
        """How many arguments the call whose ``(`` is significant token ``open_k`` has."""
        depth, commas, empty = 0, 0, True
        for i in self.sig[open_k:]:
            t = self.tokens[i].text
            if t == "(":
                depth += 1
            elif t == ")":
                depth -= 1
                if depth == 0:
                    break
            elif depth == 1:
                commas += t == ","
                empty = False
        return 0 if empty else commas + 1

    def _is(self, k: int) -> None:
        """``a IS [NOT] b``: PostgreSQL's ``IS`` takes only NULL, TRUE, FALSE, UNKNOWN, DISTINCT FROM."""
        negated = self.word(k + 1) == "not"
        if self.word(k + 2 if negated else k + 1) in ("null", "true", "false", "unknown", "distinct"):
            return
        if negated:
            self.out[self.sig[k]] = "IS DISTINCT FROM"
            self.blank(k + 1)
        else:
            self.out[self.sig[k]] = "IS NOT DISTINCT FROM"
