//! The admin API as the tests call it: one request, with a bearer token and a body if given;
//! its status (0 when nothing answered, the error then in place of the body) and its body. Never
//! an error for a status: the tests check statuses themselves.

use std::time::Duration;

/// The longest a request may take (a window answers when it ends).
const TIMEOUT: Duration = Duration::from_secs(600);
/// The largest body read (`GET /backups` of a long soak).
const BODY_LIMIT: u64 = 64 << 20;

/// `method url`, blocking.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = if method == "POST" {
        let mut request = agent.post(url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        match body {
            Some(body) => request.send(body),
            None => request.send_empty(),
        }
    } else {
        let mut request = agent.get(url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        request.call()
    };
    match response {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string()
                .unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// `method url` on a blocking thread, so a test's runtime goes on meanwhile.
pub async fn request(method: &str, url: String, token: Option<&str>) -> (u16, String) {
    let (method, token) = (method.to_string(), token.map(str::to_string));
    tokio::task::spawn_blocking(move || call(&method, &url, token.as_deref(), None))
        .await
        .unwrap()
}
