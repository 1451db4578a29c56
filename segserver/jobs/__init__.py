"""Background work of a running server: trigger delivery (and, beside it, bulk
recompute, the exact-expiry scheduler and size-history snapshots). Nothing here
knows HTTP."""
