"""Errors the user can act on. The CLI prints them as one ``error: ...`` line and exits 2
(an :class:`ArgumentError` with the CLI's flags in place of the library's argument names)."""

import threading

# A ^C seen by the command line's handler. Its KeyboardInterrupt can be swallowed where it lands
# (a callback from numba's LLVM prints "Exception ignored"; another thread): the run still stops
# before its outputs are renamed into place, and exits 130.
INTERRUPTED = threading.Event()


class TrafficgenError(ValueError):
    """Bad input: a scenario value, a file, an argument. The message names it and what is allowed."""


class ConfigError(TrafficgenError):
    """A scenario file, dict or override that does not validate."""

    def __init__(self, where: str, key: str, problem: str):
        self.where, self.key, self.problem = where, key, problem
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class Arg:
    """An argument named in an :class:`ArgumentError`'s message, with the value given if the
    message shows it: ``Arg("iface", "eth9")`` reads ``iface eth9`` from the library and
    ``--iface eth9`` from the command line."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: object = None):
        self.name, self.value = name, value

    def spelt(self, spell) -> str:
        text = spell(self.name)
        return text if self.value is None else f"{text} {self.value}"

    def __reduce__(self):
        return Arg, (self.name, self.value)


class ArgumentError(TrafficgenError):
    """A library call refused one of its arguments.

    The message names arguments as the call spells them (``workers``, ``pps``, ``iface``);
    ``argument`` is the first one named, the one refused. The command line gives the same
    arguments as flags, and prints the same message with its flags instead
    (``render(spell)``), so ``tg.Rate("pps", 0)`` says ``pps: ...`` where
    ``trafficgen replay --pps 0`` says ``--pps: ...``.

    Parameters
    ----------
    *parts : str or Arg
        The message: plain text, and the arguments it names.
    """

    def __init__(self, *parts: str | Arg):
        self.parts = parts
        self.argument = next((p.name for p in parts if isinstance(p, Arg)), None)
        super().__init__(self.render())

    def render(self, spell=None) -> str:
        """The message with each argument's name passed through ``spell(name) -> str``
        (default: as the library call spells it)."""
        spell = spell or str
        return "".join(p.spelt(spell) if isinstance(p, Arg) else p for p in self.parts)

    def __reduce__(self):  # across processes (workers), with its arguments
        return type(self), self.parts
