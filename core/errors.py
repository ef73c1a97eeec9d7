"""One error hierarchy; every message is written for the person who caused it."""

from __future__ import annotations


class LabelbotError(Exception):
    """Base class: ``str(error)`` is a complete, user-facing message."""


class ConfigError(LabelbotError):
    """A setting is missing or contradicts another."""


class ProjectNotFound(LabelbotError):
    def __init__(self, name: str) -> None:
        super().__init__(f"No project named {name!r}. Create it with `labelbot init {name} --labels ...`.")
        self.name = name


class ProjectExists(LabelbotError):
    def __init__(self, name: str) -> None:
        super().__init__(f"A project named {name!r} already exists.")
        self.name = name


class RecordNotFound(LabelbotError):
    """The record is not in the project (deleted, or an id from another project)."""


class UnknownLabel(LabelbotError):
    """A label that is not in the project's label set."""


class StaleRecord(LabelbotError):
    """The record no longer needs an answer from this user (complete, or project gone)."""


class InputFileError(LabelbotError):
    """Bad import file: the message names the file, the line and the problem."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class NothingToUndo(LabelbotError):
    pass


class DatabaseUnavailable(LabelbotError):
    """The database cannot be opened: a missing directory, a file that is not a database, no server."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Cannot open the database at {url}: {reason}. Check LABELBOT_DATABASE_URL.")
        self.url = url
        self.reason = reason


class OutputFileError(LabelbotError):
    """A file the user asked for cannot be written; nothing was written."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"Cannot write {path}: {problem}.")
        self.path = path
        self.problem = problem
