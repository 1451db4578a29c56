"""Pure decision policy (DESIGN.md "Decisions"): priority resolution with exclusive
groups, holdouts and site-wide interruptive limits (`policy`), sticky A/B buckets
(`buckets`), frequency-cap fields and the reserve-and-redecide rule (`caps`), and
signed decision tokens (`tokens`). No I/O; time is a parameter.
"""

from segserver.decide.buckets import BUCKETS, HASH_VERSION, bucket
from segserver.decide.caps import (
    ROUNDS,
    Counts,
    Periods,
    as_if_full,
    cap_field,
    cap_increments,
    redecide,
)
from segserver.decide.policy import (
    DAY,
    Campaign,
    Cap,
    Considered,
    Decision,
    Policy,
    Result,
    Variant,
    decide,
    in_global_holdout,
    in_holdout,
    variant_of,
)
from segserver.decide.tokens import TOKEN_TTL, make_token, read_token

__all__ = [
    "BUCKETS",
    "DAY",
    "HASH_VERSION",
    "ROUNDS",
    "TOKEN_TTL",
    "Campaign",
    "Cap",
    "Considered",
    "Counts",
    "Decision",
    "Periods",
    "Policy",
    "Result",
    "Variant",
    "as_if_full",
    "bucket",
    "cap_field",
    "cap_increments",
    "decide",
    "in_global_holdout",
    "in_holdout",
    "make_token",
    "read_token",
    "redecide",
    "variant_of",
]
