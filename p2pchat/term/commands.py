"""What a typed line means: a text to send, a command, or a one-line explanation of a mistake. Pure.

Commands are case-insensitive (``/QUIT`` is ``/quit``); ``//text`` sends a
line starting with ``/``. Each command says which arguments it takes, so a
wrong one gets an explanation instead of being ignored or sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    """One command: its usage line, what it does, and the arguments it accepts."""

    name: str
    usage: str
    does: str
    arguments: tuple[str, ...] | None = ()  # the words it takes ("" = none); None: free text
    needs_text: bool = False  # free text that must not be empty


SPECS: tuple[Spec, ...] = (
    Spec("/me", "/me ACTION", "send an action: * you ACTION", None, needs_text=True),
    Spec("/verify", "/verify", "safety code and peer's key", ("", "confirm")),
    Spec("/verify confirm", "/verify confirm", "the safety codes match", ()),
    Spec("/send", "/send PATH", "offer a file (Tab completes the path)", None, needs_text=True),
    Spec("/accept", "/accept [N] [DIR]", "take file offer N (default: the oldest)", None),
    Spec("/decline", "/decline [N]", "refuse file offer N", None),
    Spec("/transfers", "/transfers", "list the file transfers", ("",)),
    Spec("/cancel", "/cancel [N]", "stop file transfer N, either way", None),
    Spec("/help", "/help", "this list", ("",)),
    Spec("/quit", "/quit, /exit", "leave the chat", ("",)),
)
ALIASES = {"/exit": "/quit"}

# Every key the interface handles, for /help and the README's table.
KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send (on an ended chat: close)"),
    ("Alt+Enter, Ctrl-J", "new line in the message"),
    ("Tab", "complete a /command, or /send's path"),
    ("Up, Down", "recall lines sent"),
    ("PageUp, PageDown", "scroll by a page"),
    ("Home, End", "top, bottom (End clears ↓ new)"),
    ("mouse wheel", "scroll"),
    ("Ctrl-Z", "suspend; fg resumes"),
    ("Ctrl-D", "leave, on an empty line"),
    ("Ctrl-C", "leave at once"),
    ("//text", "send a line starting with /"),
)


@dataclass(frozen=True)
class Send:
    text: str
    action: bool = False


@dataclass(frozen=True)
class Run:
    name: str  # lower case, aliases resolved: "/quit", "/verify"
    argument: str


@dataclass(frozen=True)
class Problem:
    message: str  # one line for the person who typed it


Parsed = Send | Run | Problem | None


def parse(line: str, extra: Iterable[str] = ()) -> Parsed:
    """What *line* asks for; None for a blank line. *extra* names commands run by the caller (any argument)."""
    if not line.strip():
        return None
    if not line.startswith("/"):
        return Send(line)
    if line.startswith("//"):
        return Send(line[1:])
    word, _, rest = line.partition(" ")
    if "\n" in word:  # "/quit\nmore" is not a command typed by a person: treat the first line only
        word, _, more = word.partition("\n")
        rest = more + (" " + rest if rest else "")
    name = ALIASES.get(word.lower(), word.lower())
    argument = rest.strip()
    spec = next((s for s in SPECS if s.name == name), None)
    if spec is None:
        if name in {e.lower() for e in extra}:
            return Run(name, argument)
        return Problem(f"unknown command {word}: /help lists them (//{word[1:]} sends it as text)")
    if spec.needs_text:
        if not argument:
            return Problem(f"{name} needs text: {spec.usage}")
        return Send(argument, action=True) if name == "/me" else Run(name, argument)
    if spec.arguments is not None and argument.lower() not in spec.arguments:
        accepted = [a for a in spec.arguments if a]
        if accepted:
            return Problem(f"{name} takes no argument or {' or '.join(accepted)}, not {argument!r}")
        return Problem(f"{name} takes no argument, not {argument!r}")
    return Run(name, argument.lower() if spec.arguments else argument)


def names(extra: Iterable[str] = ()) -> list[str]:
    """Every command name that Tab completes to."""
    found = {s.name.split(" ")[0] for s in SPECS} | set(ALIASES) | {e.lower() for e in extra}
    return sorted(found)


def complete(text: str, extra: Iterable[str] = ()) -> tuple[str, list[str]]:
    """Tab on *text*: the completed text, and the candidates when there are several."""
    if not text.startswith("/") or text.startswith("//") or any(c.isspace() for c in text):
        return text, []
    matches = [n for n in names(extra) if n.startswith(text.lower())]
    if len(matches) == 1:
        return matches[0] + " ", []
    if not matches:
        return text, []
    common = matches[0]
    for match in matches[1:]:  # the longest prefix all candidates share
        while not match.startswith(common):
            common = common[:-1]
    return (common if len(common) > len(text) else text), matches


def help_lines(extra: Iterable[str] = ()) -> list[str]:
    """Every command and every key, one per line, for /help."""
    width = max(len(s.usage) for s in SPECS)
    lines = ["commands (any case):"]
    lines += [f"  {s.usage:<{width}}  {s.does}" for s in SPECS]
    known = {s.name.split(" ")[0] for s in SPECS}
    lines += [f"  {e:<{width}}" for e in sorted(extra) if e.lower() not in known]
    key_width = max(len(k) for k, _ in KEYS)
    lines.append("keys:")
    lines += [f"  {k:<{key_width}}  {d}" for k, d in KEYS]
    return lines
