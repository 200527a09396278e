"""The calendar tools' backend: events in a SQLite file, seeded with a fixed fortnight.

Calendar state: `build_registry` seeds a new calendar file with `SEED_EVENTS` (dates
2025-03-01..14). Generated prompts only add events on 2025-03-17 or later (`ADD_DATES`), so
episodes can run in any order against one registry and still see the state their gold answers
were computed on.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DAY_START, DAY_END = "09:00", "17:00"
DATE_PATTERN, TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}$", r"^\d{2}:\d{2}$"

SEED_EVENTS: tuple[tuple[str, str, str, str], ...] = (  # (title, date, start, end)
    ("Gym", "2025-03-02", "10:00", "11:00"),
    ("Team standup", "2025-03-03", "09:00", "09:30"),
    ("Design review", "2025-03-03", "10:00", "11:30"),
    ("Lunch with Sam", "2025-03-03", "12:00", "13:00"),
    ("Team standup", "2025-03-04", "09:00", "09:30"),
    ("Client call", "2025-03-04", "14:00", "15:00"),
    ("Budget meeting", "2025-03-05", "09:00", "10:30"),
    ("Project sync", "2025-03-05", "11:00", "12:00"),
    ("Dentist", "2025-03-05", "15:00", "16:00"),
    ("Team standup", "2025-03-06", "09:00", "09:30"),
    ("Workshop", "2025-03-06", "09:30", "12:30"),
    ("1:1 with manager", "2025-03-06", "13:00", "13:30"),
    ("Code review", "2025-03-06", "13:30", "15:00"),
    ("Brunch with Ana", "2025-03-09", "11:00", "12:30"),
    ("Team standup", "2025-03-10", "09:00", "09:30"),
    ("Planning", "2025-03-10", "09:30", "11:00"),
    ("Interview", "2025-03-10", "11:00", "12:00"),
    ("Lunch with Sam", "2025-03-10", "12:00", "13:00"),
    ("All hands", "2025-03-10", "13:00", "14:00"),
    ("Training", "2025-03-10", "14:00", "17:00"),
    ("Team standup", "2025-03-11", "09:00", "09:30"),
    ("Doctor", "2025-03-11", "16:00", "17:00"),
    ("Project sync", "2025-03-12", "10:00", "11:00"),
    ("Vendor demo", "2025-03-12", "10:30", "11:30"),
    ("Design review", "2025-03-12", "13:00", "14:30"),
    ("Team standup", "2025-03-13", "09:00", "09:30"),
    ("Offsite", "2025-03-13", "09:30", "16:30"),
    ("Client call", "2025-03-14", "11:00", "11:30"),
    ("Team lunch", "2025-03-14", "12:30", "14:00"),
)
QUERY_DATES = tuple(f"2025-03-{d:02d}" for d in range(1, 15))
ADD_DATES = tuple(f"2025-03-{d:02d}" for d in range(17, 32))


class CalendarError(ValueError):
    """A calendar request with a bad date, time or range; the message names the field."""


def parse_hhmm(hhmm: str) -> int:
    """Minutes since midnight of an already-checked "HH:MM"."""
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def format_hhmm(minutes: int) -> str:
    """ "HH:MM" of minutes since midnight."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_date(date: str) -> str:
    try:
        if not re.match(DATE_PATTERN, date):
            raise ValueError
        datetime.date.fromisoformat(date)
    except ValueError as err:
        raise CalendarError(f"date {date!r} is not a YYYY-MM-DD date") from err
    return date


def _check_time(name: str, value: str) -> int:
    if (
        not re.match(TIME_PATTERN, value)
        or int(value[:2]) > 24
        or int(value[3:]) > 59
        or parse_hhmm(value) > 24 * 60
    ):
        raise CalendarError(f"{name} {value!r} is not an HH:MM time")
    return parse_hhmm(value)


class Calendar:
    """Events in a SQLite file. Every call opens its own connection, so instances are cheap and
    several processes may share one file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
                " date TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL)"
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path)
        try:
            with db:  # commits or rolls back
                yield db
        finally:
            db.close()

    def list_events(self, date: str) -> list[dict[str, str]]:
        """Events on `date`, by start time."""
        _check_date(date)
        with self._connect() as db:
            rows = db.execute(
                "SELECT title, start, end FROM events WHERE date = ? ORDER BY start, end, id", (date,)
            ).fetchall()
        return [{"title": t, "start": s, "end": e} for t, s, e in rows]

    def add_event(self, title: str, date: str, start: str, end: str) -> dict[str, Any]:
        """Add an event; overlapping events are allowed (as in real calendars) and listed back."""
        title = title.strip()
        if not title or len(title) > 100:
            raise CalendarError("title must have 1..100 characters")
        _check_date(date)
        lo, hi = _check_time("start", start), _check_time("end", end)
        if hi <= lo:
            raise CalendarError(f"end {end} is not after start {start}")
        overlaps = [
            e["title"]
            for e in self.list_events(date)
            if parse_hhmm(e["start"]) < hi and lo < parse_hhmm(e["end"])
        ]
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (title, date, start, end) VALUES (?, ?, ?, ?)", (title, date, start, end)
            )
        return {"added": {"title": title, "date": date, "start": start, "end": end}, "overlaps": overlaps}

    def find_free_slot(
        self, date: str, duration_minutes: int, day_start: str = DAY_START, day_end: str = DAY_END
    ) -> dict[str, str] | None:
        """The earliest `duration_minutes` gap between `day_start` and `day_end`; None when none fits.
        Overlapping events are merged first."""
        _check_date(date)
        if not 1 <= duration_minutes <= 24 * 60:
            raise CalendarError("duration_minutes must be in 1..1440")
        cursor, end_of_day = _check_time("day_start", day_start), _check_time("day_end", day_end)
        for event in self.list_events(date):  # sorted by start
            lo, hi = parse_hhmm(event["start"]), parse_hhmm(event["end"])
            if lo - cursor >= duration_minutes and cursor + duration_minutes <= end_of_day:
                break
            cursor = max(cursor, hi)
        if cursor + duration_minutes > end_of_day:
            return None
        return {"date": date, "start": format_hhmm(cursor), "end": format_hhmm(cursor + duration_minutes)}

    def seed(self, events: Sequence[tuple[str, str, str, str]] = SEED_EVENTS) -> None:
        with self._connect() as db:
            db.executemany("INSERT INTO events (title, date, start, end) VALUES (?, ?, ?, ?)", events)
