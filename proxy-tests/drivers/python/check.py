"""Runs the driver-matrix scenario with psycopg 3: one line per step on stdout, exit status 1 at
the first unexpected result.

    python check.py HOST PORT USER PASSWORD DBNAME [--restart]

With --restart it runs the restart scenario instead: SET a custom parameter, prepare a statement
on the server and execute it, print "ready", wait for one line on stdin, then execute the
statement again and SHOW the parameter: "after: ok 42 psycopg".

With --cancel it cancels on an idle connection and then runs `SELECT pg_sleep(0.2)`, 20 times,
and prints how many of those queries the cancel hit: "cancel: ok 0 of 20". libpq's cancel
returns once the server has closed the cancel connection, which PostgreSQL does only after it has
signalled the backend, so none should be. DRIVER_SSLMODE sets the session's sslmode.
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


def connect(host, port, user, password, dbname):
    # require_auth (libpq 16+) makes libpq refuse any login other than SCRAM-SHA-256.
    scram_only = {"require_auth": "scram-sha-256"} if psycopg.pq.version() >= 160000 else {}
    sslmode = os.environ.get("DRIVER_SSLMODE", "prefer")
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname=dbname,
        connect_timeout=10, autocommit=True, sslmode=sslmode, **scram_only,
    )


def scenario(*args):
    conn = connect(*args)
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


def restart_scenario(*args):
    """Makes session state (a setting and a server-side prepared statement), waits for a line on
    stdin, then uses that state again."""
    conn = connect(*args)
    begin("set")
    conn.execute("SET app.who = 'psycopg'")
    begin("prepare")  # prepare=True: a named statement (_pg3_0), parsed now and only bound later.
    got = conn.execute("SELECT %s::int4 * 2", (21,), prepare=True).fetchone()[0]
    if got != 42:
        raise StepFailed(f"got {got}, want 42")
    print("ready", flush=True)

    begin("wait")
    if not sys.stdin.readline():
        raise StepFailed("stdin closed before a line came")

    begin("after")
    again = conn.execute("SELECT %s::int4 * 2", (21,), prepare=True).fetchone()[0]
    who = conn.execute("SHOW app.who").fetchone()[0]
    conn.close()
    print(f"after: ok {again} {who}", flush=True)


def cancel_scenario(*args):
    """Cancels on an idle connection, then runs a short query: the cancel must not hit it."""
    conn = connect(*args)
    begin("cancel")
    hit = 0
    for _ in range(20):
        conn.cancel()  # PQcancel: returns when the server has closed the cancel connection
        try:
            conn.execute("SELECT pg_sleep(0.2)")
        except psycopg.errors.QueryCanceled:
            hit += 1
    conn.close()
    passed(f"{hit} of 20")


def main():
    args = sys.argv[1:]
    mode = args[5] if len(args) == 6 else None
    if len(args) != 5 and mode not in ("--restart", "--cancel"):
        sys.exit("usage: check.py HOST PORT USER PASSWORD DBNAME [--restart|--cancel]")
    restart = mode == "--restart"
    try:
        if restart:
            restart_scenario(*args[:5])
        elif mode == "--cancel":
            cancel_scenario(*args[:5])
        else:
            scenario(*args)
    except (psycopg.Error, StepFailed) as e:
        if isinstance(e, psycopg.Error) and e.sqlstate:
            detail = f"SQLSTATE {e.sqlstate}: {e.diag.message_primary}"
        else:
            detail = str(e)
        print(f"{step}: FAIL {detail}", flush=True)
        if restart:
            print(f"{step}: FAIL {detail}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
