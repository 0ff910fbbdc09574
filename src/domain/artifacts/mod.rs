//! Artifacts: the files of a release per platform, architecture and file type (a Windows
//! `.msi`, a macOS `.app.tar.gz`, a Linux `.AppImage` …), as desktop updaters (Tauri, Sparkle,
//! electron-updater, Velopack) fetch them. Each is stored content-addressed in the bundle store
//! like a release's own bundle, with SHA-256, SHA-512, the product's Ed25519 signature and a
//! minisign signature made by the same key (see [`minisign`]).
//!
//! A release uploaded with one bundle (the vendor contract's `/api/v1/updates/*`) is a release
//! with one platform-independent file: [`pick`] serves it when the release has no artifacts.

pub mod minisign;
pub mod repo;

use rusqlite::Connection;

use super::releases::{Bundle, Release, ReleaseStatus};
use super::text_enum;
use crate::error::{Error, Result};

text_enum! {
    /// The processor architecture an artifact runs on (`universal`: a macOS fat binary).
    pub enum Arch {
        X86_64 => "x86_64",
        Aarch64 => "aarch64",
        I686 => "i686",
        Armv7 => "armv7",
        Universal => "universal",
    }
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub id: String,
    pub release_id: String,
    /// windows, darwin, linux, … (lower case).
    pub platform: String,
    pub arch: Arch,
    /// msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
    pub filetype: String,
    /// Name, size, SHA-256 and Ed25519 signature (with its kid), as a bundle has them.
    pub file: Bundle,
    /// Lower-case hex SHA-512 of the exact bytes.
    pub sha512: String,
    /// The text of a minisign `.sig` file for the exact bytes.
    pub minisign_signature: String,
    pub created_at: i64,
    /// Lower-case hex SHA-1 of the exact bytes (Velopack's feed names it); empty for an artifact
    /// uploaded before it was recorded.
    pub sha1: String,
    /// The oldest OS version the file runs on (`10.15`), where the vendor set it.
    pub minimum_system_version: Option<String>,
}

/// What [`file_digests`] reads from a file.
pub struct FileDigests {
    /// Lower-case hex SHA-512.
    pub sha512: String,
    /// Lower-case hex SHA-1 (Velopack's feed still names it).
    pub sha1: String,
    /// What minisign's prehashed signature signs.
    pub blake2b: [u8; 64],
}

/// The SHA-512, SHA-1 and BLAKE2b-512 digests of a stored file, read once (blocking: call off
/// the async runtime).
pub fn file_digests(path: &std::path::Path) -> Result<FileDigests> {
    use sha2::Digest as _;
    use std::io::Read;
    let failed = |e: std::io::Error| Error::Storage(format!("cannot hash {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let mut sha512 = sha2::Sha512::new();
    let mut sha1 = sha1::Sha1::new();
    let mut blake = minisign::hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        sha512.update(&buf[..n]);
        sha1.update(&buf[..n]);
        blake2::Digest::update(&mut blake, &buf[..n]);
    }
    Ok(FileDigests {
        sha512: hex::encode(sha512.finalize()),
        sha1: hex::encode(sha1.finalize()),
        blake2b: blake.finalize().into(),
    })
}

/// What a platform or file type may be: short, and safe in a URL path and a file name.
fn slug(field: &str, text: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid(format!("{field} is required")));
    }
    if text.len() > max {
        return Err(Error::Invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    let starts_well = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !starts_well || !text.chars().all(allowed) {
        return Err(Error::Invalid(format!(
            "{field} {:?} may contain only letters, digits, '.', '-' and '_', starting with a \
             letter or digit",
            text.chars().take(40).collect::<String>()
        )));
    }
    Ok(text.to_owned())
}

/// `windows`, `darwin`, `linux`, … in lower case (`macos` and `osx` are refused: one name per
/// platform keeps the unique key meaningful).
pub fn parse_platform(field: &str, text: &str) -> Result<String> {
    let platform = slug(field, text, 32, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
    })
    .map_err(|_| {
        Error::Invalid(format!(
            "{field} must be a lower-case platform name such as windows, darwin or linux"
        ))
    })?;
    if matches!(platform.as_str(), "macos" | "osx" | "mac") {
        return Err(Error::Invalid(format!(
            "{field}: call macOS `darwin` (as Tauri and Rust targets do)"
        )));
    }
    Ok(platform)
}

pub fn parse_arch(field: &str, text: &str) -> Result<Arch> {
    Arch::parse(text.trim())
        .ok_or_else(|| Error::Invalid(format!("{field} must be one of {}", Arch::choices())))
}

/// `msi`, `nsis`, `exe`, `dmg`, `app.tar.gz`, `AppImage`, `deb`, `rpm`, `nupkg`, `zip`, …
pub fn parse_filetype(field: &str, text: &str) -> Result<String> {
    slug(field, text, 32, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
    })
}

/// An OS version as Sparkle compares it: one to four dot-separated numbers (`10.15`, `11`,
/// `10.13.6`).
pub fn parse_minimum_system_version(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    let parts: Vec<&str> = text.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() || parts.len() > 4 || !parts.iter().all(numeric) {
        return Err(Error::Invalid(format!(
            "{field} must be an OS version of one to four dot-separated numbers, such as \
             \"10.15\" or \"11\"; got {:?}",
            text.chars().take(40).collect::<String>()
        )));
    }
    Ok(text.to_owned())
}

/// Artifacts are added to a draft or a published release (a late platform build); a yanked
/// release is kept as it was. One file per (platform, arch, filetype).
pub fn ensure_can_add(
    conn: &Connection,
    release: &Release,
    platform: &str,
    arch: Arch,
    filetype: &str,
) -> Result<()> {
    if release.status == ReleaseStatus::Yanked {
        return Err(Error::Conflict(
            "the release is yanked: it is kept as it was".into(),
        ));
    }
    if repo::find_slot(conn, &release.id, platform, arch, filetype)?.is_some() {
        return Err(Error::Conflict(format!(
            "the release already has a {platform}/{arch} {filetype} artifact; delete it first"
        )));
    }
    Ok(())
}

/// Only a draft's artifacts may be deleted: what clients may have installed stays on record.
pub fn ensure_deletable(release: &Release) -> Result<()> {
    if release.status != ReleaseStatus::Draft {
        return Err(Error::Conflict(
            "artifacts can be deleted only from a draft; yank the release instead".into(),
        ));
    }
    Ok(())
}

/// What a download asks for; each part narrows the choice.
#[derive(Debug, Clone, Default)]
pub struct Wanted<'a> {
    pub platform: Option<&'a str>,
    pub arch: Option<Arch>,
    pub filetype: Option<&'a str>,
}

impl Wanted<'_> {
    fn matches(&self, a: &Artifact) -> bool {
        self.platform.is_none_or(|p| p == a.platform)
            && self.arch.is_none_or(|arch| arch == a.arch)
            && self.filetype.is_none_or(|t| t == a.filetype)
    }

    fn is_empty(&self) -> bool {
        self.platform.is_none() && self.arch.is_none() && self.filetype.is_none()
    }
}

/// What a download of a release sends.
#[derive(Debug, Clone)]
pub enum Picked<'a> {
    /// The release's own bundle (a release uploaded with one file).
    Bundle(&'a Bundle),
    Artifact(&'a Artifact),
}

impl Picked<'_> {
    pub fn file(&self) -> &Bundle {
        match self {
            Picked::Bundle(b) => b,
            Picked::Artifact(a) => &a.file,
        }
    }
}

/// The file a download of `release` sends. A release with a bundle of its own sends it when
/// nothing is asked or no artifact matches (it runs everywhere); otherwise the one artifact that
/// matches what is asked. Several matches are bad input naming the choices; none is a missing
/// artifact.
pub fn pick<'a>(
    release: &'a Release,
    artifacts: &'a [Artifact],
    wanted: &Wanted<'_>,
) -> Result<Picked<'a>> {
    if wanted.is_empty()
        && let Some(bundle) = &release.bundle
    {
        return Ok(Picked::Bundle(bundle));
    }
    let matching: Vec<&Artifact> = artifacts.iter().filter(|a| wanted.matches(a)).collect();
    match matching.as_slice() {
        [one] => Ok(Picked::Artifact(one)),
        [] => match &release.bundle {
            Some(bundle) => Ok(Picked::Bundle(bundle)),
            None => Err(Error::NotFound("artifact")),
        },
        several => {
            let choices: Vec<String> = several
                .iter()
                .map(|a| format!("{}/{}/{}", a.platform, a.arch, a.filetype))
                .collect();
            Err(Error::Invalid(format!(
                "the release has several artifacts for this request ({}): name platform, arch \
                 and filetype",
                choices.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(platform: &str, arch: Arch, filetype: &str) -> Artifact {
        Artifact {
            id: format!("{platform}-{arch}-{filetype}"),
            release_id: "rel".into(),
            platform: platform.into(),
            arch,
            filetype: filetype.into(),
            file: Bundle {
                filename: "f".into(),
                size: 1,
                sha256: "00".into(),
                signature: "s".into(),
                signature_kid: "k".into(),
            },
            sha512: "00".into(),
            minisign_signature: String::new(),
            created_at: 0,
            sha1: String::new(),
            minimum_system_version: None,
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            parse_platform("platform", " linux ").ok().as_deref(),
            Some("linux")
        );
        assert!(parse_platform("platform", "Linux").is_err());
        assert!(parse_platform("platform", "macos").is_err());
        assert!(parse_platform("platform", "../x").is_err());
        assert!(parse_platform("platform", "").is_err());
        assert!(parse_arch("arch", "x86_64").is_ok());
        assert!(parse_arch("arch", "amd64").is_err());
        assert!(parse_filetype("filetype", "app.tar.gz").is_ok());
        assert!(parse_filetype("filetype", "AppImage").is_ok());
        assert!(parse_filetype("filetype", ".tar").is_err());
        assert!(parse_filetype("filetype", "a/b").is_err());
        assert!(parse_filetype("filetype", &"x".repeat(33)).is_err());
    }

    #[test]
    fn a_download_picks_the_one_matching_artifact() {
        let all = vec![
            artifact("windows", Arch::X86_64, "msi"),
            artifact("windows", Arch::X86_64, "nsis"),
            artifact("darwin", Arch::Aarch64, "app.tar.gz"),
            artifact("linux", Arch::X86_64, "AppImage"),
        ];
        let release = crate::domain::releases::tests::release(
            "1.0.0",
            crate::domain::releases::Channel::Stable,
            ReleaseStatus::Published,
        );
        let mut bare = release.clone();
        bare.bundle = None;
        let id = |p: Result<Picked<'_>>| match p {
            Ok(Picked::Artifact(a)) => a.id.clone(),
            Ok(Picked::Bundle(_)) => "bundle".into(),
            Err(e) => format!("error: {e}"),
        };
        let want = |platform, arch, filetype| Wanted {
            platform,
            arch,
            filetype,
        };
        assert_eq!(
            id(pick(
                &bare,
                &all,
                &want(Some("darwin"), Some(Arch::Aarch64), None)
            )),
            "darwin-aarch64-app.tar.gz"
        );
        assert_eq!(
            id(pick(
                &bare,
                &all,
                &want(Some("windows"), Some(Arch::X86_64), Some("nsis"))
            )),
            "windows-x86_64-nsis"
        );
        assert!(
            id(pick(
                &bare,
                &all,
                &want(Some("windows"), Some(Arch::X86_64), None)
            ))
            .contains("windows/x86_64/msi, windows/x86_64/nsis")
        );
        assert!(
            id(pick(
                &bare,
                &all,
                &want(Some("linux"), Some(Arch::Aarch64), None)
            ))
            .starts_with("error")
        );
        // A release with its own bundle: it is the answer when nothing (else) matches.
        assert_eq!(id(pick(&release, &all, &Wanted::default())), "bundle");
        assert_eq!(
            id(pick(
                &release,
                &[],
                &want(Some("linux"), Some(Arch::Aarch64), None)
            )),
            "bundle"
        );
        assert_eq!(
            id(pick(&release, &all, &want(Some("linux"), None, None))),
            "linux-x86_64-AppImage"
        );
    }

    #[test]
    fn minimum_system_versions_are_dotted_numbers() {
        for good in ["10.15", "11", "10.13.6", " 14.0 "] {
            assert!(parse_minimum_system_version("m", good).is_ok(), "{good}");
        }
        for bad in ["", "10.", ".10", "ten", "10.15-beta", "1.2.3.4.5", "10..1"] {
            assert!(parse_minimum_system_version("m", bad).is_err(), "{bad}");
        }
    }
}
