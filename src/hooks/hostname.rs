//! The host name a DHCP server offers (`new_host_name`), set as Debian's
//! dhclient-script does: only while the current name is unset, `(none)`,
//! `localhost`, or the one the previous lease gave. The hook unsets
//! `reason`, so dhclient-script does not do it itself.

/// A name a DHCP server may set: RFC 1123 labels (letters, digits, `-`),
/// dot-separated, at most 64 bytes. Anything else is a hostile or broken
/// option and is ignored.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The name to set, if any (dhclient-script's `set_hostname`).
pub fn to_set(current: &str, new: Option<&str>, old: Option<&str>) -> Option<String> {
    let new = new.filter(|n| valid(n))?;
    let replaceable = current.is_empty()
        || current == "(none)"
        || current == "localhost"
        || old.is_some_and(|o| o == current);
    (replaceable && new != current).then(|| new.to_owned())
}

/// Applies `to_set` to this UTS namespace; returns the name set.
pub fn apply(new: Option<&str>, old: Option<&str>) -> std::io::Result<Option<String>> {
    let current = nix::unistd::gethostname()?
        .into_string()
        .unwrap_or_default();
    let Some(name) = to_set(&current, new, old) else {
        return Ok(None);
    };
    nix::unistd::sethostname(&name)?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_dhclient_script_decides() {
        assert_eq!(
            to_set("localhost", Some("edge1"), None).as_deref(),
            Some("edge1")
        );
        assert_eq!(to_set("", Some("edge1"), None).as_deref(), Some("edge1"));
        assert_eq!(
            to_set("(none)", Some("edge1"), None).as_deref(),
            Some("edge1")
        );
        assert_eq!(
            to_set("edge0", Some("edge1"), Some("edge0")).as_deref(),
            Some("edge1")
        );
        // A name the operator chose stays.
        assert_eq!(to_set("router", Some("edge1"), None), None);
        assert_eq!(to_set("router", Some("edge1"), Some("edge0")), None);
        assert_eq!(to_set("localhost", None, None), None);
        assert_eq!(to_set("edge1", Some("edge1"), Some("edge1")), None);
    }

    #[test]
    fn hostile_names_are_ignored() {
        for bad in [
            "",
            "a b",
            "x;reboot",
            "-a",
            "a-",
            "a..b",
            &"x".repeat(65),
            "ä",
            "a/b",
        ] {
            assert!(!valid(bad), "{bad:?}");
            assert_eq!(to_set("localhost", Some(bad), None), None);
        }
        assert!(valid("modem-7.example.net"));
    }
}
