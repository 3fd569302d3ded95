//! Command line: flags as clap parses them, then one function per command wiring the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diagnostic::Diagnostics;
use crate::load::{self, LoadError};
use crate::render;
use crate::validate::{self, Service};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `plan`: no changes)
  1  error: invalid manifests (each problem printed as file:line:column: field: message),
     bad usage, or a failed AWS call
  2  `plan` only: changes are pending";

#[derive(Debug, Parser)]
#[command(
    name = "sftp-operator",
    version,
    about = "Run atmoz/sftp on AWS ECS from declarative SftpService manifests",
    long_about = "Reads SftpService manifests (YAML), observes ECS, the NLB, security groups, Cloud Map and \
Route 53, and converges them: once (`converge`) or continuously (`run`).\n\n\
Start with `sftp-operator validate -f manifests/examples/` and `sftp-operator render -f FILE`.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// Manifest file or directory (*.yaml, *.yml); repeatable; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filename: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct OwnerArgs {
    /// Scopes ownership: resources are tagged sftp-operator/owner=<ID>, so two installations never touch each other's.
    #[arg(
        long,
        env = "SFTP_OPERATOR_OWNER_ID",
        default_value = "sftp-operator",
        value_name = "ID"
    )]
    pub owner_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests without contacting AWS; prints every problem with file:line:column.
    Validate {
        #[command(flatten)]
        manifests: ManifestArgs,
    },
    /// Print the AWS resources each service should have (task definition, service, target group, ...), without contacting AWS.
    Render {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Json)]
        output: Format,
        /// Only this service (metadata.name).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Print the JSON Schema of the SftpService manifest.
    Schema,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("no service named `{0}` in the manifests")]
    NoSuchService(String),
    #[error("writing output: {0}")]
    Output(String),
}

/// Entry point for the binary: parse, dispatch, print errors, choose the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; usage errors exit 1 (2 means "changes pending").
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

fn error_text(e: &CliError) -> String {
    match e {
        CliError::Invalid(d) | CliError::Load(LoadError::Invalid(d)) => d.to_string(),
        other => format!("error: {other}"),
    }
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Validate { manifests } => {
            let services = load_services(&manifests)?;
            let mut out = std::io::stdout().lock();
            for s in &services {
                writeln!(
                    out,
                    "{}: ok ({}:{})",
                    s.name,
                    s.origin.file.display(),
                    s.origin.doc + 1
                )
                .map_err(output)?;
            }
            writeln!(
                out,
                "{} service{} valid",
                services.len(),
                if services.len() == 1 { "" } else { "s" }
            )
            .map_err(output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            manifests,
            owner,
            output: fmt,
            service,
        } => {
            let services = load_services(&manifests)?;
            let selected: Vec<&Service> = match &service {
                Some(name) => {
                    let s = services
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| CliError::NoSuchService(name.clone()))?;
                    vec![s]
                }
                None => services.iter().collect(),
            };
            let rendered: Vec<render::Desired> = selected
                .iter()
                .map(|s| render::render_for_display(s, &owner.owner_id))
                .collect();
            print_value(&rendered, fmt)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print_value(&crate::spec::json_schema(), Format::Json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn output(e: std::io::Error) -> CliError {
    CliError::Output(e.to_string())
}

/// Loads and validates: the first step of every command that reads manifests.
pub fn load_services(args: &ManifestArgs) -> Result<Vec<Service>, CliError> {
    let docs = load::load(&args.filename)?;
    validate::validate(&docs).map_err(CliError::Invalid)
}

pub fn print_value<T: serde::Serialize>(v: &T, fmt: Format) -> Result<(), CliError> {
    let text = match fmt {
        Format::Json => {
            serde_json::to_string_pretty(v).map_err(|e| CliError::Output(e.to_string()))? + "\n"
        }
        Format::Yaml => serde_saphyr::to_string(v).map_err(|e| CliError::Output(e.to_string()))?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(output)
}
