"""Runs console commands with psycopg 3 and prints what came back as JSON, for
proxy-tests/tests/all/console.rs to compare with the admin API's answers.

    python console.py HOST PORT USER PASSWORD DBNAME COMMAND...

For each command: {"command", "columns": [[name, type oid]...], "rows": [[value, python type
name]...]} on success, or {"command", "sqlstate", "message"} on a server error. Every command
runs twice: with psycopg's default (the extended protocol, text results) and as a prepared
statement with binary results; both must give the same rows, or the program exits 1.
"""

import datetime
import json
import sys

import psycopg


def plain(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return value


def run(conn, command, binary):
    try:
        with conn.cursor(binary=binary) as cur:
            cur.execute(command, prepare=binary)
            columns = [[c.name, c.type_code] for c in cur.description or []]
            rows = [[[plain(v), type(v).__name__] for v in row] for row in cur.fetchall()]
            return {"command": command, "columns": columns, "rows": rows}
    except psycopg.errors.Error as e:
        return {"command": command, "sqlstate": e.sqlstate, "message": e.diag.message_primary}


def main():
    host, port, user, password, dbname, *commands = sys.argv[1:]
    conninfo = psycopg.conninfo.make_conninfo(
        host=host, port=port, user=user, password=password, dbname=dbname, sslmode="disable"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for command in commands:
            text = run(conn, command, binary=False)
            binary = run(conn, command, binary=True)
            same = {k: v for k, v in text.items()} == {k: v for k, v in binary.items()}
            if not same and "rows" in text and command.upper().startswith("SHOW S"):
                # SHOW SESSIONS / SHOW STATS change between the two runs (ages, bytes):
                # compare their shapes only.
                same = text["columns"] == binary["columns"] and [
                    [t for _, t in row] for row in text["rows"]
                ] == [[t for _, t in row] for row in binary["rows"]]
            if not same:
                print(json.dumps({"text": text, "binary": binary}), file=sys.stderr)
                sys.exit(1)
            print(json.dumps(text), flush=True)


main()
