"""core.schedules: when-to-run texts → cron specs, with clear errors (no scheduler running here)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from core.schedules import (
    ACCEPTED_FORMS,
    ScheduleError,
    check_at_most_hourly,
    parse_when,
    split_count,
)

BERLIN = ZoneInfo("Europe/Berlin")
FRIDAY_11 = datetime(2024, 5, 3, 11, 1, tzinfo=BERLIN)  # Friday 3 May 2024, 11:01 in Berlin


def next_fires(
    text: str, start: datetime = FRIDAY_11, n: int = 3, tz: str = "Europe/Berlin"
) -> list[datetime]:
    trigger = CronTrigger(**parse_when(text, tz).trigger_kwargs())
    out, previous, now = [], None, start
    for _ in range(n):
        fire = trigger.get_next_fire_time(previous, now)
        out.append(fire)
        previous, now = fire, fire
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Friday 11:00 → next weekday 10:00 is Monday, then Tuesday, Wednesday.
        ("weekdays 10:00", [(6, 10, 0), (7, 10, 0), (8, 10, 0)]),
        ("Weekdays at 10:00", [(6, 10, 0), (7, 10, 0), (8, 10, 0)]),
        ("daily 09:30", [(4, 9, 30), (5, 9, 30), (6, 9, 30)]),
        ("every day 9:30am", [(4, 9, 30), (5, 9, 30), (6, 9, 30)]),
        ("weekly mon 09:00", [(6, 9, 0), (13, 9, 0), (20, 9, 0)]),
        ("every friday at 5pm", [(3, 17, 0), (10, 17, 0), (17, 17, 0)]),
        ("mon,thu 12:15", [(6, 12, 15), (9, 12, 15), (13, 12, 15)]),
        ("hourly", [(3, 12, 0), (3, 13, 0), (3, 14, 0)]),
        ("every 2h", [(3, 12, 0), (3, 14, 0), (3, 16, 0)]),
        ("every 3 hours", [(3, 12, 0), (3, 15, 0), (3, 18, 0)]),
        # Cron numbers Sunday 0 (and 7), Monday 1: "1-5" is Monday to Friday, not APScheduler's Tue-Sat.
        ("0 10 * * 1-5", [(6, 10, 0), (7, 10, 0), (8, 10, 0)]),
        ("0 10 * * 0", [(5, 10, 0), (12, 10, 0), (19, 10, 0)]),
        ("0 10 * * 7", [(5, 10, 0), (12, 10, 0), (19, 10, 0)]),
        ("30 8 * * mon-fri", [(6, 8, 30), (7, 8, 30), (8, 8, 30)]),
        ("0 9 * * */2", [(4, 9, 0), (5, 9, 0), (7, 9, 0)]),  # Sun, Tue, Thu, Sat
        ("0 9 15 * *", [(15, 9, 0)]),
    ],
)
def test_plain_forms_and_cron_fire_at_the_right_local_times(text: str, expected: list[tuple]) -> None:
    fires = next_fires(text, n=len(expected))
    assert [(f.day, f.hour, f.minute) for f in fires] == expected
    assert all(f.tzinfo is not None and f.utcoffset().total_seconds() == 7200 for f in fires)  # CEST


def test_time_zone_moves_the_fire_time() -> None:
    midnight = datetime(2024, 5, 3, 0, 0, tzinfo=ZoneInfo("UTC"))
    utc = next_fires("daily 09:30", tz="UTC", n=1, start=midnight)
    tokyo = next_fires("daily 09:30", tz="Asia/Tokyo", n=1, start=midnight)
    assert (utc[0] - tokyo[0]).total_seconds() == 9 * 3600


def test_spec_describes_itself_with_its_zone() -> None:
    spec = parse_when("weekdays 10:00", "Europe/Berlin")
    assert spec.label == "weekdays at 10:00 (Europe/Berlin)"
    assert spec.trigger_kwargs()["timezone"] == "Europe/Berlin"
    assert parse_when("0 10 * * 1-5").day_of_week == "mon,tue,wed,thu,fri"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weekdays 25:00", "'weekdays 25:00': hour must be 0–23"),
        ("daily 09:75", "'daily 09:75': minute must be 0–59"),
        ("daily", "'daily': add a time, e.g. `daily 09:30`"),
        ("weekly 09:00", "'weekly 09:00': say which day, e.g. `weekly mon 09:00`"),
        ("daily 13pm", "a 12-hour time needs an hour from 1 to 12"),
        ("daily 9", "'9' is not a time"),
        ("daily 09:30 please", "unexpected 'please' at the end"),
        ("every 30 hours", "the number of hours must be 1–23"),
        ("0 10 * *", "a cron expression has 5 fields (minute hour day month weekday), this one has 4"),
        ("0 10 * * 1-5 x", "this one has 6"),
        ("0 10 * * 9", "day of week must be 0–7 or sun–sat"),
        ("61 10 * * *", "minute must be 0–59"),
        ("0 10 32 * *", "day of month must be 1–31"),
        ("0 10 * 13 *", "month must be 1–12 or jan–dec"),
        ("5-1 * * * *", "the range '5-1' runs backwards"),
        ("0 9 1 * mon", "restrict either the day of the month or the day of the week, not both"),
        ("0 10 * * x", "'x' is not a valid day of week"),
    ],
)
def test_bad_input_gets_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_when(text)
    assert message in str(info.value)
    assert str(info.value).startswith(f"'{text}'")


@pytest.mark.parametrize("text", ["fortnightly 10:00", "sometimes", "10:00 weekdays"])
def test_unknown_words_list_the_accepted_forms(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_when(text)
    assert "I don't understand" in str(info.value)
    assert ACCEPTED_FORMS in str(info.value)
    for form in ("daily HH:MM", "weekdays HH:MM", "weekly DAY HH:MM", "cron"):
        assert form in str(info.value)


def test_empty_and_unknown_zone() -> None:
    with pytest.raises(ScheduleError, match="Say when"):
        parse_when("  ")
    with pytest.raises(ScheduleError, match="Unknown time zone 'Mars/Olympus'"):
        parse_when("daily 09:00", "Mars/Olympus")


def test_at_most_hourly_refuses_minute_spam() -> None:
    assert check_at_most_hourly(parse_when("hourly")).minute == "0"
    with pytest.raises(ScheduleError, match="more than once an hour"):
        check_at_most_hourly(parse_when("*/5 * * * *"))
    with pytest.raises(ScheduleError, match="more than once an hour"):
        check_at_most_hourly(parse_when("0,30 9 * * *"))


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("weekdays 10:00 7", "last", ("weekdays 10:00", 7)),
        ("weekdays 10:00", "last", ("weekdays 10:00", 5)),
        ("0 10 * * 5", "last", ("0 10 * * 5", 5)),  # a whole cron expression keeps its weekday
        ("0 10 * * 1-5 3", "last", ("0 10 * * 1-5", 3)),
        ("3 weekdays 10:00", "first", ("weekdays 10:00", 3)),
        ("3", "first", ("", 3)),
        ("", "first", ("", 5)),
        ("daily 09:30", "first", ("daily 09:30", 5)),
    ],
)
def test_split_count(text: str, position: str, expected: tuple[str, int]) -> None:
    assert split_count(text, position=position, default=5, maximum=20) == expected


def test_split_count_bounds() -> None:
    with pytest.raises(ScheduleError, match="between 1 and 20"):
        split_count("daily 09:00 50", position="last", default=5, maximum=20)
    with pytest.raises(ScheduleError, match="between 1 and 20"):
        split_count("0", position="first", default=5, maximum=20)
