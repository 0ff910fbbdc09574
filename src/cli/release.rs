//! `keyward release create|upload|publish|yank`: releases from a CI pipeline. A face like the
//! HTTP ones, but remote: it talks HTTP(S) to a running server with an API key, as `curl` would,
//! and never opens a database. Uploads stream from disk (memory does not grow with the file).
//! Each command prints the release or artifact as JSON; a refusal prints the server's message
//! and exits non-zero.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::http::{Remote, Upload};
use crate::error::Error;

/// Where the server is and how to prove the right to release.
#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// The server's base URL (`https://licenses.example.com`).
    #[arg(long = "server", env = "KEYWARD_URL")]
    pub server: String,
    /// A FULL_ADMIN API key (restricted to the product if you like).
    #[arg(long = "api-key", env = "KEYWARD_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// A PEM file of certificate authorities to trust besides the system's (a server with a
    /// private CA).
    #[arg(long = "ca-cert", env = "KEYWARD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Create a DRAFT release without files; prints it (its `id` is what `upload` takes).
    Create {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The project (product) id.
        #[arg(long)]
        project: String,
        /// Semantic version (`1.4.0`).
        #[arg(long = "version")]
        release_version: String,
        /// stable (default), rc, beta, alpha or nightly.
        #[arg(long)]
        channel: Option<String>,
        /// Release notes as text.
        #[arg(long, conflicts_with = "changelog_file")]
        changelog: Option<String>,
        /// Release notes from a file (Markdown).
        #[arg(long)]
        changelog_file: Option<PathBuf>,
        /// Mark the update critical.
        #[arg(long)]
        critical: bool,
        /// The share (0–100, default 100) of licenses offered the release.
        #[arg(long)]
        rollout: Option<u8>,
    },
    /// Upload a file to a release for one platform, arch and filetype; prints the artifact
    /// with its hashes and signatures.
    Upload {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The release id `create` printed.
        #[arg(long)]
        release: String,
        /// windows, darwin, linux, …
        #[arg(long)]
        platform: String,
        /// x86_64, aarch64, i686, armv7 or universal.
        #[arg(long)]
        arch: String,
        /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
        #[arg(long)]
        filetype: String,
        /// The oldest OS version the file runs on (`10.15`); Sparkle's appcast shows it.
        #[arg(long)]
        minimum_system_version: Option<String>,
        /// The file to upload (streamed).
        file: PathBuf,
    },
    /// Publish a draft: licensed apps are offered it from now on.
    Publish {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The release id.
        release: String,
        /// Change the rollout percentage as it is published.
        #[arg(long)]
        rollout: Option<u8>,
    },
    /// Yank a published release: withdrawn from checks, downloads and feeds at once.
    Yank {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The release id.
        release: String,
    },
}

/// Runs a release command; prints the answer's object and returns the exit code.
pub async fn run(cmd: ReleaseCommand) -> Result<i32, Error> {
    let (printed, answer) = match cmd {
        ReleaseCommand::Create {
            remote,
            project,
            release_version,
            channel,
            changelog,
            changelog_file,
            critical,
            rollout,
        } => {
            let changelog =
                match changelog_file {
                    Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                        Error::Invalid(format!("cannot read {}: {e}", path.display()))
                    })?),
                    None => changelog,
                };
            let body = json!({
                "version": release_version,
                "channel": channel,
                "changelog": changelog,
                "isCritical": critical,
                "rolloutPercentage": rollout,
            });
            let path = format!("/api/projects/{}/release-drafts", segment(&project)?);
            let answer = connect(&remote)?
                .send_json("POST", &path, Some(body))
                .await?;
            ("release", answer)
        }
        ReleaseCommand::Upload {
            remote,
            release,
            platform,
            arch,
            filetype,
            minimum_system_version,
            file,
        } => {
            let path = format!("/api/releases/{}/artifacts", segment(&release)?);
            let mut fields = vec![
                ("platform", platform),
                ("arch", arch),
                ("filetype", filetype),
            ];
            if let Some(version) = minimum_system_version {
                fields.push(("minimumSystemVersion", version));
            }
            let upload = Upload {
                fields,
                file_field: "file",
                file,
            };
            let answer = connect(&remote)?.send_file(&path, upload).await?;
            ("artifact", answer)
        }
        ReleaseCommand::Publish {
            remote,
            release,
            rollout,
        } => {
            let remote = connect(&remote)?;
            let id = segment(&release)?;
            if let Some(percentage) = rollout {
                let body = json!({"rolloutPercentage": percentage});
                let changed = remote
                    .send_json("PATCH", &format!("/api/releases/{id}"), Some(body))
                    .await?;
                if !changed.ok() {
                    return Ok(changed.report());
                }
            }
            let answer = remote
                .send_json("POST", &format!("/api/releases/{id}/publish"), None)
                .await?;
            ("release", answer)
        }
        ReleaseCommand::Yank { remote, release } => {
            let path = format!("/api/releases/{}/yank", segment(&release)?);
            let answer = connect(&remote)?.send_json("POST", &path, None).await?;
            ("release", answer)
        }
    };
    if !answer.ok() {
        return Ok(answer.report());
    }
    let shown = answer.body["data"]
        .get(printed)
        .cloned()
        .unwrap_or(Value::Null);
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_else(|_| shown.to_string())
    );
    Ok(0)
}

fn connect(args: &RemoteArgs) -> Result<Remote, Error> {
    Remote::new(&args.server, &args.api_key, args.ca_cert.as_deref())
}

/// An id as one URL path segment: ids are short and plain, anything else is refused before a
/// request is made.
fn segment(id: &str) -> Result<&str, Error> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(id)
    } else {
        Err(Error::Invalid(format!(
            "{id:?} is not an id (letters, digits, '_' and '-')"
        )))
    }
}
