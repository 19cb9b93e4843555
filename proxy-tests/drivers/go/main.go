// Command check runs the driver-matrix scenario with pgx v5: one line per step on stdout, exit
// status 1 at the first unexpected result.
//
//	check HOST PORT USER PASSWORD DBNAME [--restart]
//
// With --restart it runs the restart scenario instead: SET a custom parameter, prepare a named
// statement and execute it, print "ready", wait for one line on stdin, then execute the statement
// again and SHOW the parameter: "after: ok 42 pgx".
//
// With --cancel it cancels on an idle connection and then runs `SELECT pg_sleep(0.2)`, 20 times,
// and prints how many of those queries the cancel hit: "cancel: ok 0 of 20" (pgx's cancel
// returns once the server has closed the cancel connection). DRIVER_SSLMODE sets the sslmode.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var ctx = context.Background()

func main() {
	mode := ""
	if len(os.Args) == 7 {
		mode = os.Args[6]
	}
	restart := mode == "--restart"
	if len(os.Args) != 6 && !restart && mode != "--cancel" {
		fmt.Fprintln(os.Stderr, "usage: check HOST PORT USER PASSWORD DBNAME [--restart|--cancel]")
		os.Exit(2)
	}
	dsn := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(os.Args[3], os.Args[4]),
		Host:   net.JoinHostPort(os.Args[1], os.Args[2]),
		Path:   "/" + os.Args[5],
	}
	if sslmode := os.Getenv("DRIVER_SSLMODE"); sslmode != "" {
		dsn.RawQuery = "sslmode=" + sslmode
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn.String())
	if restart {
		failToStderr = true
		check("connect", err)
		restartScenario(conn)
		return
	}
	check("connect", err)
	if mode == "--cancel" {
		cancelScenario(conn)
		return
	}
	pass("connect", "")

	// Without arguments pgx would still prepare; ask for the simple query protocol.
	var n int
	err = conn.QueryRow(ctx, "SELECT 40 + 2", pgx.QueryExecModeSimpleProtocol).Scan(&n)
	expect("simple", err, n, 42)

	var sum int
	var word string
	err = conn.QueryRow(ctx, "SELECT $1::int4 + $2::int4, $3::text", 40, 2, "hello").Scan(&sum, &word)
	expect("params", err, fmt.Sprint(sum, " ", word), "42 hello")

	_, err = conn.Prepare(ctx, "double", "SELECT $1::int4 * 2")
	check("prepared", err)
	got := ""
	for i := 1; i <= 3; i++ {
		err = conn.QueryRow(ctx, "double", i).Scan(&n)
		check("prepared", err)
		got += fmt.Sprint(" ", n)
	}
	expect("prepared", nil, got[1:], "2 4 6")

	table := fmt.Sprintf("driver_check_%d", os.Getpid())
	_, err = conn.Exec(ctx, "CREATE TABLE "+table+" (id int4 PRIMARY KEY, note text NOT NULL)")
	check("create", err)
	pass("create", "")
	// insert adds rows in one explicit transaction, then commits or rolls back.
	insert := func(commit bool, ids ...int) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", id, fmt.Sprint("row ", id))
			if err != nil {
				return err
			}
		}
		if commit {
			return tx.Commit(ctx)
		}
		return tx.Rollback(ctx)
	}
	count := func() (n int, err error) {
		err = conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		return
	}
	check("commit", insert(true, 1, 2, 3))
	n, err = count()
	expect("commit", err, n, 3)
	check("rollback", insert(false, 4, 5))
	n, err = count()
	expect("rollback", err, n, 3)

	_, err = conn.Exec(ctx, "SELECT 1/0")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		fail("error", fmt.Sprintf("want SQLSTATE 22012, got %v", err))
	}
	expect("error", nil, pgErr.Code, "22012")
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&n)
	expect("after-error", err, n, 1)

	rows, err := conn.Query(ctx, "SELECT g FROM generate_series(1, 10000) AS t(g)")
	check("rows", err)
	var total, seen int
	for rows.Next() {
		var g int
		check("rows", rows.Scan(&g))
		total += g
		seen++
	}
	check("rows", rows.Err())
	expect("rows", nil, fmt.Sprint(seen, " rows, sum ", total), "10000 rows, sum 50005000")

	_, err = conn.Exec(ctx, "DROP TABLE "+table)
	check("drop", err)
	pass("drop", "")
	check("close", conn.Close(ctx))
	pass("close", "")
}

// cancelScenario cancels on an idle connection and then runs a short query, 20 times, and
// counts the queries the cancel hit.
func cancelScenario(conn *pgx.Conn) {
	hit := 0
	for i := 0; i < 20; i++ {
		check("cancel", conn.PgConn().CancelRequest(ctx))
		_, err := conn.Exec(ctx, "SELECT pg_sleep(0.2)")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "57014" {
			hit++
		} else {
			check("cancel", err)
		}
	}
	check("cancel", conn.Close(ctx))
	pass("cancel", fmt.Sprintf("%d of 20", hit))
}

// restartScenario makes session state (a setting and a named prepared statement), waits for a
// line on stdin and then uses that state again.
func restartScenario(conn *pgx.Conn) {
	_, err := conn.Exec(ctx, "SET app.who = 'pgx'")
	check("set", err)
	_, err = conn.Prepare(ctx, "double", "SELECT $1::int4 * 2")
	check("prepare", err)
	var n int
	err = conn.QueryRow(ctx, "double", 21).Scan(&n)
	check("prepare", err)
	if n != 42 {
		fail("prepare", fmt.Sprintf("got %d, want 42", n))
	}
	fmt.Println("ready")

	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fail("wait", "no line on stdin: "+err.Error())
	}

	err = conn.QueryRow(ctx, "double", 21).Scan(&n)
	check("after", err)
	var who string
	err = conn.QueryRow(ctx, "SHOW app.who").Scan(&who)
	check("after", err)
	check("after", conn.Close(ctx))
	fmt.Printf("after: ok %d %s\n", n, who)
}

// failToStderr also writes failure lines to stderr (in the restart scenario).
var failToStderr bool

// pass prints a step's success line.
func pass(step, detail string) {
	if detail == "" {
		fmt.Printf("%s: ok\n", step)
	} else {
		fmt.Printf("%s: ok %s\n", step, detail)
	}
}

// fail prints a step's failure line and exits.
func fail(step, detail string) {
	fmt.Printf("%s: FAIL %s\n", step, detail)
	if failToStderr {
		fmt.Fprintf(os.Stderr, "%s: FAIL %s\n", step, detail)
	}
	os.Exit(1)
}

// check fails the step if err is set, naming the SQLSTATE of a server error.
func check(step string, err error) {
	if err == nil {
		return
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		fail(step, fmt.Sprintf("SQLSTATE %s: %s", pgErr.Code, pgErr.Message))
	}
	fail(step, err.Error())
}

// expect fails the step on an error or a value other than want, and passes it otherwise.
func expect[T comparable](step string, err error, got, want T) {
	check(step, err)
	if got != want {
		fail(step, fmt.Sprintf("got %v, want %v", got, want))
	}
	pass(step, fmt.Sprint(got))
}
