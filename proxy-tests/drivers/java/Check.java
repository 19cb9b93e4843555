// Runs the driver-matrix scenario with PostgreSQL's JDBC driver (pgjdbc): one line per step on
// stdout, exit status 1 at the first unexpected result.
//
//   java -cp CLASSES:postgresql.jar Check HOST PORT USER PASSWORD DBNAME [--restart]
//
// prepareThreshold=1 makes the driver use a named server-side statement from a statement's first
// execution on, so the prepared statements really live on the server.
//
// With --restart it runs the restart scenario instead: SET a custom parameter, prepare a statement
// on the server and execute it, print "ready", wait for one line on stdin, then execute the
// statement again and SHOW the parameter: "after: ok 42 jdbc".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public final class Check {
    /** A step whose result is not the expected one. */
    static final class StepFailed extends Exception {
        StepFailed(String message) {
            super(message);
        }
    }

    static String step = "connect";

    static void pass(String detail) {
        System.out.println(detail == null ? step + ": ok" : step + ": ok " + detail);
        System.out.flush();
    }

    static void expect(Object got, Object want) throws StepFailed {
        if (!got.equals(want)) {
            throw new StepFailed("got " + got + ", want " + want);
        }
        pass(String.valueOf(got));
    }

    static Connection connect(String[] args) throws SQLException {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[4];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("prepareThreshold", "1");
        props.setProperty("connectTimeout", "10");
        props.setProperty("loginTimeout", "10");
        return DriverManager.getConnection(url, props);
    }

    /** The first column of the one row of `sql`, run as a plain Statement. */
    static String one(Connection conn, String sql) throws SQLException, StepFailed {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            if (!rs.next()) {
                throw new StepFailed(sql + ": no row");
            }
            return rs.getString(1);
        }
    }

    /** The first column of the one row `ps` returns. */
    static String one(PreparedStatement ps) throws SQLException, StepFailed {
        try (ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) {
                throw new StepFailed("no row");
            }
            return rs.getString(1);
        }
    }

    static void scenario(String[] args) throws SQLException, StepFailed {
        Connection conn = connect(args);
        pass(null);

        step = "simple"; // A Statement: pgjdbc still sends it over the extended protocol.
        expect(one(conn, "SELECT 40 + 2"), "42");

        step = "params";
        try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int4 + ?::int4, ?::text")) {
            ps.setInt(1, 40);
            ps.setInt(2, 2);
            ps.setString(3, "hello");
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    throw new StepFailed("no row");
                }
                expect(rs.getInt(1) + " " + rs.getString(2), "42 hello");
            }
        }

        step = "prepared"; // One PreparedStatement: parsed as a named statement once, then reused.
        StringBuilder doubled = new StringBuilder();
        try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int4 * 2")) {
            for (int i = 1; i <= 3; i++) {
                ps.setInt(1, i);
                doubled.append(i == 1 ? "" : " ").append(one(ps));
            }
        }
        expect(doubled.toString(), "2 4 6");

        step = "create";
        String table = "driver_check_" + ProcessHandle.current().pid();
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE " + table + " (id int4 PRIMARY KEY, note text NOT NULL)");
        }
        pass(null);

        step = "commit";
        insert(conn, table, true, 1, 2, 3);
        expect(Long.parseLong(one(conn, "SELECT count(*) FROM " + table)), 3L);
        step = "rollback";
        insert(conn, table, false, 4, 5);
        expect(Long.parseLong(one(conn, "SELECT count(*) FROM " + table)), 3L);

        step = "error";
        try {
            one(conn, "SELECT 1/0");
            throw new StepFailed("want SQLSTATE 22012, got no error");
        } catch (SQLException e) {
            expect(String.valueOf(e.getSQLState()), "22012");
        }
        step = "after-error";
        expect(one(conn, "SELECT 1"), "1");

        step = "rows";
        long seen = 0;
        long total = 0;
        try (Statement st = conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT g FROM generate_series(1, 10000) AS t(g)")) {
            while (rs.next()) {
                total += rs.getInt(1);
                seen++;
            }
        }
        expect(seen + " rows, sum " + total, "10000 rows, sum 50005000");

        step = "drop";
        try (Statement st = conn.createStatement()) {
            st.execute("DROP TABLE " + table);
        }
        pass(null);
        step = "close";
        conn.close();
        pass(null);
    }

    /** Inserts rows in one explicit transaction (autocommit off), then commits or rolls back. */
    static void insert(Connection conn, String table, boolean commit, int... ids)
            throws SQLException {
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
            for (int id : ids) {
                ps.setInt(1, id);
                ps.setString(2, "row " + id);
                ps.executeUpdate();
            }
        }
        if (commit) {
            conn.commit();
        } else {
            conn.rollback();
        }
        conn.setAutoCommit(true);
    }

    /** The restart scenario: state made before the pause must still be there after it. */
    static void restart(String[] args) throws Exception {
        step = "connect";
        Connection conn = connect(args);
        step = "set";
        try (Statement st = conn.createStatement()) {
            st.execute("SET app.who = 'jdbc'");
        }
        step = "prepare";
        PreparedStatement ps = conn.prepareStatement("SELECT ?::int4 * 2");
        ps.setInt(1, 21);
        String first = one(ps);
        if (!first.equals("42")) {
            throw new StepFailed("got " + first + ", want 42");
        }
        System.out.println("ready");
        System.out.flush();

        step = "wait";
        BufferedReader stdin =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        if (stdin.readLine() == null) {
            throw new StepFailed("stdin closed before a line came");
        }

        step = "after";
        ps.setInt(1, 21);
        String again = one(ps);
        String who = one(conn, "SHOW app.who");
        ps.close();
        conn.close();
        System.out.println("after: ok " + again + " " + who);
        System.out.flush();
    }

    /** The failure line: the SQLSTATE and primary message of a server error, else the message. */
    static String describe(Exception e) {
        if (e instanceof SQLException sql && sql.getSQLState() != null) {
            String message = sql.getMessage();
            if (e instanceof PSQLException p) {
                ServerErrorMessage server = p.getServerErrorMessage();
                if (server != null && server.getMessage() != null) {
                    message = server.getMessage();
                }
            }
            return "SQLSTATE " + sql.getSQLState() + ": " + message;
        }
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    public static void main(String[] argv) {
        boolean restart = argv.length == 6 && argv[5].equals("--restart");
        if (argv.length != 5 && !restart) {
            System.err.println("usage: Check HOST PORT USER PASSWORD DBNAME [--restart]");
            System.exit(2);
        }
        try {
            if (restart) {
                restart(argv);
            } else {
                scenario(argv);
            }
        } catch (Exception e) {
            String line = step + ": FAIL " + describe(e);
            System.out.println(line);
            System.out.flush();
            if (restart) {
                System.err.println(line);
            }
            System.exit(1);
        }
        System.exit(0);
    }
}
