"""A redemption in one round trip: ``redeem_reward``, a PL/pgSQL function doing on
PostgreSQL what models/redemption.py ``_redeem_in_python`` does in ten statements (see that
module's docstring; tests/models/test_rewards_in_db.py pins the two together). SQLite has no
such functions and keeps the Python path.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 17:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The steps, lock order and refusals are models/redemption.py's (``redeem``), models/rewards.py's
# (``closed_to``) and models/ledger.py's (``debit_locked``, ``_expire_member_lots``); every
# statement takes a fresh snapshot (READ COMMITTED, a VOLATILE function), so what follows the
# member's lock sees what the transaction it waited for committed. What Python decides (the pickup
# or coupon code, the period starts, the coupon kinds' validity, the expiry entry's key and reason)
# comes in as arguments. One row out: ``outcome`` (redeemed, replayed, no_member, key_conflict,
# code_taken, unknown_coupon_kind, or a refusal reason), the redemption and the item.
_FUNCTION = r"""
CREATE FUNCTION redeem_reward(
    p_member bigint, p_item bigint, p_key text, p_now timestamptz,
    p_month_start timestamptz, p_year_start timestamptz, p_expected bigint,
    p_pickup_code text, p_coupon_code text, p_coupon_kinds text[], p_coupon_days int[],
    p_expire_key text, p_expire_reason text)
RETURNS TABLE(
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
DECLARE
    v_balance bigint;
    v_tier text;
    v_item reward_items%ROWTYPE;
    v_used bigint;
    v_since timestamptz;
    v_lot_ids bigint[];
    v_lot_left bigint[];
    v_lot_due boolean[];
    v_due bigint := 0;
    v_need bigint;
    v_part bigint;
    v_drawn_ids bigint[] := '{}';
    v_drawn_parts bigint[] := '{}';
    v_reason text;
    v_entry bigint;
    v_days int;
    v_coupon bigint;
    v_left int;
    v_earlier reward_redemptions%ROWTYPE;
BEGIN
    PERFORM 1 FROM members m WHERE m.id = p_member FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'no_member';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT m.points_balance, m.tier INTO v_balance, v_tier FROM members m WHERE m.id = p_member;
    SELECT * INTO v_earlier FROM reward_redemptions r WHERE r.idempotency_key = p_key;
    IF FOUND THEN
        IF v_earlier.member_id <> p_member OR v_earlier.item_id <> p_item THEN
            outcome := 'key_conflict';
            RETURN NEXT;
            RETURN;
        END IF;
        outcome := 'replayed';
        redemption_id := v_earlier.id;
        spent := v_earlier.points;
        cash_due := v_earlier.cash_fen;
        balance_after := v_balance;
        redemption_status := v_earlier.status;
        pickup_code := v_earlier.pickup_code;
        SELECT c.code, c.valid_until INTO coupon_code, coupon_valid_until
            FROM coupons c WHERE c.id = v_earlier.coupon_id;
    END IF;
    SELECT * INTO v_item FROM reward_items i WHERE i.id = p_item;
    IF v_item.id IS NOT NULL THEN
        id := v_item.id; name := v_item.name; description := v_item.description;
        kind := v_item.kind; coupon_kind := v_item.coupon_kind; delivery := v_item.delivery;
        points_price := v_item.points_price; cash_fen := v_item.cash_fen;
        stock := v_item.stock; valid_from := v_item.valid_from;
        valid_until := v_item.valid_until; limit_count := v_item.limit_count;
        limit_period := v_item.limit_period; tiers := v_item.tiers;
        early_tiers := v_item.early_tiers; opens_at := v_item.opens_at;
        image_url := v_item.image_url; status := v_item.status;
    END IF;
    IF outcome = 'replayed' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_item.id IS NULL THEN
        outcome := 'unknown';
    ELSIF v_item.status <> 'active' THEN
        outcome := 'retired';
    ELSIF v_item.valid_until IS NOT NULL AND v_item.valid_until <= p_now THEN
        outcome := 'ended';
    ELSIF v_item.valid_from IS NOT NULL AND v_item.valid_from > p_now THEN
        outcome := 'not_open_yet';
        refusal_opens_at := v_item.valid_from;
    ELSIF json_array_length(v_item.tiers) > 0 AND NOT (v_item.tiers::jsonb ? v_tier) THEN
        outcome := 'not_in_tier';
    ELSIF v_item.opens_at IS NOT NULL AND p_now < v_item.opens_at
            AND NOT (v_item.early_tiers::jsonb ? v_tier) THEN
        outcome := 'not_open_yet';
        refusal_opens_at := v_item.opens_at;
    ELSIF v_item.stock IS NOT NULL AND v_item.stock <= 0 THEN
        outcome := 'sold_out';
    END IF;
    IF outcome IS NULL AND v_item.limit_count IS NOT NULL THEN
        v_since := CASE v_item.limit_period
            WHEN 'month' THEN p_month_start WHEN 'year' THEN p_year_start END;
        SELECT count(*) INTO v_used FROM reward_redemptions r
            WHERE r.member_id = p_member AND r.item_id = p_item AND r.status <> 'cancelled'
            AND (v_since IS NULL OR r.created_at >= v_since);
        IF v_used >= v_item.limit_count THEN
            outcome := 'limit_reached';
        END IF;
    END IF;
    IF outcome IS NULL AND p_expected IS NOT NULL AND p_expected <> v_item.points_price THEN
        outcome := 'price_changed';
    ELSIF outcome IS NULL AND v_balance < v_item.points_price THEN
        outcome := 'not_enough_points';
        shortfall := v_item.points_price - v_balance;
    END IF;
    IF outcome IS NULL AND v_item.kind = 'coupon' AND v_item.coupon_kind IS NOT NULL THEN
        v_days := p_coupon_days[array_position(p_coupon_kinds, v_item.coupon_kind::text)];
        IF v_days IS NULL THEN
            outcome := 'unknown_coupon_kind';
        END IF;
    END IF;
    IF outcome IS NOT NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;

    -- The open lots, in the order a debit draws them; the due ones expire first.
    SELECT array_agg(l.id ORDER BY l.earned_at, l.id),
           array_agg(l.remaining ORDER BY l.earned_at, l.id),
           array_agg(l.expires_at <= p_now ORDER BY l.earned_at, l.id)
        INTO v_lot_ids, v_lot_left, v_lot_due
        FROM point_lots l WHERE l.member_id = p_member AND l.remaining > 0;
    v_need := v_item.points_price;
    FOR n IN 1 .. coalesce(array_length(v_lot_ids, 1), 0) LOOP
        IF v_lot_due[n] THEN
            v_due := v_due + v_lot_left[n];
        ELSIF v_need > 0 THEN
            v_part := least(v_lot_left[n], v_need);
            v_need := v_need - v_part;
            v_drawn_ids := v_drawn_ids || v_lot_ids[n];
            v_drawn_parts := v_drawn_parts || v_part;
        END IF;
    END LOOP;
    IF v_balance - v_due < v_item.points_price THEN
        outcome := 'not_enough_points';
        shortfall := v_item.points_price - (v_balance - v_due);
        RETURN NEXT;
        RETURN;
    END IF;

    v_reason := 'reward:' || p_item;
    BEGIN
        IF v_due > 0 THEN
            UPDATE point_lots l SET expired_points = l.remaining, remaining = 0,
                    expired_at = p_now
                WHERE l.member_id = p_member AND l.remaining > 0 AND l.expires_at <= p_now;
        END IF;
        UPDATE members m SET points_balance = m.points_balance - v_due - v_item.points_price
            WHERE m.id = p_member RETURNING m.points_balance INTO balance_after;
        UPDATE point_lots l SET remaining = l.remaining - d.part
            FROM unnest(v_drawn_ids, v_drawn_parts) AS d(lot_id, part) WHERE l.id = d.lot_id;
        IF v_due > 0 THEN
            INSERT INTO ledger_entries (member_id, kind, points, balance_after, reason,
                    idempotency_key, created_at)
                VALUES (p_member, 'expire', -v_due, balance_after + v_item.points_price,
                    p_expire_reason, p_expire_key, p_now);
            INSERT INTO member_events (member_id, kind, payload, created_at)
                VALUES (p_member, 'points_changed', json_build_object('points', -v_due,
                    'balance', balance_after + v_item.points_price, 'kind', 'expire',
                    'reason', p_expire_reason), p_now);
        END IF;
        INSERT INTO ledger_entries (member_id, kind, points, balance_after, reason,
                idempotency_key, created_at)
            VALUES (p_member, 'redeem', -v_item.points_price, balance_after, v_reason,
                'reward:' || p_key, p_now)
            RETURNING ledger_entries.id INTO v_entry;
        INSERT INTO member_events (member_id, kind, payload, created_at)
            VALUES (p_member, 'points_changed', json_build_object('points',
                -v_item.points_price, 'balance', balance_after, 'kind', 'redeem',
                'reason', v_reason), p_now);
        IF v_days IS NOT NULL THEN
            INSERT INTO coupons (code, member_id, kind, status, reason, idempotency_key,
                    issued_at, valid_from, valid_until)
                VALUES (p_coupon_code, p_member, v_item.coupon_kind, 'issued', v_reason,
                    'reward:' || p_key, p_now, p_now, p_now + make_interval(days => v_days))
                RETURNING coupons.id, coupons.code, coupons.valid_until
                INTO v_coupon, coupon_code, coupon_valid_until;
            redemption_status := 'issued';
        ELSE
            pickup_code := p_pickup_code;
            redemption_status := 'pending';
        END IF;
        INSERT INTO reward_redemptions (item_id, member_id, idempotency_key, points, cash_fen,
                status, coupon_id, pickup_code, entry_id, drawn, created_at)
            VALUES (p_item, p_member, p_key, v_item.points_price, v_item.cash_fen,
                redemption_status, v_coupon, pickup_code, v_entry,
                coalesce((SELECT json_agg(json_build_array(d.lot_id, d.part))
                    FROM unnest(v_drawn_ids, v_drawn_parts) AS d(lot_id, part)), '[]'::json),
                p_now)
            RETURNING reward_redemptions.id INTO redemption_id;
        IF v_item.stock IS NOT NULL THEN
            UPDATE reward_items i SET stock = i.stock - 1 WHERE i.id = p_item AND i.stock > 0
                RETURNING i.stock INTO v_left;
            IF v_left IS NULL THEN
                RAISE EXCEPTION 'sold out' USING ERRCODE = 'P0001', HINT = 'sold_out';
            END IF;
            stock := v_left;
        END IF;
    EXCEPTION
        WHEN raise_exception THEN
            -- Sold out meanwhile: everything since BEGIN is undone.
            outcome := 'sold_out';
            shortfall := NULL; redemption_id := NULL; balance_after := NULL;
            coupon_code := NULL; coupon_valid_until := NULL; pickup_code := NULL;
            redemption_status := NULL;
            RETURN NEXT;
            RETURN;
        WHEN unique_violation THEN
            IF SQLERRM NOT LIKE '%uq_coupons_code%' THEN
                RAISE;
            END IF;
            outcome := 'code_taken';
            RETURN NEXT;
            RETURN;
    END;
    outcome := 'redeemed';
    spent := v_item.points_price;
    cash_due := v_item.cash_fen;
    RETURN NEXT;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION redeem_reward(bigint, bigint, text, timestamptz, timestamptz,"
            " timestamptz, bigint, text, text, text[], int[], text, text)"
        )
