"""Confirmations of one item redeemed together: ``redeem_rewards``, a PL/pgSQL function that
runs ``redeem_reward`` (migration 0025) for each of a group of members in one transaction
(models/redemption_groups.py says why and when).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 23:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every member's row is locked first, in id order, then each redemption runs as
# ``redeem_reward`` does alone (it takes the item's row at its end, and keeps it to the commit):
# the ledger's lock order, members before the item, for the whole group, so neither a
# cancellation holding one member and waiting for the item, nor another process's group, can
# deadlock with it. One group is one item. Each member's redemption is a block of its own: one
# that fails is answered ``failed`` (with the error) and undone alone; the others commit. The
# arguments are ``redeem_reward``'s, one array element per member (the item, coupon kinds and
# expiry reason are shared); out come ``redeem_reward``'s rows, each with its member's position
# (``slot``, from 1) and, when ``failed``, the error (``failure``).
_FUNCTION = r"""
CREATE FUNCTION redeem_rewards(
    p_members bigint[], p_item bigint, p_keys text[], p_now timestamptz[],
    p_month_start timestamptz[], p_year_start timestamptz[], p_expected bigint[],
    p_pickup_codes text[], p_coupon_codes text[], p_coupon_kinds text[], p_coupon_days int[],
    p_expire_keys text[], p_expire_reason text)
RETURNS TABLE(
    slot int, failure text,
    outcome text, shortfall bigint, refusal_opens_at timestamptz,
    redemption_id bigint, spent bigint, cash_due bigint, balance_after bigint,
    redemption_status text, coupon_code text, coupon_valid_until timestamptz,
    pickup_code text,
    id bigint, name text, description text, kind text, coupon_kind text, delivery text,
    points_price bigint, cash_fen bigint, stock int, valid_from timestamptz,
    valid_until timestamptz, limit_count int, limit_period text, tiers json,
    early_tiers json, opens_at timestamptz, image_url text, status text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM members m WHERE m.id = ANY(p_members) ORDER BY m.id FOR UPDATE;
    FOR i IN 1 .. coalesce(cardinality(p_members), 0) LOOP
        BEGIN
            RETURN QUERY SELECT i, NULL::text, r.* FROM redeem_reward(
                p_members[i], p_item, p_keys[i], p_now[i], p_month_start[i], p_year_start[i],
                p_expected[i], p_pickup_codes[i], p_coupon_codes[i], p_coupon_kinds,
                p_coupon_days, p_expire_keys[i], p_expire_reason) r;
        EXCEPTION WHEN OTHERS THEN
            slot := i;
            failure := SQLSTATE || ': ' || SQLERRM;
            outcome := 'failed';
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION redeem_rewards(bigint[], bigint, text[], timestamptz[], timestamptz[],"
            " timestamptz[], bigint[], text[], text[], text[], int[], text[], text)"
        )
