"""`segserver bench ...`: benchmarks that print ratios against a baseline measured
in the same run (the machine is shared and noisy; absolute times drift)."""
