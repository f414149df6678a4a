//! `samlctl env`: credentials as lines a shell can evaluate
//! (`eval "$(samlctl env prod)"`, `samlctl env prod --shell fish | source`,
//! `samlctl env prod --shell powershell | Invoke-Expression`).
//!
//! Every value is quoted so that the shell takes it literally, whatever it contains.

use std::fmt;

/// The shell syntax to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh: `export NAME='value'`.
    #[default]
    Sh,
    /// fish: `set -gx NAME 'value'`.
    Fish,
    /// PowerShell: `$Env:NAME = 'value'`.
    #[value(alias = "pwsh")]
    Powershell,
}

impl fmt::Display for Shell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shell::Sh => "sh",
            Shell::Fish => "fish",
            Shell::Powershell => "powershell",
        })
    }
}

/// One line per variable, in `shell`'s syntax.
pub fn render(shell: Shell, vars: &[(&str, String)]) -> String {
    vars.iter()
        .map(|(name, value)| {
            let value = quote(shell, value);
            match shell {
                Shell::Sh => format!("export {name}={value}\n"),
                Shell::Fish => format!("set -gx {name} {value};\n"),
                Shell::Powershell => format!("$Env:{name} = {value}\n"),
            }
        })
        .collect()
}

/// `value` as a single-quoted literal of `shell`.
pub fn quote(shell: Shell, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match (shell, c) {
            // sh has no escapes inside single quotes: close, add an escaped quote, reopen.
            (Shell::Sh, '\'') => out.push_str(r"'\''"),
            // fish single quotes know exactly two escapes.
            (Shell::Fish, '\'' | '\\') => {
                out.push('\\');
                out.push(c);
            }
            // PowerShell doubles quotes, and treats the typographic single quotes as quotes
            // too.
            (Shell::Powershell, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') => {
                out.push(c);
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(value: &str) -> Vec<(&'static str, String)> {
        vec![("AWS_SESSION_TOKEN", value.to_owned())]
    }

    #[test]
    fn plain_values() {
        let v = vars("IQoJb3JpZ2luX2VjE+/=");
        assert_eq!(
            render(Shell::Sh, &v),
            "export AWS_SESSION_TOKEN='IQoJb3JpZ2luX2VjE+/='\n"
        );
        assert_eq!(
            render(Shell::Fish, &v),
            "set -gx AWS_SESSION_TOKEN 'IQoJb3JpZ2luX2VjE+/=';\n"
        );
        assert_eq!(
            render(Shell::Powershell, &v),
            "$Env:AWS_SESSION_TOKEN = 'IQoJb3JpZ2luX2VjE+/='\n"
        );
    }

    #[test]
    fn quotes_backslashes_and_dollars_stay_literal() {
        let tricky = r#"it's "$HOME" \n `x` $(id)"#;
        // (shell, value, the quoted word)
        let cases = [
            (Shell::Sh, tricky, r#"'it'\''s "$HOME" \n `x` $(id)'"#),
            (Shell::Fish, tricky, r#"'it\'s "$HOME" \\n `x` $(id)'"#),
            (Shell::Powershell, tricky, r#"'it''s "$HOME" \n `x` $(id)'"#),
            (Shell::Powershell, "a\u{2019}b", "'a\u{2019}\u{2019}b'"),
        ];
        for (shell, value, want) in cases {
            assert_eq!(quote(shell, value), want, "{shell:?} {value:?}");
        }
    }

    #[test]
    fn sh_really_reads_back_what_was_quoted() {
        let tricky = "it's \"$HOME\" \\ `id` $(id)\nline two '' end";
        let script = format!(
            "{}printf %s \"$AWS_SESSION_TOKEN\"",
            render(Shell::Sh, &vars(tricky))
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run sh");
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), tricky);
    }
}
