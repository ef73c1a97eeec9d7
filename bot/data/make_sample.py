"""Rebuild ``banking77_sample.csv`` and ``banking77_labels.yml`` from Banking77's ``train.csv``.

Usage: ``python bot/data/make_sample.py PATH/TO/banking77/train.csv`` (writes next to this file).
Deterministic: the same input always gives byte-identical output (see README.md in this folder).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE_NAME = "banking77_sample.csv"
LABELS_NAME = "banking77_labels.yml"
TOTAL = 400

# Twelve intents: a few that are easy to tell apart and a few pairs that are easy to confuse
# (arrival vs. delivery estimate, not working vs. lost), so the demo's model has something to learn.
INTENTS: dict[str, str] = {
    "card_arrival": "My new card has not arrived yet",
    "card_delivery_estimate": "How long will the card take to arrive",
    "card_not_working": "The card is declined or does not work",
    "lost_or_stolen_card": "The card was lost or stolen",
    "exchange_rate": "What exchange rate is used",
    "top_up_failed": "A top-up did not go through",
    "pending_transfer": "A transfer is still pending",
    "cash_withdrawal_charge": "A fee was charged for a cash withdrawal",
    "change_pin": "How to change the card's PIN",
    "apple_pay_or_google_pay": "Using Apple Pay or Google Pay",
    "terminate_account": "Closing the account",
    "request_refund": "Asking for a refund",
}


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sample_rows(train_csv: Path) -> list[dict[str, str]]:
    """``TOTAL`` rows spread evenly over ``INTENTS`` (the first intents get the remainder), chosen by
    SHA-1 of the text within each intent, then shuffled by the same hash; ids are ``train-<row>``."""
    with open(train_csv, encoding="utf-8", newline="") as handle:
        rows = [
            {"id": f"train-{i:05d}", "text": row["text"].strip(), "category": row["category"]}
            for i, row in enumerate(csv.DictReader(handle))
        ]
    per, extra = divmod(TOTAL, len(INTENTS))
    chosen: list[dict[str, str]] = []
    for n, intent in enumerate(INTENTS):
        pool = sorted((r for r in rows if r["category"] == intent), key=lambda r: _key(r["text"]))
        chosen += pool[: per + (1 if n < extra else 0)]
    return sorted(chosen, key=lambda r: _key(r["text"]))


def main(train_csv: str) -> None:
    rows = sample_rows(Path(train_csv))
    with open(HERE / SAMPLE_NAME, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "category"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# The demo project's labels: twelve Banking77 intents (see README.md)."]
    lines += [f"{name}: {description}" for name, description in INTENTS.items()]
    (HERE / LABELS_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} rows to {HERE / SAMPLE_NAME}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "banking77" / "train.csv"
    main(sys.argv[1] if len(sys.argv) > 1 else str(default))
