//! `passthru`: see the library. Exit 0 on success, 1 with a CNI error object on stdout.
#![forbid(unsafe_code)]
use std::io::{Read, Write};
use std::process::ExitCode;

use multus_passthru::{Env, Outcome, run};

fn main() -> ExitCode {
    let env = Env::from_lookup(|name| std::env::var(name).ok());
    let outcome = run(&env, || {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    });
    // A closed stdout/stderr leaves nothing to report to: the exit code still tells.
    match outcome {
        Outcome::Stdout(text) => {
            if !text.is_empty() {
                let _ = writeln!(std::io::stdout(), "{text}");
            }
            ExitCode::SUCCESS
        }
        Outcome::About(text) => {
            let _ = writeln!(std::io::stderr(), "{text}");
            ExitCode::SUCCESS
        }
        Outcome::Error(e, version) => {
            let _ = writeln!(std::io::stdout(), "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
