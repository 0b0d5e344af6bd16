"""Rewrite a kamailio.cfg written for the C module auth_diameter into one using this plugin, pure.

Text in, text and a list of changes out; everything the rewrite does not touch stays
byte for byte, comments and layout included. What changes:

* ``loadmodule "auth_diameter.so"`` becomes app_python3 loading our handler (plus sl
  and pv, which the plugin needs, when the file loads neither);
* each ``modparam("auth_diameter", NAME, VALUE)`` becomes a custom cfg parameter
  ``auth_diameter.NAME = VALUE``, moved before the first ``listen=`` line (Kamailio
  wants custom parameters there) inside the same ``#!ifdef`` blocks it was in;
* ``diameter_www_authorize(R)``, ``diameter_proxy_authorize(R)`` and
  ``diameter_is_user_in(W, G)`` become ``python_exec`` calls. The plugin returns the C
  module's values (1, -5, 0 that stops the script; 1 or negative for the group
  check) and python_exec hands them to the script unchanged, so ``if (!f(...))``
  keeps its meaning.

Whatever cannot be rewritten with the same meaning is refused (MigrationError, naming
the line) rather than guessed at. The scan follows Kamailio's own lexer (cfg.lex) as
far as the rewrite needs: strings in both quote styles (adjacent double-quoted ones
join), ``#``, ``//`` and nested ``/* */`` comments, ``#!``/``!!`` directives,
pseudo-variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import settings
from .settings import GROUP, SettingsError

CALLS = ("diameter_www_authorize", "diameter_proxy_authorize", "diameter_is_user_in")
HANDLER_DEFINE = "AUTH_DIAMETER_HANDLER"
# the C module's parameters: what the plugin calls them and which kind of value each takes
_PARAMS = {
    "diameter_client_host": (str, "Diameter server host"),
    "diameter_client_port": (int, "Diameter server port"),
    "use_domain": (int, "send user@domain in group checks"),
}
_WHO = ("request-uri", "to", "from", "credentials")  # diameter_is_user_in's fixup, case-insensitive
_ROUTES = frozenset(
    "route request_route failure_route reply_route onreply_route branch_route onsend_route event_route".split()
)
_DIRECTIVE = re.compile(
    r"(?:#!|!!)(define|def|trydefine|trydef|redefine|redef|ifdef|ifndef|ifexp|else|endif"
    r"|substdefs|substdef|subst|include_file|import_file)\b"
)
_DEFINES = ("define", "def", "trydefine", "trydef", "redefine", "redef")
_DEFINE_LINE = re.compile(r"(?:#!|!!)\w+[ \t]+(\w+)(?:[ \t]+(.*))?", re.S)
_SPACE = re.compile(r"(?:[ \t\r\b\f]|\\\n)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][A-Za-z0-9_]*")
_YES = ("yes", "true", "on", "enable")
_NO = ("no", "false", "off", "disable")
_ESCAPES = {"n": "\n", "r": "\r", "a": "\a", "t": "\t", '"': '"', "\\": "\\"}
_MODULE_FILE = re.compile(r"(?P<dir>.*/)?(?P<name>[^/]+?)(?P<ext>\.so)?")


class MigrationError(ValueError):
    """The cfg cannot be rewritten with the same meaning; ``line`` says where."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Frame:
    """One open ``#!ifdef``/``#!ifndef``/``#!ifexp`` around a token, and which branch."""

    start: int  # offset of the directive
    line: int
    text: str
    in_else: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # space, newline, comment, directive, string, pvar, ident, number, punct
    text: str
    start: int
    line: int
    stack: tuple[Frame, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True, slots=True)
class Change:
    """One rewrite, for the report: ``line`` is in the old file, ``old`` is empty for an insertion."""

    line: int
    old: str
    new: str
    why: str = ""


@dataclass
class Migration:
    text: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Setting:
    name: str
    value: str  # as written after "=": a literal or a define name
    stack: tuple[Frame, ...]
    line: int


# --- the lexer ------------------------------------------------------------------------


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _string_end(text: str, i: int, line: int) -> int:
    """End of the string starting at ``i``; adjacent double-quoted strings are one (cfg.lex STR_BETWEEN)."""
    if text[i] == "'":
        end = text.find("'", i + 1)
        if end < 0:
            raise MigrationError(line, "a string opened with ' is never closed")
        return end + 1
    j = i + 1
    while True:
        while j < len(text) and text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        if j >= len(text):
            raise MigrationError(line, 'a string opened with " is never closed')
        j += 1
        k = j
        while k < len(text) and text[k] in " \t\r\b\n":
            k += 1
        if k >= len(text) or text[k] != '"':
            return j
        j = k + 1


def _paren_end(text: str, i: int, line: int) -> int:
    """End of ``(...)`` starting at ``i``, counting nested parentheses as cfg.lex does in a PV."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise MigrationError(line, "a pseudo-variable's parenthesis is never closed")


def _pvar_end(text: str, i: int, line: int) -> int:
    """End of a pseudo-variable: ``$(...)``, ``$name``, ``$name.part`` or ``$name(...)``, ``$?``."""
    if text.startswith("$(", i):
        return _paren_end(text, i + 1, line)
    if text.startswith("$?", i):
        return i + 2
    m = _IDENT.match(text, i + 1)
    if m is None:
        return i + 1
    j = m.end()
    while j < len(text) and text[j] == "." and _IDENT.match(text, j + 1):
        j = _IDENT.match(text, j + 1).end()
    return _paren_end(text, j, line) if text.startswith("(", j) else j


def _directive_end(text: str, i: int, kind: str) -> int:
    if kind not in _DEFINES:
        return _line_end(text, i)
    j = i
    while True:  # a define's value continues over escaped newlines
        j = _line_end(text, j)
        if j > i and text[j - 1] == "\\" and j < len(text):
            j += 1
            continue
        return j


def tokens(text: str) -> list[Token]:
    """The cfg as tokens, each with the ``#!if`` blocks around it; refuses unbalanced blocks."""
    out: list[Token] = []
    stack: tuple[Frame, ...] = ()
    i, line = 0, 1
    while i < len(text):
        c = text[i]
        kind = "punct"
        directive = _DIRECTIVE.match(text, i)
        if directive:
            kind, end = "directive", _directive_end(text, i, directive.group(1))
        elif text.startswith("/*", i):
            depth, end = 0, i
            while end < len(text):
                if text.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif text.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                    if depth == 0:
                        break
                else:
                    end += 1
            if depth:
                raise MigrationError(line, "a /* comment is never closed")
            kind = "comment"
        elif c == "#" or text.startswith("//", i):
            kind, end = "comment", _line_end(text, i)
        elif c in "\"'":
            kind, end = "string", _string_end(text, i, line)
        elif c == "$":
            kind, end = "pvar", _pvar_end(text, i, line)
        elif c == "\n":
            kind, end = "newline", i + 1
        elif m := _SPACE.match(text, i):
            kind, end = "space", m.end()
        elif m := _IDENT.match(text, i):
            kind, end = "ident", m.end()
        elif m := _NUMBER.match(text, i):
            kind, end = "number", m.end()
        else:
            end = i + 1
        token = Token(kind, text[i:end], i, line, stack)
        out.append(token)
        if directive:
            stack = _next_stack(stack, token, directive.group(1))
        line += token.text.count("\n")
        i = end
    if stack:
        raise MigrationError(stack[-1].line, f"{stack[-1].text.strip()} has no #!endif")
    return out


def _next_stack(stack: tuple[Frame, ...], token: Token, kind: str) -> tuple[Frame, ...]:
    if kind in ("ifdef", "ifndef", "ifexp"):
        return (*stack, Frame(token.start, token.line, token.text))
    if kind in ("else", "endif") and not stack:
        raise MigrationError(token.line, f"{token.text.strip()} without an #!ifdef")
    if kind == "else":
        top = stack[-1]
        return (*stack[:-1], Frame(top.start, top.line, top.text, not top.in_else))
    if kind == "endif":
        return stack[:-1]
    return stack


# --- values -----------------------------------------------------------------------------


def string_value(token: Token) -> str:
    """The characters a string token stands for, as cfg.lex reads them."""
    if token.text.startswith("'"):
        return token.text[1:-1]
    out: list[str] = []
    for piece in re.findall(r'"((?:[^"\\]|\\.)*)"', token.text, re.S):
        i = 0
        while i < len(piece):
            ch = piece[i]
            nxt = piece[i + 1] if i + 1 < len(piece) else ""
            if ch != "\\" or not nxt:
                out.append(ch)
                i += 1
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
            elif nxt == "\n":
                i += 2
            elif m := re.match(r"x([0-9a-fA-F]{1,2})", piece[i + 1 :]):
                out.append(chr(int(m.group(1), 16)))
                i += 1 + m.end()
            elif m := re.match(r"[0-7]{2,3}", piece[i + 1 :]):
                out.append(chr(int(m.group(0), 8) & 0xFF))
                i += 1 + m.end()
            else:
                out.append(ch)
                i += 1
    return "".join(out)


def _quoted(value: str) -> str | None:
    """``value`` as a double-quoted cfg string that our start-up scan reads back the same, or None."""
    if any(ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return f'"{value}"'


def _number(text: str) -> int | None:
    """A cfg.lex NUMBER: decimal, 0x hex, 0 octal, 1b binary, or yes/no and their synonyms."""
    lowered = text.lower()
    if lowered in _YES or lowered in _NO:
        return int(lowered in _YES)
    for pattern, base in ((r"0|[1-9][0-9]*", 10), (r"0x[0-9a-fA-F]+", 16), (r"0[0-7]+", 8), (r"[01]+b", 2)):
        if re.fullmatch(pattern, text):
            return int(text.rstrip("b") if base == 2 else text, base)
    return None


def _defines(toks: list[Token]) -> dict[str, list[tuple[int, str]]]:
    """Every ``#!define NAME value`` of the file: name -> [(offset, value)]."""
    found: dict[str, list[tuple[int, str]]] = {}
    for t in toks:
        m = _DIRECTIVE.match(t.text) if t.kind == "directive" else None
        if m and m.group(1) in _DEFINES and (d := _DEFINE_LINE.match(t.text)):
            found.setdefault(d.group(1), []).append((t.start, (d.group(2) or "").replace("\\\n", "").strip()))
    return found


def _module_name(token: Token, defines: dict[str, list[tuple[int, str]]]) -> str | None:
    """The module a loadmodule/modparam argument names (a string, or a define holding one)."""
    if token.kind == "ident" and token.text in defines:
        value = defines[token.text][-1][1]
        if value[:1] in "\"'" and len(value) >= 2 and value[-1] == value[0]:
            return value[1:-1]
        return None
    return string_value(token) if token.kind == "string" else None


def _exclusive(a: tuple[Frame, ...], b: tuple[Frame, ...]) -> bool:
    """Are two places in different branches of one #!ifdef ... #!else (never both read)?"""
    for fa, fb in zip(a, b, strict=False):
        if fa == fb:
            continue
        return fa.start == fb.start
    return False


# --- the rewrite ------------------------------------------------------------------------


class _Rewriter:
    def __init__(self, text: str, handler: str) -> None:
        self.text = text
        self.handler = handler
        self.toks = tokens(text)
        self.sig = [t for t in self.toks if t.kind not in ("space", "newline", "comment")]
        self.defines = _defines(self.toks)
        self.edits: list[tuple[int, int, str]] = []  # (start, stop, replacement) in the old text
        self.result = Migration(text)
        self.settings: list[_Setting] = []
        self.removed: list[tuple[int, int]] = []  # spans of the modparams moved into the settings
        self.moved: list[tuple[int, str, str]] = []  # modparams turned into settings: line, old, new
        self.define_uses: list[tuple[Token, str]] = []  # (modparam, define name) of values that are defines
        self.loads: list[tuple[Token, Token, int]] = []  # loadmodule "auth_diameter": keyword, name, end
        self.loaded: set[str] = set()
        self.anchor: Token | None = None
        self.anchor_what = "the end of the file"
        self.calls = 0
        self.conflicts: list[MigrationError] = []  # what stops a migration, if there is one to do

    def run(self) -> Migration:
        self._scan()
        if not (self.loads or self.settings or self.calls):
            self.result.notes.append("no use of the C module auth_diameter found: nothing changed")
            return self.result
        if self.conflicts:
            raise self.conflicts[0]
        if self.loads and HANDLER_DEFINE in self.text:
            line = self.text.count("\n", 0, self.text.index(HANDLER_DEFINE)) + 1
            raise MigrationError(line, f"{HANDLER_DEFINE} is already used; migrate-cfg defines it for the handler")
        if self.loads or self.settings:
            self._place_settings()
        for load in self.loads:
            self._replace_load(*load)
        if not self.loads:
            self.result.notes.append(
                'this file does not load "auth_diameter.so": load the plugin where the C module was loaded '
                "(run migrate-cfg on that file too)"
            )
        self.result.text = self._apply()
        self.result.changes.sort(key=lambda c: c.line)
        return self.result

    # the scan: every statement that concerns us, refusals on the way

    def _scan(self) -> None:
        depth = 0
        first: dict[str, Token] = {}
        i = 0
        while i < len(self.sig):
            t = self.sig[i]
            nxt = self.sig[i + 1] if i + 1 < len(self.sig) else None
            if t.kind == "directive":
                self._directive(t)
            elif t.kind == "punct" and t.text in "{}":
                depth += 1 if t.text == "{" else -1
            elif t.kind == "ident" and t.text in CALLS:
                i = self._call(i)
                continue
            elif t.kind == "ident" and depth == 0:
                if t.text == "loadmodule":
                    first.setdefault("loadmodule", t)
                    i = self._loadmodule(i)
                    continue
                if t.text == "modparam":
                    i = self._modparam(i)
                    continue
                if t.text == "listen" and nxt is not None and nxt.text == "=":
                    first.setdefault("listen", t)
                elif t.text in _ROUTES:
                    first.setdefault("route", t)
                elif t.text == "cfgengine" and nxt is not None and nxt.kind == "string":
                    if string_value(nxt).lower() != "native":
                        self.conflicts.append(
                            MigrationError(t.line, f"cfgengine {nxt.text}: the C module's functions are native cfg")
                        )
                elif t.text == GROUP and nxt is not None and nxt.text == ".":
                    self.conflicts.append(
                        MigrationError(t.line, f"{GROUP}.* settings are declared here already: migrated before?")
                    )
                elif t.text in ("include_file", "import_file"):
                    self._include_note(t.line, f"{t.text} {nxt.text if nxt else ''}")
            i += 1
        # before the first listen= (custom parameters must be) and before the plugin's
        # loadmodule (its handler path is defined in the settings); else the first route
        candidates = [first[k] for k in ("listen", "loadmodule") if k in first] or [first[k] for k in first]
        if candidates:
            self.anchor = min(candidates, key=lambda t: t.start)
            self.anchor_what = {
                "listen": "the first listen= line",
                "loadmodule": "the first loadmodule",
                "route": "the first route block",
            }[self.anchor.text if self.anchor.text in ("listen", "loadmodule") else "route"]

    def _directive(self, t: Token) -> None:
        kind = _DIRECTIVE.match(t.text).group(1)
        if kind in ("include_file", "import_file"):
            self._include_note(t.line, t.text)
        elif kind not in ("ifdef", "ifndef", "ifexp", "else", "endif"):
            for name in CALLS:
                if re.search(rf"\b{name}\b", t.text):
                    raise MigrationError(t.line, f"{name} inside #!{kind}: rewrite it by hand")

    def _include_note(self, line: int, what: str) -> None:
        self.result.notes.append(
            f"line {line}: {what.strip()} is not migrated with this file: run migrate-cfg on it too "
            "if it uses the C module"
        )

    def _args(self, i: int) -> tuple[list[Token], int]:
        """Arguments of ``name(...)`` at sig[i], one token each, and the index after the ``)``."""
        t = self.sig[i]
        if i + 1 >= len(self.sig) or self.sig[i + 1].text != "(":
            raise MigrationError(t.line, f"{t.text} is not called here: rewrite it by hand")
        args: list[Token] = []
        j = i + 2
        while j < len(self.sig) and self.sig[j].text != ")":
            arg = self.sig[j]
            if arg.text == "-" and j + 1 < len(self.sig) and self.sig[j + 1].kind == "number":
                arg = Token("number", "-" + self.sig[j + 1].text, arg.start, arg.line, arg.stack)
                j += 1
            elif arg.kind not in ("string", "ident", "number"):
                raise MigrationError(arg.line, f"{t.text}: argument {arg.text!r} is not a string, number or define")
            args.append(arg)
            j += 1
            if j < len(self.sig) and self.sig[j].text == ",":
                j += 1
            elif j < len(self.sig) and self.sig[j].text != ")":
                raise MigrationError(self.sig[j].line, f"{t.text}: expected , or ) but found {self.sig[j].text!r}")
        if j >= len(self.sig):
            raise MigrationError(t.line, f"{t.text}( is never closed")
        return args, j + 1

    def _loadmodule(self, i: int) -> int:
        t = self.sig[i]
        j = i + 1
        paren = j < len(self.sig) and self.sig[j].text == "("
        j += paren
        if j >= len(self.sig):
            return j
        arg = self.sig[j]
        j += 1
        if paren and j < len(self.sig) and self.sig[j].text == ")":
            j += 1
        path = _module_name(arg, self.defines)
        module = _MODULE_FILE.fullmatch(path).group("name") if path else ""
        self.loaded.add(module)
        if module == "auth_diameter":
            if arg.kind != "string":
                raise MigrationError(t.line, f"loadmodule {arg.text}: the module's name is a define; write it out")
            self.loads.append((t, arg, self.sig[j - 1].end))
        elif module in ("app_python3", "app_python3s", "app_python"):
            self.conflicts.append(
                MigrationError(t.line, f"{module} is loaded already: the plugin needs app_python3 to itself")
            )
        return j

    def _modparam(self, i: int) -> int:
        t = self.sig[i]
        first = self.sig[i + 2] if i + 2 < len(self.sig) and self.sig[i + 1].text == "(" else None
        module = _module_name(first, self.defines) if first is not None else None
        if module is None or not self._names_us(t, module):
            return i + 1
        args, j = self._args(i)
        if len(args) != 3:
            raise MigrationError(t.line, f"modparam with {len(args)} arguments")
        if args[0].kind != "string":
            raise MigrationError(t.line, f"modparam({args[0].text}, ...): the module's name is a define; write it out")
        name = string_value(args[1]) if args[1].kind == "string" else args[1].text
        if name not in _PARAMS:
            known = ", ".join(_PARAMS)
            raise MigrationError(t.line, f"auth_diameter has no parameter {args[1].text} (it has {known})")
        value = self._value(t, name, args[2])
        for other in self.settings:
            if other.name == name and not _exclusive(other.stack, t.stack):
                raise MigrationError(t.line, f"{name} is set at line {other.line} too: keep one")
        self.settings.append(_Setting(name, value, t.stack, t.line))
        if j < len(self.sig) and self.sig[j].text == ";":
            j += 1
        stop = self.sig[j - 1].end
        self._remove_statement(t.start, stop)
        self.moved.append((t.line, self.text[t.start : stop], f"{GROUP}.{name} = {value}"))
        return j

    def _names_us(self, t: Token, module: str) -> bool:
        """Does a modparam's module name (a regular expression to Kamailio) mean auth_diameter?"""
        if module.lower() == "auth_diameter":
            return True
        try:
            matches = re.fullmatch(f"(?:{module})", "auth_diameter", re.I) is not None
        except re.error:
            matches = "diameter" in module.lower()
        if matches:
            raise MigrationError(
                t.line, f'modparam("{module}", ...) is a pattern: give auth_diameter a modparam of its own'
            )
        return False

    def _value(self, t: Token, name: str, arg: Token) -> str:
        """The setting's value as written after ``=``, checked as the plugin will check it."""
        where = f"{name} = {arg.text}"
        if arg.kind == "ident" and arg.text.lower() not in _YES + _NO:
            self.define_uses.append((t, arg.text))  # a define: Kamailio and the plugin resolve it
            return arg.text
        raw: object
        if _PARAMS[name][0] is str:
            quoted = _quoted(string_value(arg)) if arg.kind == "string" else None
            if quoted is None:
                raise MigrationError(t.line, f"{where}: not a string without quotes, backslashes or control characters")
            raw, text = string_value(arg), quoted
        elif arg.kind == "string":
            digits = string_value(arg).strip()
            if not re.fullmatch(r"-?[0-9]+", digits):
                raise MigrationError(t.line, f"{where}: {name} takes an integer")
            raw = int(digits)
            text = str(raw)
            self.result.notes.append(f"line {t.line}: {name} was the string {arg.text}, written as the integer {text}")
        else:
            number = _number(arg.text.lstrip("-"))
            if number is None:
                raise MigrationError(t.line, f"{where}: not a number")
            raw = -number if arg.text.startswith("-") else number
            text = str(raw)
        try:
            settings.parse({name: raw})
        except SettingsError as exc:
            raise MigrationError(t.line, str(exc)) from None
        return text

    def _call(self, i: int) -> int:
        t = self.sig[i]
        args, j = self._args(i)
        if t.text == "diameter_is_user_in":
            param = self._group_param(t, args)
        elif len(args) != 1:
            raise MigrationError(t.line, f"{t.text} takes one argument (the realm), not {len(args)}")
        elif args[0].kind == "number":
            raise MigrationError(t.line, f"{t.text}({args[0].text}): the realm must be a string")
        else:
            param = args[0].text  # a pseudo-variable format to both, so the same text means the same
        new = f'python_exec("{t.text}", {param})'
        stop = self.sig[j - 1].end
        self.edits.append((t.start, stop, new))
        self.result.changes.append(Change(t.line, self.text[t.start : stop], new))
        self.calls += 1
        return j

    def _group_param(self, t: Token, args: list[Token]) -> str:
        """``diameter_is_user_in("From", "g")`` -> ``"From,g"``: python_exec passes one parameter."""
        if len(args) != 2:
            raise MigrationError(t.line, f"diameter_is_user_in takes two arguments (who, group), not {len(args)}")
        if any(a.kind != "string" for a in args):
            raise MigrationError(t.line, "diameter_is_user_in: who and group must be strings to be joined into one")
        who, group = (string_value(a) for a in args)
        if who.lower() not in _WHO:
            raise MigrationError(
                t.line, f"diameter_is_user_in: who {who!r} is not Request-URI, From, To or Credentials"
            )
        if not group:
            raise MigrationError(t.line, "diameter_is_user_in: the group is empty")
        if "$" in group:
            raise MigrationError(
                t.line,
                f"diameter_is_user_in: the group {group!r} has a $: the C module sent it as written, "
                "python_exec would expand it as a pseudo-variable",
            )
        joined = _quoted(f"{who},{group}")
        if joined is None:
            raise MigrationError(
                t.line, "diameter_is_user_in: quotes, backslashes or control characters in who or group"
            )
        return joined

    # edits

    def _remove_statement(self, start: int, stop: int) -> None:
        """Remove ``text[start:stop]`` and the blanks after it (whole lines that are left empty: see _apply)."""
        line_end = _line_end(self.text, stop)
        while stop < line_end and self.text[stop] in " \t\r":
            stop += 1
        self.removed.append((start, stop))

    def _removals(self) -> list[tuple[int, int, str]]:
        """The removed statements as edits: a line with nothing else left on it goes altogether."""
        by_line: dict[int, list[tuple[int, int]]] = {}
        for start, stop in self.removed:
            by_line.setdefault(self.text.rfind("\n", 0, start) + 1, []).append((start, stop))
        edits = []
        for line_start, spans in by_line.items():
            line_end = _line_end(self.text, line_start)
            left, last = [], line_start
            for start, stop in sorted(spans):
                left.append(self.text[last:start])
                last = stop
            left.append(self.text[last:line_end])
            if "".join(left).strip():
                edits += [(start, stop, "") for start, stop in spans]
            else:
                edits.append((line_start, min(line_end + 1, len(self.text)), ""))
        return edits

    def _replace_load(self, t: Token, arg: Token, stop: int) -> None:
        """app_python3 loading our handler where auth_diameter was loaded, in the same path style."""
        quote = arg.text[0]
        parts = _MODULE_FILE.fullmatch(string_value(arg))
        directory, ext = parts.group("dir") or "", parts.group("ext") or ""
        line_start = self.text.rfind("\n", 0, t.start) + 1
        prefix = self.text[line_start : t.start]
        missing = [m for m in ("sl", "pv") if m not in self.loaded]  # the plugin replies with sl, reads with pv
        lines = [f"loadmodule {quote}{directory}{m}{ext}{quote}" for m in (*missing, "app_python3")]
        lines.append(f'modparam("app_python3", "load", {HANDLER_DEFINE})')
        new = ("\n" + (prefix if not prefix.strip() else "")).join(lines)
        self.loaded.update(missing)
        self.edits.append((t.start, stop, new))
        self.result.changes.append(Change(t.line, self.text[t.start : stop], new))

    def _place_settings(self) -> None:
        at = self._insertion_point()
        line = self.text.count("\n", 0, at) + 1
        for t, name in self.define_uses:
            places = [offset for offset, _ in self.defines.get(name, [])]
            if places and min(places) >= at:
                raise MigrationError(
                    t.line,
                    f"{name} is defined at line {self._line_of(min(places))}, after {self.anchor_what} "
                    f"(line {line}) where the settings go: move its #!define up",
                )
        for s in self.settings:
            for frame in s.stack:
                words = frame.text.split(None, 1)
                for name in _IDENT.findall(words[1] if len(words) > 1 else ""):
                    between = [off for off, _ in self.defines.get(name, []) if at <= off < frame.start]
                    if between:
                        raise MigrationError(
                            frame.line,
                            f"{name} is defined at line {self._line_of(between[0])}, after {self.anchor_what} "
                            f"(line {line}) where the settings go: {words[0]} {name} would read differently there",
                        )
        block = self._settings_block()
        self.edits.append((at, at, block))
        self.result.changes.append(Change(line, "", block.rstrip("\n"), f"placed before {self.anchor_what}"))
        for old_line, old, new in self.moved:
            self.result.changes.append(Change(old_line, old, new, f"moved to line {line}"))

    def _insertion_point(self) -> int:
        """The start of the anchor's line, outside any #!ifdef around it and any token spanning lines."""
        if self.anchor is None:
            if self.text and not self.text.endswith("\n"):
                self.edits.append((len(self.text), len(self.text), "\n"))
            return len(self.text)
        at = self.anchor.stack[0].start if self.anchor.stack else self.anchor.start
        while True:
            at = self.text.rfind("\n", 0, at) + 1
            straddling = [t.start for t in self.toks if t.start < at < t.end]
            if not straddling:
                return at
            at = straddling[0]

    def _line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def _settings_block(self) -> str:
        lines = [
            "# auth_diameter settings, made from the C module's modparams by",
            "# python3 -m kamailio_auth_diameter migrate-cfg: they must come before the first listen=.",
        ]
        if self.loads:
            lines += [f"#!ifndef {HANDLER_DEFINE}", f'#!define {HANDLER_DEFINE} "{self.handler}"', "#!endif"]
        lines += _nested(
            [(s.stack, f'{GROUP}.{s.name} = {s.value} desc "{_PARAMS[s.name][1]}"') for s in self.settings]
        )
        if self.loads:
            lines += [
                "# 1: the credentials must be the To user's (REGISTER) or the From user's, else 403.",
                "# 0 is the C module's behaviour: any user with a valid password may act as anyone.",
                f'{GROUP}.identity_check = 1 desc "credentials must be From/To user\'s"',
            ]
            self.result.notes.append(
                "identity_check = 1: credentials of another user than the To (REGISTER) or From user get 403, "
                'which the C module accepted; 0 restores its behaviour (README, "Security")'
            )
        return "\n".join(lines) + "\n\n"

    def _apply(self) -> str:
        out, last = [], 0
        for start, stop, new in sorted(self.edits + self._removals(), key=lambda e: (e[0], e[1] != e[0])):
            out += [self.text[last:start], new]
            last = max(last, stop)
        out.append(self.text[last:])
        return "".join(out)


def _nested(items: list[tuple[tuple[Frame, ...], str]]) -> list[str]:
    """Lines inside copies of the #!ifdef blocks (and #!else branches) they came from, in order."""
    lines: list[str] = []
    opened: tuple[Frame, ...] = ()
    for stack, line in items:
        k = 0
        while k < min(len(opened), len(stack)) and opened[k] == stack[k]:
            k += 1
        # the same #!ifdef, from its first branch to its #!else: say #!else, as the original did
        flip = k < min(len(opened), len(stack)) and opened[k].start == stack[k].start and stack[k].in_else
        if k < len(opened):
            lines += ["#!endif"] * (len(opened) - k - 1) + ["#!else" if flip else "#!endif"]
        for frame in stack[k + flip :]:
            lines += [frame.text.strip(), "#!else"] if frame.in_else else [frame.text.strip()]
        lines.append(line)
        opened = stack
    return lines + ["#!endif"] * len(opened)


def migrate(text: str, handler: str) -> Migration:
    """The cfg ``text`` rewritten for the plugin, whose handler.py is at ``handler``."""
    return _Rewriter(text, handler).run()


def report(result: Migration, name: str) -> list[str]:
    """What changed, for people: ``name:LINE: old``, then ``-> new`` (line numbers of the old file)."""
    lines: list[str] = []
    for c in result.changes:
        lines.append(f"{name}:{c.line}: " + (c.old.replace("\n", "\n    ") if c.old else f"inserted, {c.why}:"))
        for k, new_line in enumerate(c.new.split("\n")):
            lines.append(("  -> " if k == 0 else "     ") + new_line)
        if c.old and c.why:
            lines[-1] += f"   ({c.why})"
    lines += [f"note: {n}" for n in result.notes]
    return lines
