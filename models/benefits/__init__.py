"""礼遇规则: benefit rules that issue coupons and points when something happens.

One module per kind of rule (``welcome``, ``orders``, ``upgrade``, ``periodic``, ``segment``,
``boosts``, ``behaviour``), the shared machinery in ``engine`` (grants, budgets, overrides)
and ``registry`` (every rule, for the console and the copy check). The settings live in
``config`` (``[programme.benefits]``), which ``models.rules`` imports: this file stays empty
of imports so that ``models.rules`` can load ``models.benefit_settings`` without a cycle.
"""
