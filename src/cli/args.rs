//! A small command-line parser: `--flag`, `--flag value`, `--flag=value`, positionals, `--`.
//!
//! Hand-written to keep the CLI's dependency tree small; each command declares its options in
//! a table and gets one-line errors for anything else.

use std::collections::BTreeMap;

use super::CliError;

/// One option a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Long name without the dashes.
    pub name: &'static str,
    /// Takes a value (the next argument, or after `=`).
    pub value: bool,
    /// May be given more than once.
    pub repeat: bool,
}

/// An option that takes one value.
pub const fn value(name: &'static str) -> Opt {
    Opt {
        name,
        value: true,
        repeat: false,
    }
}

/// An option that takes a value and may be repeated.
pub const fn repeated(name: &'static str) -> Opt {
    Opt {
        name,
        value: true,
        repeat: true,
    }
}

/// A switch without a value.
pub const fn switch(name: &'static str) -> Opt {
    Opt {
        name,
        value: false,
        repeat: false,
    }
}

/// The parsed command line of one command.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<&'static str, Vec<String>>,
    pub positionals: Vec<String>,
    pub help: bool,
}

impl Args {
    /// Parses `args` (without the program and command names) against `opts`.
    pub fn parse(command: &str, args: &[String], opts: &[Opt]) -> Result<Args, CliError> {
        let mut out = Args::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "--" {
                out.positionals.extend(iter.by_ref().cloned());
                break;
            }
            if arg == "-h" || arg == "--help" {
                out.help = true;
                continue;
            }
            let Some(long) = arg.strip_prefix("--") else {
                if arg.len() > 1 && arg.starts_with('-') {
                    return Err(unknown(command, arg));
                }
                out.positionals.push(arg.clone());
                continue;
            };
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let Some(opt) = opts.iter().find(|o| o.name == name) else {
                return Err(unknown(command, arg));
            };
            let given = if opt.value {
                match inline {
                    Some(v) => v,
                    None => iter.next().cloned().ok_or_else(|| {
                        CliError::usage(format!(
                            "--{name} needs a value (see `jwt-edge {command} --help`)"
                        ))
                    })?,
                }
            } else {
                if inline.is_some() {
                    return Err(CliError::usage(format!("--{name} takes no value")));
                }
                String::new()
            };
            let slot = out.values.entry(opt.name).or_default();
            if !opt.repeat && !slot.is_empty() {
                return Err(CliError::usage(format!("--{name} given more than once")));
            }
            slot.push(given);
        }
        Ok(out)
    }

    /// The value of a single-valued option.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The value of a required option.
    pub fn required(&self, name: &str) -> Result<&str, CliError> {
        self.one(name)
            .ok_or_else(|| CliError::usage(format!("--{name} is required")))
    }

    /// Every value of a repeatable option, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when a switch was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Refuses positionals beyond `max`.
    pub fn at_most_positionals(&self, max: usize) -> Result<(), CliError> {
        match self.positionals.get(max) {
            Some(extra) => Err(CliError::usage(format!("unexpected argument {extra:?}"))),
            None => Ok(()),
        }
    }
}

fn unknown(command: &str, arg: &str) -> CliError {
    CliError::usage(format!(
        "unknown option {arg} (see `jwt-edge {command} --help`)"
    ))
}

/// Parses a decimal integer option with a clear error.
pub fn number(name: &str, text: &str) -> Result<u64, CliError> {
    text.parse::<u64>().map_err(|_| {
        CliError::usage(format!(
            "--{name}: {text:?} is not a non-negative whole number"
        ))
    })
}

/// Parses a duration: whole seconds, optionally with an `s`, `m`, `h` or `d` suffix.
pub fn duration(name: &str, text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage(format!(
            "--{name}: {text:?} is not a duration (use 3600, 3600s, 60m, 1h or 1d)"
        ))
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (text.get(..i).unwrap_or(""), c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const OPTS: [Opt; 3] = [value("kid"), repeated("aud"), switch("strict")];

    #[test]
    fn parses_forms() {
        let a = Args::parse(
            "t",
            &strings(&[
                "x", "--kid=a", "--aud", "b", "--aud", "-c", "--strict", "--", "--y",
            ]),
            &OPTS,
        )
        .unwrap();
        assert_eq!(a.one("kid"), Some("a"));
        assert_eq!(a.all("aud"), ["b", "-c"]);
        assert!(a.flag("strict"));
        assert_eq!(a.positionals, ["x", "--y"]);
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            &["--nope"][..],
            &["-x"],
            &["--kid"],
            &["--kid", "a", "--kid", "b"],
            &["--strict=1"],
        ] {
            assert!(Args::parse("t", &strings(bad), &OPTS).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("ttl", "3600").unwrap(), 3600);
        assert_eq!(duration("ttl", "3600s").unwrap(), 3600);
        assert_eq!(duration("ttl", "2m").unwrap(), 120);
        assert_eq!(duration("ttl", "1h").unwrap(), 3600);
        assert_eq!(duration("ttl", "1d").unwrap(), 86_400);
        for bad in ["", "s", "-1s", "1.5s", "1w", "1 h", "99999999999999999999d"] {
            assert!(duration("ttl", bad).is_err(), "{bad}");
        }
    }
}
