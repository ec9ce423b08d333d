//! Interface name patterns, shared by every component that selects
//! interfaces (hotplug, the RA agent, the tracker, status filters).

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob_match(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("wwan*", "wwan0"));
        assert!(glob_match("usb*", "usb"));
        assert!(glob_match("*", "eth0"));
        assert!(glob_match("en*s*", "enp0s3"));
        assert!(!glob_match("wwan*", "eth0"));
        assert!(!glob_match("eth0", "eth01"));
    }
}
