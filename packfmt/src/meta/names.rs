//! The naming rules of snap.yaml, each returning the one sentence a user sees.
//!
//! These functions are also used outside metadata parsing (the daemon checks names that arrive
//! in API requests with [`validate_pack_name`]), so a name is judged the same way everywhere.

/// Pack names: 2–40 characters of `a-z`, `0-9` and `-`, at least one letter, no leading,
/// trailing or doubled dash (snapd's `^[a-z0-9](?:-?[a-z0-9])*$` plus the letter rule).
pub fn validate_pack_name(name: &str) -> Result<(), String> {
    let shown = show(name);
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "invalid pack name {shown}: {} is not allowed; use only lowercase letters a-z, digits and dashes",
            show_char(c)
        ));
    }
    let len = name.chars().count();
    if !(2..=40).contains(&len) {
        return Err(format!(
            "invalid pack name {shown}: it must be 2 to 40 characters long (it is {len})"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "invalid pack name {shown}: it cannot start or end with a dash"
        ));
    }
    if name.contains("--") {
        return Err(format!(
            "invalid pack name {shown}: it cannot contain two dashes in a row"
        ));
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(format!(
            "invalid pack name {shown}: it must contain at least one letter"
        ));
    }
    Ok(())
}

/// Versions: 1–32 characters of letters, digits and `:.+~-`, starting with a letter or digit and
/// ending with a letter, digit, `+` or `~` (snapd's version rule).
pub fn validate_version(version: &str) -> Result<(), String> {
    let shown = show(version);
    if version.is_empty() {
        return Err("invalid version \"\": it cannot be empty".to_string());
    }
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":.+~-".contains(*c)))
    {
        return Err(format!(
            "invalid version {shown}: {} is not allowed; use only letters, digits and the characters : . + ~ -",
            show_char(c)
        ));
    }
    let len = version.chars().count();
    if len > 32 {
        return Err(format!(
            "invalid version {shown}: it is {len} characters long; at most 32 are allowed"
        ));
    }
    if !version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "invalid version {shown}: it must start with a letter or a digit"
        ));
    }
    if !version.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '~') {
        return Err(format!(
            "invalid version {shown}: it must end with a letter, a digit, + or ~"
        ));
    }
    Ok(())
}

/// App names: letters, digits and single dashes, starting and ending with a letter or digit
/// (snapd's `^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$`).
pub fn validate_app_name(name: &str) -> Result<(), String> {
    if dashed_word(
        name,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric(),
    ) {
        Ok(())
    } else {
        Err(format!(
            "invalid app name {}: use only letters, digits and single dashes, starting and ending with a letter or digit",
            show(name)
        ))
    }
}

/// Plug, slot, interface and hook names: `^[a-z](?:-?[a-z0-9])*$`.
pub fn validate_port_name(kind: &str, name: &str) -> Result<(), String> {
    let lower_or_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if dashed_word(name, |c| c.is_ascii_lowercase(), lower_or_digit) {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {}: use only lowercase letters, digits and single dashes, starting with a letter",
            show(name)
        ))
    }
}

/// Commands: only `[A-Za-z0-9/. _#:$-]`, as snapd allows; no shell metacharacters reach exec.
pub fn validate_command(what: &str, command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err(format!("{what} cannot be empty"));
    }
    if let Some(c) = command
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/. _#:$-".contains(*c)))
    {
        return Err(format!(
            "invalid {what} {}: {} is not allowed; use only letters, digits, spaces and the characters / . _ # : $ -",
            show(command),
            show_char(c)
        ));
    }
    Ok(())
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name {}: use letters, digits and _, not starting with a digit",
            show(name)
        ))
    }
}

/// `first (-? rest)*`: a word of `first`/`rest` characters where single dashes may separate runs.
fn dashed_word(s: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    if !chars.next().is_some_and(&first) {
        return false;
    }
    let mut after_dash = false;
    for c in chars {
        if c == '-' {
            if after_dash {
                return false;
            }
            after_dash = true;
        } else if rest(c) {
            after_dash = false;
        } else {
            return false;
        }
    }
    !after_dash
}

/// A value quoted for a message, with control characters (NUL included) escaped so the message
/// itself stays one clean line.
pub(crate) fn show(s: &str) -> String {
    format!("{:?}", s)
}

fn show_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\0' => "a NUL byte".to_string(),
        c if c.is_control() => format!("the control character {:?}", c),
        c => format!("{:?}", c.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_name_accepts_snapd_examples() {
        for ok in [
            "hello",
            "ab",
            "a1",
            "hello-world",
            "0ad",
            "x-1-y",
            &"a".repeat(40),
        ] {
            assert_eq!(validate_pack_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn pack_name_rule_messages() {
        let cases = [
            (
                "Hello",
                "invalid pack name \"Hello\": \"H\" is not allowed; use only lowercase letters a-z, digits and dashes",
            ),
            (
                "a/b",
                "invalid pack name \"a/b\": \"/\" is not allowed; use only lowercase letters a-z, digits and dashes",
            ),
            (
                "..",
                "invalid pack name \"..\": \".\" is not allowed; use only lowercase letters a-z, digits and dashes",
            ),
            (
                "a\0b",
                "invalid pack name \"a\\0b\": a NUL byte is not allowed; use only lowercase letters a-z, digits and dashes",
            ),
            (
                "a",
                "invalid pack name \"a\": it must be 2 to 40 characters long (it is 1)",
            ),
            (
                "",
                "invalid pack name \"\": it must be 2 to 40 characters long (it is 0)",
            ),
            (
                "-ab",
                "invalid pack name \"-ab\": it cannot start or end with a dash",
            ),
            (
                "ab-",
                "invalid pack name \"ab-\": it cannot start or end with a dash",
            ),
            (
                "a--b",
                "invalid pack name \"a--b\": it cannot contain two dashes in a row",
            ),
            (
                "123",
                "invalid pack name \"123\": it must contain at least one letter",
            ),
        ];
        for (name, msg) in cases {
            assert_eq!(validate_pack_name(name).unwrap_err(), msg);
        }
        let long = "a".repeat(41);
        assert_eq!(
            validate_pack_name(&long).unwrap_err(),
            format!("invalid pack name \"{long}\": it must be 2 to 40 characters long (it is 41)")
        );
    }

    #[test]
    fn version_rule_messages() {
        for ok in [
            "1",
            "1.0",
            "2:1.0~rc1+git",
            "a",
            "1.0+",
            "1.0~",
            &"1".repeat(32),
        ] {
            assert_eq!(validate_version(ok), Ok(()), "{ok}");
        }
        let long = "1".repeat(33);
        let cases = [
            ("", "invalid version \"\": it cannot be empty".to_string()),
            (
                "1.0 beta",
                "invalid version \"1.0 beta\": a space is not allowed; use only letters, digits and the characters : . + ~ -".to_string(),
            ),
            (
                "1_0",
                "invalid version \"1_0\": \"_\" is not allowed; use only letters, digits and the characters : . + ~ -".to_string(),
            ),
            (
                &long,
                format!("invalid version \"{long}\": it is 33 characters long; at most 32 are allowed"),
            ),
            (
                "-1",
                "invalid version \"-1\": it must start with a letter or a digit".to_string(),
            ),
            (
                "1.",
                "invalid version \"1.\": it must end with a letter, a digit, + or ~".to_string(),
            ),
        ];
        for (v, msg) in cases {
            assert_eq!(validate_version(v).unwrap_err(), msg);
        }
    }

    #[test]
    fn app_name_rule_message() {
        for ok in ["hello", "Hello", "a", "a-b-C", "9"] {
            assert_eq!(validate_app_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a_b", "a.b", "a b"] {
            assert_eq!(
                validate_app_name(bad).unwrap_err(),
                format!(
                    "invalid app name {:?}: use only letters, digits and single dashes, starting and ending with a letter or digit",
                    bad
                )
            );
        }
    }

    #[test]
    fn port_name_rule_message() {
        assert_eq!(validate_port_name("plug", "network-bind"), Ok(()));
        assert_eq!(
            validate_port_name("plug", "Network").unwrap_err(),
            "invalid plug name \"Network\": use only lowercase letters, digits and single dashes, starting with a letter"
        );
        assert!(validate_port_name("slot", "1abc").is_err());
        assert!(validate_port_name("hook", "post--refresh").is_err());
    }

    #[test]
    fn command_rule_messages() {
        assert_eq!(
            validate_command("command", "bin/hello --greet $PACK_DATA"),
            Ok(())
        );
        assert_eq!(
            validate_command("command", "bin/hello; rm -rf /").unwrap_err(),
            "invalid command \"bin/hello; rm -rf /\": \";\" is not allowed; use only letters, digits, spaces and the characters / . _ # : $ -"
        );
        assert_eq!(
            validate_command("command", "bin/hello `id`").unwrap_err(),
            "invalid command \"bin/hello `id`\": \"`\" is not allowed; use only letters, digits, spaces and the characters / . _ # : $ -"
        );
        assert_eq!(
            validate_command("command", "  ").unwrap_err(),
            "command cannot be empty"
        );
    }

    proptest::proptest! {
        /// The hand-written checks agree with snapd's regular expressions on any input.
        #[test]
        fn pack_names_agree_with_snapd_regex(name in "[a-z0-9A-Z/.\\-_ ]{0,45}") {
            let snapd = regex::Regex::new("^[a-z0-9](?:-?[a-z0-9])*$").unwrap();
            let want = snapd.is_match(&name)
                && (2..=40).contains(&name.len())
                && name.chars().any(|c| c.is_ascii_lowercase());
            proptest::prop_assert_eq!(validate_pack_name(&name).is_ok(), want);
        }

        #[test]
        fn versions_agree_with_snapd_regex(v in "[a-zA-Z0-9:.+~ _-]{0,34}") {
            let snapd =
                regex::Regex::new("^[a-zA-Z0-9](?:[a-zA-Z0-9:.+~-]{0,30}[a-zA-Z0-9+~])?$").unwrap();
            proptest::prop_assert_eq!(validate_version(&v).is_ok(), snapd.is_match(&v));
        }

        #[test]
        fn app_names_agree_with_snapd_regex(a in "[a-zA-Z0-9_-]{0,12}") {
            let snapd = regex::Regex::new("^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$").unwrap();
            proptest::prop_assert_eq!(validate_app_name(&a).is_ok(), snapd.is_match(&a));
        }
    }

    #[test]
    fn env_name_rule() {
        assert_eq!(validate_env_name("LANG_2"), Ok(()));
        assert_eq!(validate_env_name("_X"), Ok(()));
        assert_eq!(
            validate_env_name("2X").unwrap_err(),
            "invalid environment variable name \"2X\": use letters, digits and _, not starting with a digit"
        );
        assert!(validate_env_name("A-B").is_err());
        assert!(validate_env_name("").is_err());
    }
}
