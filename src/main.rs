#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    sftp_operator::app::main()
}
