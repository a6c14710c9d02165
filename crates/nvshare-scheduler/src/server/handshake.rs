//! What the handshake takes from a peer: its job name, cleaned; and the
//! error replies peers receive for invalid frames before being disconnected.

use nvshare_proto::{ErrorCode, ErrorReply, ProtoError, Role};

/// Longest job name kept; longer names are cut (they end up in log lines and
/// metric labels).
pub const MAX_NAME_LEN: usize = 64;

/// The reply for a frame that could not be taken: a version or magic
/// mismatch says so, anything else is a bad frame.
pub fn refusal(err: &ProtoError) -> ErrorReply {
    let code = match err {
        ProtoError::BadMagic | ProtoError::VersionMismatch { .. } => ErrorCode::BadVersion,
        _ => ErrorCode::BadFrame,
    };
    ErrorReply {
        code,
        message: format!("{err}; the scheduler closes this connection"),
    }
}

/// A job name fit for logs and labels: printable, at most [`MAX_NAME_LEN`]
/// characters, never empty.
pub fn clean_name(role: &Role) -> Option<String> {
    let Role::Client { name, .. } = role else {
        return None;
    };
    let cleaned = printable(name);
    Some(if cleaned.trim().is_empty() {
        "unnamed".to_owned()
    } else {
        cleaned
    })
}

/// A client's job group, cleaned like names; an empty one is no group.
pub fn clean_group(role: &Role) -> Option<String> {
    let Role::Client {
        group: Some(group), ..
    } = role
    else {
        return None;
    };
    Some(printable(group)).filter(|g| !g.trim().is_empty())
}

/// `text` without control characters, at most [`MAX_NAME_LEN`] characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvshare_proto::{Hello, PROTOCOL_VERSION, decode_hello, encode};

    fn judge_hello(payload: &[u8]) -> Result<Hello, ErrorReply> {
        decode_hello(payload).map_err(|err| refusal(&err))
    }

    #[test]
    fn wrong_version_and_magic_are_bad_version_garbage_is_bad_frame() {
        let mut hello = Hello::new(Role::Control);
        hello.version = PROTOCOL_VERSION + 1;
        let refused = judge_hello(&encode(&hello).unwrap()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadVersion);
        assert!(refused.message.contains("version"), "{}", refused.message);

        let refused = judge_hello(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadVersion);

        let mut truncated = encode(&Hello::new(Role::Control)).unwrap();
        truncated.pop(); // the role is missing
        assert_eq!(
            judge_hello(&truncated).unwrap_err().code,
            ErrorCode::BadFrame
        );
    }

    #[test]
    fn names_are_cleaned() {
        let role = |name: &str| Role::Client {
            name: name.into(),
            group: None,
        };
        assert_eq!(clean_name(&Role::Control), None);
        assert_eq!(clean_name(&role("job\n\x1b[31m")).unwrap(), "job[31m");
        assert_eq!(clean_name(&role("  ")).unwrap(), "unnamed");
        assert_eq!(
            clean_name(&role(&"x".repeat(500))).unwrap().len(),
            MAX_NAME_LEN
        );
    }

    #[test]
    fn groups_are_cleaned_and_an_empty_one_is_none() {
        let role = |group: Option<&str>| Role::Client {
            name: "rank".into(),
            group: group.map(str::to_owned),
        };
        assert_eq!(clean_group(&Role::Control), None);
        assert_eq!(clean_group(&role(None)), None);
        assert_eq!(clean_group(&role(Some(" \n"))), None);
        assert_eq!(
            clean_group(&role(Some("torch:a:1\n"))).unwrap(),
            "torch:a:1"
        );
        assert_eq!(
            clean_group(&role(Some(&"g".repeat(500)))).unwrap().len(),
            MAX_NAME_LEN
        );
    }
}
