//! How an agent reports a client's latest result as a condition on its own pod, and how the
//! operator reads it back. Both ends share this module so the format has one definition.
//!
//! The condition: `type` = [`crate::agent::CLIENT_CONDITION_PREFIX`] + the client's name,
//! `status` `True` (last run succeeded), `False` or `Unknown` (no run yet), `reason` one of
//! [`REASONS`], and `message` = `latencyMs=<n>; lastSuccess=<RFC 3339 or ->; <detail>`.

/// Reasons a client result carries.
pub const REASONS: &[&str] = &[
    "Succeeded",
    "Pending",
    "ConnectFailed",
    "Timeout",
    "AuthFailed",
    "UnexpectedStatus",
    "UnexpectedContent",
    "HashMismatch",
    "NotDelivered",
    "Error",
];

/// The machine-readable part of a client condition's message, and the human detail.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientMessage {
    pub latency_ms: Option<u64>,
    /// RFC 3339.
    pub last_success: Option<String>,
    pub detail: String,
}

impl ClientMessage {
    /// `latencyMs=12; lastSuccess=2026-11-25T03:00:00Z; GET http://office/ → 200`.
    pub fn format(&self) -> String {
        format!(
            "latencyMs={}; lastSuccess={}; {}",
            self.latency_ms.map_or("-".to_string(), |l| l.to_string()),
            self.last_success.as_deref().unwrap_or("-"),
            self.detail
        )
    }

    /// Reads a message written by [`ClientMessage::format`]; anything else becomes the detail.
    pub fn parse(message: &str) -> ClientMessage {
        let parsed = (|| {
            let rest = message.strip_prefix("latencyMs=")?;
            let (latency, rest) = rest.split_once("; lastSuccess=")?;
            let (success, detail) = rest.split_once("; ").unwrap_or((rest, ""));
            Some(ClientMessage {
                latency_ms: latency.parse().ok(),
                last_success: (success != "-").then(|| success.to_string()),
                detail: detail.to_string(),
            })
        })();
        parsed.unwrap_or_else(|| ClientMessage {
            detail: message.to_string(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = ClientMessage {
            latency_ms: Some(12),
            last_success: Some("2026-11-25T03:00:00Z".into()),
            detail: "GET http://office.ns.svc:8080/ → 200; body ok".into(),
        };
        assert_eq!(
            m.format(),
            "latencyMs=12; lastSuccess=2026-11-25T03:00:00Z; GET http://office.ns.svc:8080/ → 200; body ok"
        );
        assert_eq!(ClientMessage::parse(&m.format()), m);
        let never = ClientMessage {
            latency_ms: None,
            last_success: None,
            detail: "connection refused".into(),
        };
        assert_eq!(ClientMessage::parse(&never.format()), never);
    }

    #[test]
    fn foreign_messages_become_the_detail() {
        let m = ClientMessage::parse("something else");
        assert_eq!(m.detail, "something else");
        assert_eq!(m.latency_ms, None);
    }
}
