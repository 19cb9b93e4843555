"""Runs the driver-matrix scenario with psycopg 3: one line per step on stdout, exit status 1 at
the first unexpected result.

    python check.py HOST PORT USER PASSWORD DBNAME
"""

import os
import sys

import psycopg


class StepFailed(Exception):
    pass


step = "connect"


def begin(name):
    global step
    step = name


def passed(detail=None):
    print(f"{step}: ok" if detail is None else f"{step}: ok {detail}", flush=True)


def expect(got, want):
    if got != want:
        raise StepFailed(f"got {got}, want {want}")
    passed(got)


def scenario(host, port, user, password, dbname):
    # require_auth (libpq 16+) makes libpq refuse any login other than SCRAM-SHA-256.
    scram_only = {"require_auth": "scram-sha-256"} if psycopg.pq.version() >= 160000 else {}
    conn = psycopg.connect(
        host=host, port=port, user=user, password=password, dbname=dbname,
        connect_timeout=10, autocommit=True, **scram_only,
    )
    passed()

    begin("simple")  # Without parameters psycopg uses the simple query protocol.
    expect(conn.execute("SELECT 40 + 2").fetchone()[0], 42)

    begin("params")  # psycopg sends %s placeholders as $1, $2, ...
    row = conn.execute("SELECT %s::int4 + %s::int4, %s::text", (40, 2, "hello")).fetchone()
    expect(f"{row[0]} {row[1]}", "42 hello")

    begin("prepared")  # prepare=True: parsed once as a named statement, then reused.
    doubled = [
        conn.execute("SELECT %s::int4 * 2", (i,), prepare=True).fetchone()[0] for i in (1, 2, 3)
    ]
    expect(" ".join(map(str, doubled)), "2 4 6")

    begin("create")
    table = f"driver_check_{os.getpid()}"
    conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY, note text NOT NULL)")
    passed()

    def insert(ids, commit):
        """Inserts rows in one explicit transaction (BEGIN ... COMMIT or ROLLBACK)."""
        with conn.transaction(force_rollback=not commit):
            for i in ids:
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"row {i}"))

    def count():
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    begin("commit")
    insert([1, 2, 3], commit=True)
    expect(count(), 3)
    begin("rollback")
    insert([4, 5], commit=False)
    expect(count(), 3)

    begin("error")
    try:
        conn.execute("SELECT 1/0")
        raise StepFailed("want SQLSTATE 22012, got no error")
    except psycopg.Error as e:
        expect(e.sqlstate, "22012")
    begin("after-error")
    expect(conn.execute("SELECT 1").fetchone()[0], 1)

    begin("rows")
    rows = conn.execute("SELECT g FROM generate_series(1, 10000) AS t(g)").fetchall()
    expect(f"{len(rows)} rows, sum {sum(r[0] for r in rows)}", "10000 rows, sum 50005000")

    begin("drop")
    conn.execute(f"DROP TABLE {table}")
    passed()
    begin("close")
    conn.close()
    passed()


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: check.py HOST PORT USER PASSWORD DBNAME")
    try:
        scenario(*sys.argv[1:])
    except psycopg.Error as e:
        detail = f"SQLSTATE {e.sqlstate}: {e.diag.message_primary}" if e.sqlstate else str(e)
        print(f"{step}: FAIL {detail}", flush=True)
        sys.exit(1)
    except StepFailed as e:
        print(f"{step}: FAIL {e}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
