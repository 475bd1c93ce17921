//! The native `jwt-edge` command-line tool: check a filter config, explain a decision, and
//! make test keys, key sets and tokens.
//!
//! Every command runs the same core code the filter runs (`authn::config`, `authn::authenticate`,
//! `authn::jws`), so `explain` shows what the filter would do, not a reimplementation of it.
//! Commands collect their output in an [`Output`]; the binary prints it and exits with its code.
//! Nothing here panics on bad input: every failure is a one-line `error: …` and a non-zero exit.

mod args;
mod check_config;
mod describe;
mod explain;
mod keys;
mod mint;
mod timefmt;

use std::fmt;
use std::io::Read;

/// Exit code for a usage or input error (unknown option, unreadable file, bad key …).
pub const EXIT_USAGE: u8 = 2;

/// What a command printed and how it exits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Appends a line to stdout.
    fn out(&mut self, line: impl fmt::Display) {
        self.stdout.push_str(&line.to_string());
        self.stdout.push('\n');
    }

    /// Appends a line to stderr.
    fn err(&mut self, line: impl fmt::Display) {
        self.stderr.push_str(&line.to_string());
        self.stderr.push('\n');
    }
}

/// A failure that ends a command: printed as `error: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    /// A usage or input error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }
}

/// Where a command reads `-` (stdin) from; a trait object so tests can supply bytes.
pub type Stdin<'a> = &'a mut dyn Read;

const HELP: &str = "\
jwt-edge: JWT verification for Envoy (proxy-wasm), and tools for the people who run it

Usage: jwt-edge <command> [options]

Commands:
  check-config FILE   validate a filter config; print a summary and warnings
  explain             show the decision the filter takes for a request, step by step
  keygen              generate a private key (PKCS#8 PEM)
  jwks                print the public JWKS for PEM keys
  mint                sign a test token with a PEM key

Options:
  -h, --help          this help (also: jwt-edge <command> --help)
  --version           print the version

Exit codes: 0 success / allowed, 1 invalid config / denied, 2 usage or input error
(check-config --strict: 2 when there are warnings).";

/// Runs the CLI on `args` (without the program name).
pub fn run(args: &[String], stdin: Stdin<'_>) -> Output {
    let mut out = Output::default();
    let result = match args.split_first() {
        None => {
            out.err(HELP);
            Err(CliError::usage("no command given"))
        }
        Some((cmd, rest)) => match cmd.as_str() {
            "-h" | "--help" | "help" => {
                out.out(HELP);
                Ok(0)
            }
            "-V" | "--version" | "version" => {
                out.out(format!("jwt-edge {}", env!("CARGO_PKG_VERSION")));
                Ok(0)
            }
            "check-config" => check_config::run(rest, stdin, &mut out),
            "explain" => explain::run(rest, stdin, &mut out),
            "keygen" => keys::run_keygen(rest, &mut out),
            "jwks" => keys::run_jwks(rest, &mut out),
            "mint" => mint::run(rest, &mut out),
            other => Err(CliError::usage(format!(
                "unknown command {other:?} (commands: check-config, explain, keygen, jwks, mint; see jwt-edge --help)"
            ))),
        },
    };
    match result {
        Ok(code) => out.code = code,
        Err(e) => {
            out.err(format!("error: {}", one_line(&e.message)));
            out.code = e.code;
        }
    }
    out
}

/// Reads a file argument, or stdin for `-`, as UTF-8 text.
fn read_text(what: &str, path: &str, stdin: Stdin<'_>) -> Result<String, CliError> {
    let bytes = if path == "-" {
        let mut buf = Vec::new();
        stdin
            .read_to_end(&mut buf)
            .map_err(|e| CliError::usage(format!("{what}: cannot read stdin: {e}")))?;
        buf
    } else {
        std::fs::read(path)
            .map_err(|e| CliError::usage(format!("{what}: cannot read {path}: {e}")))?
    };
    String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("{what}: {path} is not UTF-8 text")))
}

/// Keeps an error message on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Prints a string value for a terminal: JSON-quoted (escapes control characters), cut at
/// `max` characters.
fn quoted(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{}…", serde_json::Value::from(cut))
    } else {
        serde_json::Value::from(s).to_string()
    }
}
