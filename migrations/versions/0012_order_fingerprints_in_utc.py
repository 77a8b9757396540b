"""Order fingerprints hash the paid time in UTC, not in the offset the shop wrote it with, so
the same order sent again as +08:00 or Z is recognised. Every stored fingerprint is computed
again from its row (the order as recorded: its member, amount, time, channel, category).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 09:00:00
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
orders = sa.table(
    "orders",
    sa.column("id", sa.BigInteger()),
    sa.column("shop_order_id", sa.String()),
    sa.column("member_id", sa.BigInteger()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("paid_at", sa.DateTime(timezone=True)),
    sa.column("channel", sa.String()),
    sa.column("category", sa.String()),
    sa.column("fingerprint", sa.String()),
)


def _fingerprint(row: sa.Row) -> str:
    # A frozen copy of models.orders.OrderIn.fingerprint as of this revision.
    paid_at: datetime = row.paid_at
    paid_at = paid_at.replace(tzinfo=UTC) if paid_at.tzinfo is None else paid_at
    canonical = json.dumps(
        [
            row.shop_order_id,
            row.member_id,
            row.amount_fen,
            paid_at.astimezone(UTC).isoformat(),
            row.channel,
            row.category,
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def upgrade() -> None:
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(orders).where(orders.c.id > after).order_by(orders.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        changed = [
            {"i": row.id, "f": fingerprint}
            for row in rows
            if (fingerprint := _fingerprint(row)) != row.fingerprint
        ]
        if changed:
            connection.execute(
                orders.update()
                .where(orders.c.id == sa.bindparam("i"))
                .values(fingerprint=sa.bindparam("f")),
                changed,
            )
        after = rows[-1].id


def downgrade() -> None:
    # The offsets the shops wrote were never stored: the UTC fingerprints stay.
    pass
