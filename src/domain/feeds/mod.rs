//! Update feeds for desktop updaters (Tauri, Sparkle, electron-updater, Velopack): which
//! release and which of its artifacts each framework is offered, the per-license feed tokens
//! an updater that cannot send headers puts in its URL, and the short-lived download tokens
//! written into feeds so the updater fetches a file without the license key.

pub mod repo;
pub mod token;

use std::cmp::Ordering;

use semver::Version;

use super::artifacts::{Arch, Artifact};
use super::releases::{self, Channel, Release};
use crate::error::{Error, Result};

/// What an updater of a framework downloads on a platform, best first.
pub fn tauri_filetypes(platform: &str) -> &'static [&'static str] {
    // Tauri v2 signs the installer itself (`createUpdaterArtifacts: true`); the archives are
    // what its v1-compatible mode produces.
    match platform {
        "darwin" => &["app.tar.gz"],
        "linux" => &["AppImage", "AppImage.tar.gz"],
        "windows" => &["nsis", "msi", "nsis.zip", "msi.zip"],
        _ => &[],
    }
}

/// Sparkle installs archives and disk images (`pkg` installers too).
pub const SPARKLE_FILETYPES: &[&str] = &["zip", "dmg", "app.tar.gz", "tar.xz", "tar.gz", "pkg"];

/// electron-updater's files per platform: the first is the one it installs (`path`), the
/// others are listed in `files` (on macOS it installs the zip, never the dmg).
pub fn electron_filetypes(platform: &str) -> &'static [&'static str] {
    match platform {
        "windows" => &["nsis", "exe"],
        "darwin" => &["zip", "dmg"],
        "linux" => &["AppImage", "deb", "rpm"],
        _ => &[],
    }
}

/// The artifact of a release an updater takes on `platform`/`arch`: the first file type of
/// `filetypes` that exists, for that arch or, failing it, a macOS universal build. `arch`
/// `None`: any arch, preferring universal, then x86_64.
pub fn choose<'a>(
    files: &'a [Artifact],
    release_id: &str,
    platform: &str,
    arch: Option<Arch>,
    filetypes: &[&str],
) -> Option<&'a Artifact> {
    let of_release = || {
        files
            .iter()
            .filter(move |a| a.release_id == release_id && a.platform == platform)
    };
    let arch_rank = |a: &Artifact| -> Option<u8> {
        match arch {
            Some(wanted) if a.arch == wanted => Some(0),
            Some(_) if a.arch == Arch::Universal => Some(1),
            Some(_) => None,
            None => Some(match a.arch {
                Arch::Universal => 0,
                Arch::X86_64 => 1,
                Arch::Aarch64 => 2,
                _ => 3,
            }),
        }
    };
    filetypes.iter().find_map(|filetype| {
        of_release()
            .filter(|a| a.filetype == *filetype)
            .filter_map(|a| arch_rank(a).map(|rank| (rank, a)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, a)| a)
    })
}

/// Whether the release is offered to `subject` on `channel`: served, on the channel or a more
/// stable one, and `subject` is in its rollout.
pub fn offered(release: &Release, channel: Channel, subject: &str) -> bool {
    release.is_served() && channel.offers(release.channel) && releases::in_rollout(release, subject)
}

/// The newest release above `current` offered to `subject` on `channel` that has a file
/// `file_of` accepts, with that file (semver precedence, as `/api/v1/updates/check` orders).
pub fn newest_with_file<'a>(
    releases: &'a [Release],
    current: Option<&Version>,
    channel: Channel,
    subject: &str,
    file_of: impl Fn(&Release) -> Option<&'a Artifact>,
) -> Option<(&'a Release, &'a Artifact)> {
    releases
        .iter()
        .filter(|r| offered(r, channel, subject))
        .filter_map(|r| Some((r.semver()?, r, file_of(r)?)))
        .filter(|(v, _, _)| current.is_none_or(|c| v.cmp_precedence(c) == Ordering::Greater))
        .max_by(|(a, _, _), (b, _, _)| a.cmp_precedence(b))
        .map(|(_, r, file)| (r, file))
}

/// Every release offered to `subject` on `channel`, newest first (Sparkle's appcast and
/// Velopack's feed list them all).
pub fn offered_newest_first<'a>(
    releases: &'a [Release],
    channel: Channel,
    subject: &str,
) -> Vec<&'a Release> {
    let mut offered: Vec<(Version, &Release)> = releases
        .iter()
        .filter(|r| offered(r, channel, subject))
        .filter_map(|r| r.semver().map(|v| (v, r)))
        .collect();
    offered.sort_by(|(a, _), (b, _)| b.cmp_precedence(a));
    offered.into_iter().map(|(_, r)| r).collect()
}

/// Tauri's `{{target}}`: the operating system its updater runs on.
pub fn parse_tauri_target(text: &str) -> Result<String> {
    match text {
        "darwin" | "macos" => Ok("darwin".into()),
        "linux" | "windows" => Ok(text.to_owned()),
        _ => Err(Error::Invalid(format!(
            "target must be darwin, linux or windows (Tauri's {{{{target}}}}), not {:?}",
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// Tauri's `{{arch}}`: x86_64, aarch64, i686 or armv7.
pub fn parse_tauri_arch(text: &str) -> Result<Arch> {
    match Arch::parse(text) {
        Some(arch) if arch != Arch::Universal => Ok(arch),
        _ => Err(Error::Invalid(format!(
            "arch must be x86_64, aarch64, i686 or armv7 (Tauri's {{{{arch}}}}), not {:?}",
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// An optional `arch` query parameter (x86_64, aarch64, …; also Apple's `arm64` and `x64`).
pub fn parse_arch_alias(field: &str, text: &str) -> Result<Arch> {
    match text {
        "arm64" => Ok(Arch::Aarch64),
        "x64" | "amd64" => Ok(Arch::X86_64),
        "x86" | "ia32" => Ok(Arch::I686),
        other => Arch::parse(other).ok_or_else(|| {
            Error::Invalid(format!(
                "{field} must be one of {} (or arm64, x64, x86)",
                Arch::choices()
            ))
        }),
    }
}

/// An electron-updater channel file: `latest.yml` (Windows), `latest-mac.yml`,
/// `latest-linux.yml`, `latest-linux-arm64.yml`, and the same for `beta`, `alpha`, ….
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectronFile {
    pub channel: Channel,
    pub platform: &'static str,
    pub arch: Option<Arch>,
}

pub fn parse_electron_file(name: &str) -> Result<ElectronFile> {
    let bad = || {
        Error::Invalid(format!(
            "the file must be <channel>.yml, <channel>-mac.yml, <channel>-linux.yml or \
             <channel>-linux-arm64.yml with channel latest, rc, beta, alpha or nightly, not {:?}",
            name.chars().take(60).collect::<String>()
        ))
    };
    let stem = name.strip_suffix(".yml").ok_or_else(bad)?;
    let (channel, platform, arch) = if let Some(c) = stem.strip_suffix("-linux-arm64") {
        (c, "linux", Some(Arch::Aarch64))
    } else if let Some(c) = stem.strip_suffix("-linux") {
        (c, "linux", None)
    } else if let Some(c) = stem.strip_suffix("-mac") {
        (c, "darwin", None)
    } else {
        (stem, "windows", None)
    };
    let channel = match channel {
        // electron-builder calls its stable channel `latest`.
        "latest" => Channel::Stable,
        other => Channel::parse(other).ok_or_else(bad)?,
    };
    Ok(ElectronFile {
        channel,
        platform,
        arch,
    })
}

/// A Velopack channel (`releases.{channel}.json`): its operating system (Velopack's defaults
/// `win`, `osx`, `linux`), optionally an arch (`x64`, `arm64`, `x86`) and a stability channel,
/// joined by `-` (`win`, `osx-arm64`, `linux-beta`, `win-x64-nightly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VelopackChannel {
    pub platform: Option<&'static str>,
    pub arch: Option<Arch>,
    pub channel: Channel,
}

pub fn parse_velopack_channel(text: &str) -> Result<VelopackChannel> {
    let bad = |part: &str| {
        Error::Invalid(format!(
            "channel part {:?} is none of win, osx, linux, x64, arm64, x86, stable, rc, beta, \
             alpha, nightly",
            part.chars().take(40).collect::<String>()
        ))
    };
    if text.is_empty() || text.len() > 64 {
        return Err(Error::Invalid(
            "channel must be 1 to 64 characters, e.g. win or osx-beta".into(),
        ));
    }
    let mut parsed = VelopackChannel {
        platform: None,
        arch: None,
        channel: Channel::Stable,
    };
    for part in text.split('-') {
        match part {
            "win" | "windows" => parsed.platform = Some("windows"),
            "osx" | "mac" | "darwin" => parsed.platform = Some("darwin"),
            "linux" => parsed.platform = Some("linux"),
            "x64" | "arm64" | "x86" => parsed.arch = parse_arch_alias("channel", part).ok(),
            other => parsed.channel = Channel::parse(other).ok_or_else(|| bad(other))?,
        }
    }
    Ok(parsed)
}

/// A Velopack package id: the product's slug, as `vpk pack --packId` would be given it.
pub fn velopack_package_id(slug: &str) -> String {
    slug.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::releases::{Bundle, ReleaseStatus};

    fn artifact(release: &str, platform: &str, arch: Arch, filetype: &str) -> Artifact {
        Artifact {
            id: format!("{release}-{platform}-{arch}-{filetype}"),
            release_id: release.into(),
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
    fn each_framework_takes_its_own_file() {
        let files = vec![
            artifact("r", "windows", Arch::X86_64, "msi"),
            artifact("r", "windows", Arch::X86_64, "nsis"),
            artifact("r", "darwin", Arch::Universal, "app.tar.gz"),
            artifact("r", "darwin", Arch::Aarch64, "dmg"),
            artifact("r", "linux", Arch::X86_64, "AppImage"),
        ];
        let id = |a: Option<&Artifact>| a.map(|a| a.id.clone()).unwrap_or_default();
        let win = choose(
            &files,
            "r",
            "windows",
            Some(Arch::X86_64),
            tauri_filetypes("windows"),
        );
        assert_eq!(id(win), "r-windows-x86_64-nsis");
        let mac = choose(
            &files,
            "r",
            "darwin",
            Some(Arch::Aarch64),
            tauri_filetypes("darwin"),
        );
        assert_eq!(id(mac), "r-darwin-universal-app.tar.gz");
        let linux_arm = choose(
            &files,
            "r",
            "linux",
            Some(Arch::Aarch64),
            tauri_filetypes("linux"),
        );
        assert!(linux_arm.is_none());
        let sparkle = choose(&files, "r", "darwin", None, SPARKLE_FILETYPES);
        assert_eq!(id(sparkle), "r-darwin-aarch64-dmg");
        assert!(choose(&files, "other", "windows", None, &["msi"]).is_none());
    }

    #[test]
    fn channel_files_are_parsed() {
        let e = |name: &str| parse_electron_file(name).ok();
        assert_eq!(
            e("latest.yml"),
            Some(ElectronFile {
                channel: Channel::Stable,
                platform: "windows",
                arch: None
            })
        );
        assert_eq!(
            e("beta-mac.yml").map(|f| (f.channel, f.platform)),
            Some((Channel::Beta, "darwin"))
        );
        assert_eq!(
            e("latest-linux-arm64.yml").map(|f| f.arch),
            Some(Some(Arch::Aarch64))
        );
        assert!(e("latest.json").is_none());
        assert!(e("stablish-mac.yml").is_none());
        let v = |t: &str| parse_velopack_channel(t).ok();
        assert_eq!(
            v("osx-arm64-beta"),
            Some(VelopackChannel {
                platform: Some("darwin"),
                arch: Some(Arch::Aarch64),
                channel: Channel::Beta
            })
        );
        assert_eq!(v("win").map(|c| c.channel), Some(Channel::Stable));
        assert!(v("win-weekly").is_none());
        assert!(v("").is_none());
    }

    #[test]
    fn the_newest_release_with_a_file_is_offered() {
        let mut old = crate::domain::releases::tests::release(
            "1.1.0",
            Channel::Stable,
            ReleaseStatus::Published,
        );
        old.id = "old".into();
        let mut new = crate::domain::releases::tests::release(
            "1.2.0",
            Channel::Stable,
            ReleaseStatus::Published,
        );
        new.id = "new".into();
        let mut beta = crate::domain::releases::tests::release(
            "1.3.0-beta.1",
            Channel::Beta,
            ReleaseStatus::Published,
        );
        beta.id = "beta".into();
        let all = vec![old, new, beta];
        let files = vec![
            artifact("old", "linux", Arch::X86_64, "AppImage"),
            artifact("beta", "linux", Arch::X86_64, "AppImage"),
        ];
        let file_of =
            |r: &Release| choose(&files, &r.id, "linux", Some(Arch::X86_64), &["AppImage"]);
        let current = Version::new(1, 0, 0);
        let stable = newest_with_file(&all, Some(&current), Channel::Stable, "lic", file_of);
        assert_eq!(stable.map(|(r, _)| r.id.as_str()), Some("old"));
        let beta = newest_with_file(&all, Some(&current), Channel::Beta, "lic", file_of);
        assert_eq!(beta.map(|(r, _)| r.id.as_str()), Some("beta"));
        let none = newest_with_file(
            &all,
            Some(&Version::new(2, 0, 0)),
            Channel::Beta,
            "lic",
            file_of,
        );
        assert!(none.is_none());
        let listed: Vec<&str> = offered_newest_first(&all, Channel::Beta, "lic")
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(listed, ["beta", "new", "old"]);
    }
}
