//! What a client agent reports: its `/clients` results, read as a user reads them.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Agent, fetch};

/// Every client's last result (`GET /clients` on the admin port).
pub fn results(agent: &Agent) -> Vec<Value> {
    let response = fetch(&[&agent.admin_url("/clients")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice::<Value>(&response.body)
        .expect("JSON")
        .as_array()
        .expect("a list")
        .clone()
}

/// Client `name`'s last result.
pub fn result(agent: &Agent, name: &str) -> Value {
    results(agent)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed"))
}

/// Waits until client `name` reports `reason` (and `ok` accordingly); returns its result.
pub fn wait_for(agent: &Agent, name: &str, reason: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = result(agent, name);
        if r["reason"] == reason {
            assert_eq!(r["ok"], reason == "Ok", "{r}");
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not report {reason} within {limit:?}: {r}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
