//! The client commands' text: what `status`, `reload`, `backup` and `backups list` print from the
//! admin API's JSON.

use std::fmt::Write as _;

use serde_json::Value;

/// One line for a window record.
pub fn window_line(w: &Value) -> String {
    let mut line = format!(
        "window {} {} ({}): {} in {} ms, clients held at most {} ms",
        w["id"],
        w["action"].as_str().unwrap_or("?"),
        w["trigger"].as_str().unwrap_or("?"),
        w["result"].as_str().unwrap_or("?"),
        w["duration_ms"],
        w["stall_ms"],
    );
    if let Some(e) = w["error"].as_str() {
        let _ = write!(line, " — {e}");
    }
    line
}

/// Text for `GET /status`: the sidecar and its server, the counters, one line per session with
/// the server's process id for it.
pub fn status_text(s: &Value) -> String {
    let c = &s["counters"];
    let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "doltgres-sidecar {} (pid {}) → upstream {}\n",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        s["upstream"].as_str().unwrap_or("?"),
    );
    let control = s["server_control"].as_str().unwrap_or("external");
    let _ = match (control, s["server_pid"].as_u64()) {
        ("managed", Some(pid)) => writeln!(out, "server: managed Doltgres, pid {pid}"),
        ("managed", None) => writeln!(out, "server: managed Doltgres, not running now"),
        (control, _) => writeln!(out, "server: {control} control"),
    };
    let actions: Vec<&str> = s["backup_actions"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !actions.is_empty() {
        let _ = write!(out, "backups: {}", actions.join(", "));
        if let Some(catalog) = s["catalog"].as_str() {
            let _ = write!(out, "; copies in {catalog}");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} session(s) · commits {} · rollbacks {} · write commits {} ({} since the last backup)",
        sessions.len(),
        c["commits"],
        c["rollbacks"],
        c["write_commits"],
        c["write_commits_since_backup"],
    );
    if let Some(reason) = s["windows_held_off"].as_str() {
        let _ = writeln!(out, "backup windows held off: {reason}");
    }
    if !sessions.is_empty() {
        let _ = writeln!(
            out,
            "{:>6}  {:<22} {:<12} {:<12} {:>10}  {:<20} {:>8}",
            "id", "peer", "user", "database", "server pid", "state", "age"
        );
        for x in sessions {
            let backend = x["backend_pid"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |pid| pid.to_string());
            let _ = writeln!(
                out,
                "{:>6}  {:<22} {:<12} {:<12} {:>10}  {:<20} {:>7.0}s",
                x["id"].as_u64().unwrap_or(0),
                x["peer"].as_str().unwrap_or(""),
                x["user"].as_str().unwrap_or(""),
                x["database"].as_str().unwrap_or(""),
                backend,
                x["state"].as_str().unwrap_or(""),
                x["age_seconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    out
}

/// Text for `POST /reload`.
pub fn reload_text(r: &Value) -> String {
    let changed: Vec<&str> = r["changed"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if changed.is_empty() {
        "configuration reloaded: nothing changed\n".to_string()
    } else {
        format!("configuration reloaded; changed: {}\n", changed.join(", "))
    }
}

/// Text for `GET /backups`.
pub fn backups_text(b: &Value) -> String {
    let windows = b["windows"].as_array().cloned().unwrap_or_default();
    let mut out = if windows.is_empty() {
        "no windows yet\n".to_string()
    } else {
        windows.iter().map(|w| window_line(w) + "\n").collect()
    };
    let copies = b["copies"].as_array().cloned().unwrap_or_default();
    if !copies.is_empty() {
        out.push_str("copies (newest first):\n");
        for c in copies {
            out.push_str(&format!(
                "  {}  {} files, {} bytes ({} copied)  verify: {}\n",
                c["id"].as_str().unwrap_or("?"),
                c["files"],
                c["bytes"],
                c["bytes_copied"],
                c["verify"].as_str().unwrap_or("not yet")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn window_lines_name_the_essentials() {
        let w = json!({"id": 3, "action": "sync", "trigger": "commits", "result": "failed",
                       "duration_ms": 40, "stall_ms": 38, "error": "database postgres: boom"});
        let line = window_line(&w);
        assert!(
            line.contains("window 3 sync (commits): failed in 40 ms"),
            "{line}"
        );
        assert!(line.ends_with("boom"), "{line}");
    }

    #[test]
    fn status_lists_sessions_with_their_server_pid() {
        let s = json!({"version": "0.1.0", "pid": 7, "upstream": "127.0.0.1:5433",
            "server_control": "managed", "server_pid": 4242, "catalog": "/srv/var/backups",
            "backup_actions": ["copy"],
            "counters": {"commits": 5, "rollbacks": 1, "write_commits": 2, "write_commits_since_backup": 2},
            "sessions": [{"id": 1, "peer": "127.0.0.1:5000", "user": "u", "database": "d",
                          "backend_pid": 4242, "state": "idle", "age_seconds": 3.2}]});
        let text = status_text(&s);
        assert!(
            text.contains("server: managed Doltgres, pid 4242"),
            "{text}"
        );
        assert!(
            text.contains("backups: copy; copies in /srv/var/backups"),
            "{text}"
        );
        assert!(text.contains("1 session(s) · commits 5"), "{text}");
        let header = text.lines().find(|l| l.contains("server pid")).unwrap();
        let row = text.lines().find(|l| l.contains("idle")).unwrap();
        assert!(row.contains(" 4242 "), "{text}");
        // The pid sits under its heading.
        assert_eq!(
            header.find("server pid").map(|i| i + "server pid".len()),
            row.find("4242").map(|i| i + 4),
            "{text}"
        );
        assert!(!text.contains("held off"), "{text}");
        let s = json!({"version": "0.1.0", "pid": 42, "upstream": "db:5432",
            "windows_held_off": "the previous process (7) is still letting its sessions finish",
            "counters": {}, "sessions": []});
        let text = status_text(&s);
        assert!(text.contains("(pid 42)"), "{text}");
        assert!(text.contains("server: external control"), "{text}");
        assert!(
            text.contains("backup windows held off: the previous process (7)"),
            "{text}"
        );
    }
}
