"""A million-member brand in PostgreSQL in a few minutes, for bench/report.py: set-based SQL
only (generate_series and INSERT … SELECT run by the server; nothing is generated in Python).

Over the 18 months to ``now``: members joining all along (5% unfollowed since), tiers and
segments drawn in plausible shares; orders for about three members in four (geometric counts,
3.8 a member on average, heavy-tailed), log-normal amounts in five channels and six
categories, 2% refunded in full and 2% in part; one ``earn`` ledger entry and point lot per
order, ``redeem`` entries for a fifth of the members and ``expire`` ones for a tenth; coupons
of every kind and several reasons, about 45% redeemed; binding codes, referrals, ratings (CSAT
and NPS), conversations, monthly win-back deliveries and a campaign run a month with its
holdout. Draws use ``random()`` after ``setseed``, so a run is repeatable for a given ``now``.

The data is consistent where the figures look: net spend, refunds, purchase dates, the
tier and segment columns the figures group by, coupon and ledger dates. It is not a valid
ledger: ``points_balance`` is not kept equal to the entries (the figures never read it), so
``ledger verify`` is not expected to pass on it.
"""

from __future__ import annotations

import time
from datetime import datetime

import asyncpg

# (label, statement); ``$1::int`` is the number of members, ``$2::timestamptz`` the clock.
STEPS: list[tuple[str, str]] = [
    (
        "plan",
        """CREATE UNLOGGED TABLE fs_plan AS
           SELECT g::bigint AS id,
                  $2::timestamptz - random() * interval '540 days' AS joined,
                  -- geometric: most members buy a few times, some many, a quarter never
                  CASE WHEN random() < 0.25 THEN 0
                       ELSE 1 + floor(-ln(1 - random()) * 4.5)::int END AS n_orders,
                  random() AS r
           FROM generate_series(1, $1::int) g""",
    ),
    (
        "members",
        """INSERT INTO members (id, openid, name, phone, birthday, tags, points_balance, tier,
               tier_since, segment, segment_at, subscribed, subscribed_at, unsubscribed_at,
               last_interaction_at, created_at)
           SELECT id, 'o_fs_' || id, 'member ' || id, '138' || lpad((id % 100000000)::text, 8, '0'),
               date '1970-01-01' + (random() * 15000)::int, '[]', 0,
               CASE WHEN n_orders >= 12 THEN 'diamond' WHEN n_orders >= 7 THEN 'gold'
                    WHEN n_orders >= 3 THEN 'silver' ELSE 'basic' END,
               joined,
               (ARRAY['core','important','potential','at_risk','dormant','other'])
                   [1 + floor(r * 6)::int],
               $2::timestamptz - interval '1 day',
               r >= 0.05, joined,
               CASE WHEN r < 0.05 THEN joined + (($2::timestamptz - joined) * random()) END,
               joined, joined
           FROM fs_plan ORDER BY id""",
    ),
    (
        "orders",
        """INSERT INTO orders (shop_order_id, member_id, amount_fen, refunded_fen, paid_at,
               channel, category, points_earned, points_reversed, fingerprint, created_at)
           SELECT 'FS' || member_id || '-' || n, member_id, amount,
               CASE WHEN refund < 0.02 THEN amount WHEN refund < 0.04 THEN amount / 2 ELSE 0 END,
               paid_at,
               (ARRAY['miniprogram','store','store','tmall','jd'])[1 + floor(random() * 5)::int],
               (ARRAY['apparel','shoes','beauty','home','food',NULL])[1 + floor(random() * 6)::int],
               amount / 100,
               CASE WHEN refund < 0.02 THEN amount / 100 WHEN refund < 0.04 THEN amount / 200
                    ELSE 0 END,
               md5('FS' || member_id || '-' || n), paid_at
           FROM (
               SELECT p.id AS member_id, s.n,
                   (exp(random() * 2.6) * 3000)::bigint AS amount, random() AS refund,
                   p.joined + ($2::timestamptz - p.joined) * random() AS paid_at
               FROM fs_plan p CROSS JOIN LATERAL generate_series(1, p.n_orders) AS s(n)
           ) o
           ORDER BY paid_at""",
    ),
    (
        "ledger: earn",
        """INSERT INTO ledger_entries (member_id, kind, points, balance_after, reason,
               idempotency_key, order_id, created_at)
           SELECT member_id, 'earn', points_earned, 0, 'order', 'fs-earn-' || id, id, paid_at
           FROM orders WHERE points_earned > 0 ORDER BY id""",
    ),
    (
        "ledger: redeem, expire",
        """INSERT INTO ledger_entries (member_id, kind, points, balance_after, reason,
               idempotency_key, created_at)
           SELECT id, kind, -(50 + floor(random() * 500))::bigint, 0, kind,
               'fs-' || kind || '-' || id,
               joined + ($2::timestamptz - joined) * random()
           FROM fs_plan CROSS JOIN LATERAL (
               SELECT 'redeem' AS kind WHERE r >= 0.05 AND r < 0.25
               UNION ALL SELECT 'expire' WHERE r >= 0.3 AND r < 0.4) k
           WHERE n_orders > 0
           ORDER BY 7""",
    ),
    (
        "point lots",
        """INSERT INTO point_lots (member_id, entry_id, order_id, amount, remaining, earned_at,
               expires_at, expired_points)
           SELECT member_id, id, order_id, points, points, created_at,
               created_at + interval '1 year', 0
           FROM ledger_entries WHERE kind = 'earn' ORDER BY id""",
    ),
    (
        "coupons",
        """INSERT INTO coupons (code, member_id, kind, status, reason, idempotency_key,
               issued_at, valid_from, valid_until, redeemed_at, shop_order_id)
           SELECT 'FS' || g, member_id, kind, status, reason, 'fs-coupon-' || g, issued,
               issued, issued + interval '30 days',
               CASE WHEN status = 'redeemed' THEN issued + random() * interval '25 days' END,
               NULL
           FROM (
               SELECT g, 1 + floor(random() * $1::int)::bigint AS member_id,
                   (ARRAY['full_300_50','cash_10','newcomer_20','birthday_gift',
                          'tier_discount_95'])[1 + floor(random() * 5)::int] AS kind,
                   (ARRAY['winback','birthday','newcomer','tier_gift','campaign'])
                       [1 + floor(random() * 5)::int] AS reason,
                   t AS issued,
                   CASE WHEN random() < 0.45 AND t < $2::timestamptz - interval '1 day'
                        THEN 'redeemed'
                        WHEN t + interval '30 days' < $2::timestamptz THEN 'expired'
                        ELSE 'issued' END AS status
               FROM generate_series(1, ($1::int * 3) / 2) g
               CROSS JOIN LATERAL (SELECT $2::timestamptz - random() * interval '540 days'
                                   + g * interval '0' AS t) x
           ) c
           ORDER BY issued""",
    ),
    (
        "binding codes",
        """INSERT INTO binding_codes (code, member_id, created_at, expires_at, used_at)
           SELECT 'FSB' || id, id, joined + interval '1 hour', joined + interval '1 day',
               joined + interval '2 hours'
           FROM fs_plan WHERE r < 0.3""",
    ),
    (
        "referrals",
        """INSERT INTO referrals (referrer_id, referee_id, code, source, status, attributed_at,
               referrer_points, newcomer_points)
           SELECT 1 + (id * 7919) % $1::int, id, 'FSR' || id, 'subscribe',
               (ARRAY['joined','first_order','rewarded'])[1 + (id % 3)::int], joined, 0, 0
           FROM fs_plan WHERE id % 33 = 0 AND 1 + (id * 7919) % $1::int <> id""",
    ),
    (
        "ratings",
        """INSERT INTO ratings (question_id, member_id, kind, score, comment, context,
               context_ref, tier, segment, asked_at, answered_at)
           SELECT 'fs-q-' || g, m.id, kind, score, NULL, 'order', NULL, m.tier, m.segment,
               at - interval '1 hour', at
           FROM (
               SELECT g, 1 + floor(random() * $1::int)::bigint AS member_id,
                   CASE WHEN g % 3 = 0 THEN 'nps' ELSE 'csat' END AS kind,
                   CASE WHEN g % 3 = 0 THEN least(10, floor(random() * 14)::int)
                        ELSE least(5, 1 + floor(random() * 6)::int) END AS score,
                   $2::timestamptz - random() * interval '540 days' + g * interval '0' AS at
               FROM generate_series(1, $1::int / 3) g
           ) x JOIN members m ON m.id = x.member_id
           ORDER BY at""",
    ),
    (
        "conversations",
        """INSERT INTO conversations (member_id, status, reason, queued_at, first_response_at,
               last_activity_at, closed_at, outcome)
           SELECT member_id, 'closed', 'asked', q,
               q + random() * interval '90 minutes', q + interval '2 hours',
               q + random() * interval '30 hours',
               (ARRAY['closed','closed','handed_back','idle'])[1 + (g % 4)::int]
           FROM (
               SELECT g, 1 + floor(random() * $1::int)::bigint AS member_id,
                   $2::timestamptz - interval '1 day' - random() * interval '540 days'
                       + g * interval '0' AS q
               FROM generate_series(1, $1::int / 10) g
           ) x
           ORDER BY q""",
    ),
    (
        "deliveries",
        # The monthly win-back offer: a share of the members each month, sent.
        """INSERT INTO deliveries (dedupe_key, purpose, category, member_id, payload, status,
               channel, attempts, not_before, created_at, updated_at)
           SELECT 'fs:winback:' || mo || ':' || id, 'winback', 'marketing', id, '{}', 'sent',
               'custom', 1, at, at, at
           FROM generate_series(0, 17) mo
           CROSS JOIN LATERAL (
               SELECT id, date_trunc('month', $2::timestamptz) - mo * interval '1 month'
                   + interval '10 days' AS at
               FROM fs_plan WHERE (id + mo * 13) % 40 = 0) x
           WHERE at < $2::timestamptz""",
    ),
    (
        "campaigns",
        """INSERT INTO campaigns (id, name, status, audience, variants, holdout_percent,
               schedule, conversion_days, created_by, created_at, updated_at)
           VALUES (1000001, 'fast-seed win-back', 'finished', '{}',
               '[{"name": "A", "text": "x", "share": 100}]', 10, 'monthly', 14, 'bench',
               $2::timestamptz - interval '540 days', $2::timestamptz - interval '540 days')""",
    ),
    (
        "campaign runs",
        """INSERT INTO campaign_runs (id, campaign_id, started_at, targeted, planned,
               planned_through)
           SELECT 1000001 + mo, 1000001,
               date_trunc('month', $2::timestamptz) - mo * interval '1 month'
                   + interval '5 days', $1::int / 100, true, $1::int
           FROM generate_series(0, 17) mo
           WHERE date_trunc('month', $2::timestamptz) - mo * interval '1 month'
                 + interval '5 days' < $2::timestamptz""",
    ),
    (
        "campaign members",
        """INSERT INTO campaign_members (run_id, member_id, variant)
           SELECT r.id, p.id, CASE WHEN p.id % 10 = 0 THEN 'holdout' ELSE 'A' END
           FROM campaign_runs r JOIN fs_plan p ON (p.id + r.id) % 100 = 0
           WHERE r.campaign_id = 1000001""",
    ),
    ("clean up", "DROP TABLE fs_plan"),
]


def _bind(statement: str, members: int, now: datetime) -> str:
    # Literals, not parameters: a statement may use only one of them, and both are ours.
    return statement.replace("$1::int", f"{int(members)}").replace(
        "$2::timestamptz", f"'{now.isoformat()}'::timestamptz"
    )


# The big tables: their secondary indexes and unique constraints are dropped for the load and
# built again after it (a sort each, instead of millions of random B-tree inserts).
BULK_TABLES = ("orders", "ledger_entries", "point_lots", "coupons", "ratings", "deliveries")
_SECONDARY = """
    SELECT 'ALTER TABLE ' || conrelid::regclass || ' DROP CONSTRAINT ' || quote_ident(conname),
           'ALTER TABLE ' || conrelid::regclass || ' ADD CONSTRAINT ' || quote_ident(conname)
               || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE contype = 'u' AND conrelid::regclass::text = ANY($1)
    UNION ALL
    SELECT 'DROP INDEX ' || quote_ident(i.indexname), i.indexdef
    FROM pg_indexes i
    WHERE i.tablename = ANY($1) AND i.schemaname = 'public'
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


async def fast_seed(dsn: str, members: int, now: datetime, *, log: bool = True) -> float:
    """Load the brand into the (migrated, empty) database at ``dsn`` (a libpq/asyncpg DSN),
    then VACUUM ANALYZE; returns the seconds it took."""
    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        # Same draws for the same size and clock.
        await connection.execute("SELECT setseed(0.19)")
        # The data is consistent by construction: skip the per-row foreign-key triggers.
        await connection.execute("SET session_replication_role = replica")
        await connection.execute("SET maintenance_work_mem = '512MB'")
        await connection.execute("SET work_mem = '256MB'")
        secondary = await connection.fetch(_SECONDARY, list(BULK_TABLES))
        for drop, _ in secondary:
            await connection.execute(drop)
        for label, statement in STEPS:
            step = time.perf_counter()
            status = await connection.execute(_bind(statement, members, now))
            if log:
                print(f"  {label}: {status} ({time.perf_counter() - step:.1f} s)", flush=True)
        step = time.perf_counter()
        for _, create in secondary:
            await connection.execute(create)
        if log:
            print(f"  indexes: {len(secondary)} ({time.perf_counter() - step:.1f} s)", flush=True)
        for sequence, table in (
            ("campaigns_id_seq", "campaigns"),
            ("campaign_runs_id_seq", "campaign_runs"),
            ("members_id_seq", "members"),
        ):
            await connection.execute(f"SELECT setval('{sequence}', (SELECT max(id) FROM {table}))")
        step = time.perf_counter()
        await connection.execute("VACUUM ANALYZE")
        if log:
            print(f"  VACUUM ANALYZE ({time.perf_counter() - step:.1f} s)", flush=True)
    finally:
        await connection.close()
    return time.perf_counter() - started
