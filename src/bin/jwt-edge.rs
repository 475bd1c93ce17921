//! The `jwt-edge` command-line tool (native only; see `jwt_edge::cli`).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use std::io::Write;

    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("error: argument {bad:?} is not valid UTF-8");
            return std::process::ExitCode::from(jwt_edge::cli::EXIT_USAGE);
        }
    };
    let output = jwt_edge::cli::run(&args, &mut std::io::stdin().lock());
    // A closed pipe (`| head`) is not worth a second error.
    let _ = std::io::stdout().lock().write_all(output.stdout.as_bytes());
    let _ = std::io::stderr().lock().write_all(output.stderr.as_bytes());
    std::process::ExitCode::from(output.code)
}

/// The CLI is not built for the wasm filter target; this stub keeps `--all-targets` building.
#[cfg(target_arch = "wasm32")]
fn main() {}
