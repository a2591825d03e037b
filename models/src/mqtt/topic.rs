//! Topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5 §4.7), sans I/O.
//!
//! - A **name** (what PUBLISH carries) is at least one byte and has no `+` or `#`.
//! - A **filter** (what SUBSCRIBE carries) is at least one byte; `+` is a whole level, `#` a
//!   whole level and the last one.
//! - A filter whose first level is a wildcard does not match a name that starts with `$`
//!   (`$SYS/...`) [MQTT-4.7.2-1].
//!
//! Both must also be valid UTF-8 without U+0000, which the packet decoder has checked.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

/// Whether `name` may be published to.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', '#'])
}

/// Whether `filter` may be subscribed to.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == last,
        other => !other.contains(['+', '#']),
    })
}

/// Whether a valid `filter` matches a valid topic `name`.
pub fn matches(filter: &str, name: &str) -> bool {
    debug_assert!(valid_filter(filter) && valid_name(name));
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match (level, names.next()) {
            // `#` also matches the parent level: `a/#` matches `a` [MQTT-4.7.1-2].
            ("#", _) => return true,
            (_, None) => return false,
            ("+", Some(_)) => {}
            (level, Some(name_level)) if level == name_level => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_no_wildcards_and_are_not_empty() {
        for good in ["a", "a/b", "/", "a//b", "$SYS/x", " "] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a/+", "#", "a/#", "a+b", "sport/ten#"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn filters_use_wildcards_as_whole_levels_and_hash_last() {
        for good in ["#", "+", "a/#", "a/+/b", "+/+", "/#", "a//+", "+/#", "$SYS/#"] {
            assert!(valid_filter(good), "{good}");
        }
        for bad in ["", "a/#/b", "a#", "a/b#", "a+", "+a/b", "#/a", "a/++"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "a/b/c", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("A", "a", false),
        ];
        for (filter, name, expected) in cases {
            assert_eq!(matches(filter, name), expected, "{filter} vs {name}");
        }
    }

    #[test]
    fn dollar_topics_are_not_matched_by_a_leading_wildcard() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("a/#", "a/$b"));
    }
}
