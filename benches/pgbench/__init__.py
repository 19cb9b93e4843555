"""pgbench through the sidecar, PgBouncer, HAProxy and directly, and the harness the other benchmarks share."""
