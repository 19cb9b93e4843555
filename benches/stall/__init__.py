"""How long clients are held by push and sync windows under pgbench load."""
