"""WISV: channel-aware semantic verification (ALGORITHMS.md section 6).

Lossy by design: a decision head may accept a draft token that strict
verification rejects.  Strict verification stays the default; every run,
summary row and report page that uses semantic verification says so.
"""

LOSSY_LABEL = "semantic (WISV, lossy by design)"
