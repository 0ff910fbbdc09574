//! Releases: signed, versioned bundles of a product on a channel. A release starts as a
//! DRAFT, is PUBLISHED (offered to licensed apps) and may be YANKED (withdrawn, kept for the
//! record). Bundles are files content-addressed by SHA-256 (see [`bundles`]).

pub mod bundles;
pub mod repo;

use std::cmp::Ordering;

use rusqlite::Connection;
use semver::Version;

use super::{now_ms, text_enum};
use crate::crypto;
use crate::error::{Error, Result};

text_enum! {
    /// Ordered by stability: a client on a channel is offered it and every more stable one.
    pub enum Channel {
        Stable => "stable",
        Rc => "rc",
        Beta => "beta",
        Alpha => "alpha",
        Nightly => "nightly",
    }
}

impl Channel {
    fn stability(self) -> u8 {
        match self {
            Channel::Stable => 4,
            Channel::Rc => 3,
            Channel::Beta => 2,
            Channel::Alpha => 1,
            Channel::Nightly => 0,
        }
    }

    /// Whether a client asking on `self` is offered releases of `other`.
    pub fn offers(self, other: Channel) -> bool {
        other.stability() >= self.stability()
    }
}

text_enum! {
    pub enum ReleaseStatus {
        Draft => "DRAFT",
        Published => "PUBLISHED",
        Yanked => "YANKED",
    }
}

/// A stored bundle: its download name, size, hash and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub filename: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the exact bytes; also the file's name in the store.
    pub sha256: String,
    /// Ed25519 over the exact bytes with the product's key, base64.
    pub signature: String,
    /// The kid of the key that made `signature` (the product's current key at upload).
    pub signature_kid: String,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub id: String,
    pub tenant_id: String,
    pub product_id: String,
    pub version: String,
    pub channel: Channel,
    pub changelog: String,
    pub is_critical: bool,
    pub requires_migration: bool,
    pub status: ReleaseStatus,
    /// The release's own platform-independent file; `None` for a release served through its
    /// artifacts only (`domain::artifacts`).
    pub bundle: Option<Bundle>,
    /// The share (0–100) of licenses offered the release: see [`in_rollout`].
    pub rollout_percentage: u8,
    pub created_at: i64,
    pub published_at: Option<i64>,
    pub yanked_at: Option<i64>,
}

impl Release {
    pub fn semver(&self) -> Option<Version> {
        Version::parse(&self.version).ok()
    }

    /// Offered to licensed apps (checks, downloads, manifests).
    pub fn is_served(&self) -> bool {
        self.status == ReleaseStatus::Published
    }
}

/// A smaller bundle that upgrades `from_version` to its release.
#[derive(Debug, Clone)]
pub struct Delta {
    pub release_id: String,
    pub from_version: String,
    pub bundle: Bundle,
    pub created_at: i64,
}

pub const MAX_CHANGELOG_BYTES: usize = 64 * 1024;
pub const MAX_FILENAME_CHARS: usize = 255;

/// Parses a semantic version (`1.4.0`, `2.0.0-beta.2`, `1.0.0+build.5`), naming `field` in
/// the error.
pub fn parse_version(field: &str, text: &str) -> Result<Version> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid(format!("{field} is required")));
    }
    if text.len() > 64 {
        return Err(Error::Invalid(format!(
            "{field} must be at most 64 characters"
        )));
    }
    Version::parse(text).map_err(|e| {
        Error::Invalid(format!(
            "{field} must be a semantic version like 1.4.0 or 2.0.0-beta.1 ({e})"
        ))
    })
}

pub fn parse_channel(field: &str, text: &str) -> Result<Channel> {
    Channel::parse(text.trim())
        .ok_or_else(|| Error::Invalid(format!("{field} must be one of {}", Channel::choices())))
}

pub fn validate_changelog(text: &str) -> Result<()> {
    if text.len() > MAX_CHANGELOG_BYTES {
        return Err(Error::Invalid(format!(
            "changelog must be at most {MAX_CHANGELOG_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A download name a browser and a shell both accept: the uploaded file's own base name,
/// stripped of anything that could escape a header or a directory.
pub fn safe_filename(uploaded: Option<&str>, product_slug: &str, version: &Version) -> String {
    let base = uploaded
        .and_then(|name| name.rsplit(['/', '\\']).next())
        .map(|name| {
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
                .take(MAX_FILENAME_CHARS)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty() && !name.starts_with('.'));
    base.unwrap_or_else(|| format!("{product_slug}-{version}.bin"))
}

/// The newest published release on `channel` or a more stable one, above `floor` if given.
/// Precedence is semver's: pre-releases sort below their release, build metadata is ignored.
pub fn newest<'a>(
    releases: &'a [Release],
    channel: Channel,
    floor: Option<&Version>,
) -> Option<&'a Release> {
    newest_where(releases, channel, floor, |_| true)
}

fn newest_where<'a>(
    releases: &'a [Release],
    channel: Channel,
    floor: Option<&Version>,
    eligible: impl Fn(&Release) -> bool,
) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| r.is_served() && channel.offers(r.channel) && eligible(r))
        .filter_map(|r| r.semver().map(|v| (v, r)))
        .filter(|(v, _)| floor.is_none_or(|f| v.cmp_precedence(f) == Ordering::Greater))
        .max_by(|(a, _), (b, _)| a.cmp_precedence(b))
        .map(|(_, r)| r)
}

pub struct NewRelease {
    pub version: Version,
    pub channel: Channel,
    pub changelog: String,
    pub is_critical: bool,
    pub requires_migration: bool,
    pub rollout_percentage: u8,
}

pub fn parse_rollout_percentage(field: &str, value: i64) -> Result<u8> {
    u8::try_from(value)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| Error::Invalid(format!("{field} must be a whole number from 0 to 100")))
}

/// Which of 100 buckets a subject (a license id, or a machine fingerprint where no license is
/// known) falls in for a release: a stable hash, so the answer never changes for a pair, and
/// independent between releases, so the same machines are not always the first.
pub fn rollout_bucket(release_id: &str, subject: &str) -> u8 {
    // The NUL keeps ("ab", "c") and ("a", "bc") apart.
    let digest = crypto::sha256(format!("{release_id}\0{subject}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % 100) as u8
}

/// Whether `subject` is offered `release` at its rollout percentage. A subject inside at p% is
/// inside at every higher percentage, so a machine that got a release keeps getting it while the
/// rollout grows.
pub fn in_rollout(release: &Release, subject: &str) -> bool {
    rollout_bucket(&release.id, subject) < release.rollout_percentage
}

/// The newest published release above `current` on `channel` or a more stable one that
/// `subject` is in the rollout of: a client outside a staged release's bucket gets the next
/// newest it is eligible for.
pub fn newest_update_for<'a>(
    releases: &'a [Release],
    current: &Version,
    channel: Channel,
    subject: &str,
) -> Option<&'a Release> {
    newest_where(releases, channel, Some(current), |r| in_rollout(r, subject))
}

/// Whether a client at `current` is below the product's minimum version: its update is then
/// critical whatever the release says.
pub fn below_minimum(current: &Version, minimum: Option<&str>) -> bool {
    minimum
        .and_then(|m| Version::parse(m).ok())
        .is_some_and(|m| current.cmp_precedence(&m) == Ordering::Less)
}

/// Refuses a version equal in precedence to one the product already has (`1.0.0+a` and
/// `1.0.0+b` are the same release to every client).
pub fn ensure_new_version(conn: &Connection, product_id: &str, version: &Version) -> Result<()> {
    let taken = repo::versions_of(conn, product_id)?
        .iter()
        .filter_map(|v| Version::parse(v).ok())
        .any(|v| v.cmp_precedence(version) == Ordering::Equal);
    if taken {
        return Err(Error::Conflict(format!(
            "version {version} already exists for this product"
        )));
    }
    Ok(())
}

/// Records a new DRAFT release whose bundle is already in the store.
pub fn create(
    conn: &Connection,
    tenant_id: &str,
    product_id: &str,
    new: NewRelease,
    bundle: Option<Bundle>,
) -> Result<Release> {
    ensure_new_version(conn, product_id, &new.version)?;
    let release = Release {
        id: crypto::new_id("rel"),
        tenant_id: tenant_id.to_owned(),
        product_id: product_id.to_owned(),
        version: new.version.to_string(),
        channel: new.channel,
        changelog: new.changelog,
        is_critical: new.is_critical,
        requires_migration: new.requires_migration,
        status: ReleaseStatus::Draft,
        bundle,
        rollout_percentage: new.rollout_percentage,
        created_at: now_ms(),
        published_at: None,
        yanked_at: None,
    };
    repo::insert(conn, &release)?;
    Ok(release)
}

/// DRAFT → PUBLISHED. Publishing a published release changes nothing; a yanked one stays
/// withdrawn (publish a new version instead); a release with nothing to download is refused.
pub fn publish(conn: &Connection, release: &Release) -> Result<bool> {
    if release.bundle.is_none()
        && crate::domain::artifacts::repo::count_of_release(conn, &release.id)? == 0
    {
        return Err(Error::Conflict(
            "the release has no bundle and no artifacts: upload one before publishing".into(),
        ));
    }
    match release.status {
        ReleaseStatus::Published => Ok(false),
        ReleaseStatus::Yanked => Err(Error::Conflict(
            "a yanked release cannot be published again; publish a new version".into(),
        )),
        ReleaseStatus::Draft => {
            repo::mark_published(conn, &release.id, now_ms())?;
            Ok(true)
        }
    }
}

/// PUBLISHED → YANKED: withdrawn from checks and downloads, kept for the record.
pub fn yank(conn: &Connection, release: &Release) -> Result<bool> {
    match release.status {
        ReleaseStatus::Yanked => Ok(false),
        ReleaseStatus::Draft => Err(Error::Conflict(
            "a draft was never published: delete it instead of yanking it".into(),
        )),
        ReleaseStatus::Published => {
            repo::mark_yanked(conn, &release.id, now_ms())?;
            Ok(true)
        }
    }
}

/// Only drafts may be deleted: what clients may have installed stays on record.
pub fn ensure_deletable(release: &Release) -> Result<()> {
    if release.status != ReleaseStatus::Draft {
        return Err(Error::Conflict(
            "only drafts can be deleted; yank a published release instead".into(),
        ));
    }
    Ok(())
}

/// A delta must upgrade from an older version to this release, once per starting version.
pub fn check_delta(conn: &Connection, release: &Release, from: &Version) -> Result<()> {
    if release.status == ReleaseStatus::Yanked {
        return Err(Error::Conflict("the release is yanked".into()));
    }
    let target = release
        .semver()
        .ok_or_else(|| Error::Storage(format!("release {} has a bad version", release.id)))?;
    if from.cmp_precedence(&target) != Ordering::Less {
        return Err(Error::Invalid(format!(
            "fromVersion must be older than the release's version {target}"
        )));
    }
    if repo::find_delta(conn, &release.id, &from.to_string())?.is_some() {
        return Err(Error::Conflict(format!(
            "a delta from {from} already exists for this release"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn release(version: &str, channel: Channel, status: ReleaseStatus) -> Release {
        Release {
            id: version.to_owned(),
            tenant_id: "t".into(),
            product_id: "p".into(),
            version: version.to_owned(),
            channel,
            changelog: String::new(),
            is_critical: false,
            requires_migration: false,
            status,
            bundle: Some(Bundle {
                filename: "b".into(),
                size: 1,
                sha256: "00".into(),
                signature: "s".into(),
                signature_kid: "k".into(),
            }),
            rollout_percentage: 100,
            created_at: 0,
            published_at: None,
            yanked_at: None,
        }
    }

    #[test]
    fn channels_offer_themselves_and_every_more_stable_one() {
        use Channel::*;
        assert!(Stable.offers(Stable));
        assert!(!Stable.offers(Rc));
        assert!(Beta.offers(Stable) && Beta.offers(Rc) && Beta.offers(Beta));
        assert!(!Beta.offers(Alpha));
        assert!(Nightly.offers(Alpha) && Nightly.offers(Stable));
    }

    #[test]
    fn newest_update_follows_semver_precedence_and_channels() -> Result<()> {
        use Channel::*;
        use ReleaseStatus::*;
        let all = vec![
            release("1.1.0", Stable, Published),
            release("1.2.0-beta.2", Beta, Published),
            release("1.2.0-beta.10", Beta, Published),
            release("1.3.0", Stable, Draft),
            release("1.4.0", Stable, Yanked),
            release("2.0.0-alpha.1", Alpha, Published),
        ];
        let current = parse_version("current_version", "1.0.0")?;
        let pick = |ch| newest(&all, ch, Some(&current)).map(|r| r.version.as_str());
        assert_eq!(pick(Stable), Some("1.1.0"));
        // beta.10 > beta.2: numeric identifiers compare as numbers
        assert_eq!(pick(Beta), Some("1.2.0-beta.10"));
        assert_eq!(pick(Alpha), Some("2.0.0-alpha.1"));
        let top = parse_version("current_version", "2.0.0-alpha.1")?;
        assert!(newest(&all, Nightly, Some(&top)).is_none());
        // a pre-release of 1.2.0 is below 1.2.0 itself
        let rc = parse_version("v", "1.2.0-rc.1")?;
        assert_eq!(
            newest(&all, Beta, Some(&rc)).map(|r| r.version.as_str()),
            None
        );
        Ok(())
    }

    #[test]
    fn rollout_buckets_only_grow_with_the_percentage() {
        let mut r = release("1.4.0", Channel::Stable, ReleaseStatus::Published);
        let subjects: Vec<String> = (0..200).map(|i| format!("lic_{i}")).collect();
        let inside = |r: &Release| -> Vec<String> {
            subjects
                .iter()
                .filter(|s| in_rollout(r, s))
                .cloned()
                .collect()
        };
        r.rollout_percentage = 0;
        assert!(inside(&r).is_empty());
        r.rollout_percentage = 10;
        let ten = inside(&r);
        r.rollout_percentage = 50;
        let fifty = inside(&r);
        r.rollout_percentage = 100;
        assert_eq!(inside(&r).len(), 200);
        assert!(ten.iter().all(|s| fifty.contains(s)));
        // roughly the share asked for
        assert!((5..=40).contains(&ten.len()), "{}", ten.len());
        assert!((70..=130).contains(&fifty.len()), "{}", fifty.len());
        assert!(parse_rollout_percentage("p", 101).is_err());
        assert!(parse_rollout_percentage("p", -1).is_err());
    }

    #[test]
    fn a_client_outside_a_staged_release_gets_the_next_newest() -> Result<()> {
        let mut staged = release("1.5.0", Channel::Stable, ReleaseStatus::Published);
        staged.rollout_percentage = 0;
        let all = vec![
            release("1.4.0", Channel::Stable, ReleaseStatus::Published),
            staged,
        ];
        let current = parse_version("v", "1.0.0")?;
        let got = newest_update_for(&all, &current, Channel::Stable, "lic_1");
        assert_eq!(got.map(|r| r.version.as_str()), Some("1.4.0"));
        assert!(below_minimum(&current, Some("1.2.0")));
        assert!(!below_minimum(&current, Some("1.0.0")));
        assert!(!below_minimum(&current, None));
        Ok(())
    }

    #[test]
    fn versions_and_names_are_checked() {
        assert!(parse_version("version", "1.2").is_err());
        assert!(parse_version("version", "").is_err());
        assert!(parse_version("version", "v1.2.3").is_err());
        assert!(parse_version("version", " 1.2.3-rc.1+b7 ").is_ok());
        let v = Version::new(1, 0, 0);
        assert_eq!(safe_filename(Some("../../etc/passwd"), "app", &v), "passwd");
        assert_eq!(
            safe_filename(Some("C:\\build\\App Setup.exe"), "app", &v),
            "AppSetup.exe"
        );
        assert_eq!(safe_filename(Some("\"\r\n"), "app", &v), "app-1.0.0.bin");
        assert_eq!(safe_filename(None, "app", &v), "app-1.0.0.bin");
        assert_eq!(safe_filename(Some(".env"), "app", &v), "app-1.0.0.bin");
    }
}
