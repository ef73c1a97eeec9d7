"""Parse when-to-run texts ("weekdays 10:00", "0 10 * * 1-5") into cron trigger specs.

Pure: no scheduler import. The result's :meth:`CronSpec.trigger_kwargs` is what APScheduler's
``CronTrigger(**kwargs)`` takes, so the bot builds triggers without re-parsing anything.

Accepted forms (case-insensitive; an optional "at" before the time is ignored):

* a 5-field cron expression ``minute hour day month weekday`` — numbers, ``*``, ``*/n``,
  ranges ``a-b``, ranges with steps ``a-b/n``, lists ``a,b``; month and weekday names (``jan``,
  ``mon``); weekday 0 and 7 both mean Sunday, as in cron. Restricting both the day of the month and
  the day of the week is refused: classic cron fires when *either* matches, APScheduler only when
  *both* do, and a schedule must not silently mean something else than its author thinks.
* ``hourly`` (on the hour), ``every N hours`` / ``every Nh`` (on the hour, hours divisible by N)
* ``daily HH:MM`` (also ``every day HH:MM``)
* ``weekdays HH:MM`` (Monday to Friday; also ``every weekday HH:MM``)
* ``weekly DAY HH:MM``, ``DAY HH:MM`` or ``every DAY HH:MM`` where DAY is ``mon``…``sun``, a full
  day name (``monday``, ``mondays``) or a comma list (``mon,thu``)

Times are 24-hour ``HH:MM`` or 12-hour ``9am``, ``9:30pm``. Every schedule runs in one IANA time
zone (``Europe/Berlin``); the caller picks the default (the admin's Slack zone, ``LABELBOT_TIMEZONE``
or UTC).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime

from core.errors import LabelbotError

__all__ = [
    "ACCEPTED_FORMS",
    "CronSpec",
    "ScheduleError",
    "ScheduledItem",
    "check_at_most_hourly",
    "check_timezone",
    "parse_when",
    "split_count",
]

ACCEPTED_FORMS = (
    "a 5-field cron expression like `0 10 * * 1-5`, `hourly`, `every N hours`, `daily HH:MM`, "
    "`weekdays HH:MM`, `weekly DAY HH:MM` or `DAY[,DAY] HH:MM` (e.g. `mon,thu 09:30`)"
)
CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_FIELD_NAMES = {
    "minute": "minute",
    "hour": "hour",
    "day": "day of month",
    "month": "month",
    "day_of_week": "day of week",
}
_RANGES = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "day_of_week": (0, 7)}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
# Cron numbering: 0 (and 7) = Sunday. APScheduler numbers Monday as 0, so weekdays always leave this
# module as names, never as numbers: a bare "1-5" handed to APScheduler would mean Tuesday to Saturday.
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
    "saturday": "sat", "sunday": "sun", "tues": "tue", "thur": "thu", "thurs": "thu",
}
_TIME_24 = re.compile(r"^(\d{1,2}):(\d{2})$")
_TIME_12 = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)$")
_EVERY_HOURS = re.compile(r"^(\d+)\s*(?:h|hr|hrs|hour|hours)$")
_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


class ScheduleError(LabelbotError):
    """A when-to-run text that cannot be understood; the message quotes it and says what is wrong."""


@dataclass(frozen=True)
class CronSpec:
    """A parsed schedule: APScheduler cron fields (weekdays as names), a time zone and a description."""

    minute: str
    hour: str
    day: str = "*"
    month: str = "*"
    day_of_week: str = "*"
    timezone: str = "UTC"
    source: str = ""  # the text as typed (whitespace normalised)
    description: str = field(default="", compare=False)

    def trigger_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``apscheduler.triggers.cron.CronTrigger``."""
        return {name: getattr(self, name) for name in CRON_FIELDS} | {"timezone": self.timezone}

    @property
    def label(self) -> str:
        """What people read: the description plus the zone, e.g. ``weekdays at 10:00 (Europe/Berlin)``."""
        return f"{self.description or self.source} ({self.timezone})"


def check_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone, else raise ``ScheduleError``."""
    name = (name or "").strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"Unknown time zone {name!r}: use an IANA name such as Europe/Berlin, America/New_York or UTC."
        ) from None
    return name


def check_at_most_hourly(spec: CronSpec) -> CronSpec:
    """Refuse schedules that fire more than once an hour (a channel prompt every minute is spam)."""
    minutes = _field_values(spec.source, "minute", spec.minute)
    if minutes is None or len(minutes) > 1:
        raise _fail(spec.source, "that runs more than once an hour; pick one minute, e.g. `0 * * * *` "
                                 "or `hourly`")
    return spec


def parse_when(text: str, timezone: str = "UTC") -> CronSpec:
    """Parse a when-to-run text (see the module docstring) into a :class:`CronSpec` in ``timezone``."""
    tz = check_timezone(timezone)
    source = " ".join(str(text or "").split())
    if not source:
        raise ScheduleError(f"Say when, e.g. `weekdays 10:00`. Accepted: {ACCEPTED_FORMS}.")
    tokens = source.lower().split()
    if _looks_like_cron_field(tokens[0]) and (len(tokens) >= 4 or tokens[0][0] in "*0123456789"):
        return _parse_cron(source, tokens, tz)
    return _parse_plain(source, tokens, tz)


def split_count(
    text: str, *, position: str, default: int, maximum: int, timezone: str = "UTC"
) -> tuple[str, int]:
    """Split an optional card count off a command's arguments: ``("weekdays 10:00", 5)``.

    ``position="last"`` reads ``<when> [n]`` (``/label schedule``), ``"first"`` reads ``[n] [when]``
    (``/label subscribe``). A text that is a valid cron expression as a whole keeps all its numbers.
    """
    if position not in ("first", "last"):
        raise ValueError(f"position must be 'first' or 'last', not {position!r}")
    tokens = " ".join(str(text or "").split()).split(" ") if str(text or "").strip() else []
    index = 0 if position == "first" else -1
    if not tokens or not tokens[index].isdigit():
        return " ".join(tokens), default
    whole = " ".join(tokens)
    if len(tokens) == 5:
        try:
            parse_when(whole, timezone)
            return whole, default  # "0 10 * * 5": the 5 is the weekday, not a count
        except ScheduleError:
            pass
    n = int(tokens[index])
    if not 1 <= n <= maximum:
        raise ScheduleError(f"The number of cards must be between 1 and {maximum} (not {n}).")
    rest = tokens[1:] if position == "first" else tokens[:-1]
    return " ".join(rest), n


# ------------------------------------------------------------------------------------ plain forms


def _fail(source: str, problem: str) -> ScheduleError:
    return ScheduleError(f"'{source}': {problem}")


def _unknown(source: str, word: str) -> ScheduleError:
    return _fail(source, f"I don't understand {word!r}. Use {ACCEPTED_FORMS}.")


def _parse_time(source: str, token: str | None, example: str) -> tuple[int, int]:
    if token is None:
        raise _fail(source, f"add a time, e.g. `{example}`")
    if m := _TIME_24.match(token):
        hour, minute = int(m[1]), int(m[2])
    elif m := _TIME_12.match(token):
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12:
            raise _fail(source, "a 12-hour time needs an hour from 1 to 12 (e.g. 9am, 12:30pm)")
        hour = hour % 12 + (12 if m[3] == "pm" else 0)
    else:
        raise _fail(source, f"{token!r} is not a time: use 24-hour HH:MM (e.g. 09:30) or 9:30am")
    if not 0 <= hour <= 23:
        raise _fail(source, "hour must be 0–23")
    if not 0 <= minute <= 59:
        raise _fail(source, "minute must be 0–59")
    return hour, minute


def _day_list(token: str) -> list[str] | None:
    """``mon,thu`` / ``mondays`` → ``["mon", "thu"]`` in week order; None when not day names."""
    days = []
    for part in token.split(","):
        part = part.strip()
        name = _FULL_DAYS.get(part) or _FULL_DAYS.get(part.rstrip("s")) or part.rstrip("s")
        if name not in _DAY_ORDER:
            return None
        days.append(name)
    return sorted(set(days), key=_DAY_ORDER.index)


def _clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def _parse_plain(source: str, tokens: list[str], tz: str) -> CronSpec:
    words = [t for t in tokens if t != "at"]
    head = words[0]
    rest = words[1:]

    def expect_end(consumed: int) -> None:
        if len(rest) > consumed:
            raise _fail(source, f"unexpected {' '.join(rest[consumed:])!r} at the end")

    def spec(minute: int | str, hour: int | str, dow: str, description: str) -> CronSpec:
        return CronSpec(minute=str(minute), hour=str(hour), day_of_week=dow, timezone=tz, source=source,
                        description=description)

    if head == "hourly":
        expect_end(0)
        return spec(0, "*", "*", "every hour, on the hour")
    if head == "every":
        if not rest:
            raise _fail(source, "every what? e.g. `every 2 hours`, `every day 09:30`, `every monday 10:00`")
        joined = " ".join(rest)
        if m := _EVERY_HOURS.match(joined):
            n = int(m[1])
            if not 1 <= n <= 23:
                raise _fail(source, "the number of hours must be 1–23")
            return spec(0, "*" if n == 1 else f"*/{n}", "*",
                        "every hour" if n == 1 else f"every {n} hours, on the hour (from midnight)")
        if rest[0] == "hour":
            expect_end(1)
            return spec(0, "*", "*", "every hour, on the hour")
        if rest[0] == "day":
            head, rest = "daily", rest[1:]
        elif rest[0] in ("weekday", "weekdays"):
            head, rest = "weekdays", rest[1:]
        elif _day_list(rest[0]) is not None:
            head, rest = rest[0], rest[1:]
        else:
            raise _unknown(source, rest[0])
    if head == "daily":
        hour, minute = _parse_time(source, rest[0] if rest else None, "daily 09:30")
        expect_end(1)
        return spec(minute, hour, "*", f"daily at {_clock(hour, minute)}")
    if head in ("weekdays", "weekday"):
        hour, minute = _parse_time(source, rest[0] if rest else None, "weekdays 10:00")
        expect_end(1)
        return spec(minute, hour, "mon,tue,wed,thu,fri", f"weekdays at {_clock(hour, minute)}")
    if head == "weekly":
        if not rest or _day_list(rest[0]) is None:
            raise _fail(source, "say which day, e.g. `weekly mon 09:00`")
        head, rest = rest[0], rest[1:]
    days = _day_list(head)
    if days is None:
        raise _unknown(source, head)
    hour, minute = _parse_time(source, rest[0] if rest else None, f"{head} 09:00")
    expect_end(1)
    shown = ", ".join(d.capitalize() for d in days)
    return spec(minute, hour, ",".join(days), f"{'every ' if len(days) == 1 else ''}{shown} at "
                f"{_clock(hour, minute)}")


# ------------------------------------------------------------------------------------------- cron


def _looks_like_cron_field(token: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-z*/,\-]+", token)) and (
        token[0].isdigit() or token[0] == "*" or token[:3] in _MONTHS or token[:3] in _CRON_DAYS
    ) and ":" not in token and not token.endswith(("am", "pm"))


def _value(source: str, name: str, token: str, *, range_end: bool = False) -> int:
    low, high = _RANGES[name]
    if token.isdigit():
        number = int(token)
    elif name == "month" and token in _MONTHS:
        return _MONTHS[token]
    elif name == "day_of_week" and token in _CRON_DAYS:
        number = _CRON_DAYS.index(token)
        # "mon-sun" means the whole week: Sunday as a range end is 7, as cron allows.
        return 7 if range_end and number == 0 else number
    else:
        raise _fail(source, f"{token!r} is not a valid {_FIELD_NAMES[name]}: use {_range_text(name)}")
    if not low <= number <= high:
        raise _fail(source, f"{_FIELD_NAMES[name]} must be {_range_text(name)}")
    return number


def _range_text(name: str) -> str:
    low, high = _RANGES[name]
    text = f"{low}–{high}"
    if name == "month":
        text += " or jan–dec"
    elif name == "day_of_week":
        text += " or sun–sat (0 and 7 are Sunday)"
    return text


def _field_values(source: str, name: str, text: str) -> list[int] | None:
    """The values a cron field selects (None for ``*``), after checking every item."""
    low, high = _RANGES[name]
    if text == "*":
        return None
    values: set[int] = set()
    for item in text.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise _fail(source, f"{item!r} is not a valid {_FIELD_NAMES[name]} item: use a number, "
                                f"*, a range a-b, a step */n or a-b/n, or a list")
        base, step_text = m[1], m[2]
        step = int(step_text) if step_text else 1
        if step < 1:
            raise _fail(source, f"the step in {item!r} must be at least 1")
        if base == "*":
            start, stop = low, (6 if name == "day_of_week" else high)
        elif "-" in base:
            a, b = base.split("-", 1)
            start = _value(source, name, a)
            stop = _value(source, name, b, range_end=True)
            if start > stop:
                raise _fail(source, f"the range {base!r} runs backwards; write it from low to high")
        else:
            start = _value(source, name, base)
            if step_text:
                raise _fail(source, f"write {item!r} as a range with a step, e.g. {base}-{high}/{step}")
            stop = start
        values.update(range(start, stop + 1, step))
    return sorted(values)


def _parse_cron(source: str, tokens: list[str], tz: str) -> CronSpec:
    if len(tokens) != 5:
        raise _fail(source, f"a cron expression has 5 fields (minute hour day month weekday), "
                            f"this one has {len(tokens)}")
    fields = dict(zip(CRON_FIELDS, tokens, strict=True))
    selected = {name: _field_values(source, name, text) for name, text in fields.items()}
    if selected["day"] is not None and selected["day_of_week"] is not None:
        raise _fail(source, "restrict either the day of the month or the day of the week, not both "
                            "(cron would fire when either matches, which is rarely what is meant)")
    out = {name: fields[name] for name in ("minute", "hour", "day", "month")}
    # Months may be written as names; APScheduler takes them as they are (jan-dec, same numbering).
    dow = selected["day_of_week"]
    if dow is None:
        out["day_of_week"] = "*"
    else:
        names = {_CRON_DAYS[v % 7] for v in dow}
        out["day_of_week"] = "*" if len(names) == 7 else ",".join(d for d in _DAY_ORDER if d in names)
    return CronSpec(timezone=tz, source=source, description=f"cron `{source}`", **out)


@dataclass(frozen=True)
class ScheduledItem:
    """One schedule as people see it in ``/label schedule list`` and ``labelbot schedule list``."""

    id: str
    kind: str  # "prompt" (channel), "digest" (channel) or "subscription" (a person's DM)
    project_id: int
    project: str
    target: str  # a channel id for prompts and digests, a user id for subscriptions
    when: str  # CronSpec.label, e.g. "weekdays at 10:00 (Europe/Berlin)"
    n: int | None = None  # cards per prompt / subscription
    next_run: datetime | None = None  # None while paused
    created_by: str = ""
