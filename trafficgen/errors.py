"""Errors the user can act on. The CLI prints them as one ``error: ...`` line and exits 2."""


class TrafficgenError(ValueError):
    """Bad input: a scenario value, a file, an argument. The message names it and what is allowed."""


class ConfigError(TrafficgenError):
    """A scenario file, dict or override that does not validate."""

    def __init__(self, where: str, key: str, problem: str):
        self.where, self.key, self.problem = where, key, problem
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
