//! The text formats of the feeds: Sparkle's RSS appcast (XML) and electron-updater's channel
//! files (YAML), written by hand so every value is escaped the one way its reader accepts.

use std::fmt::Write as _;

use base64::Engine;
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::domain::ms_to_datetime;
use crate::domain::releases::{Channel, Release};
use crate::service::feeds::{Appcast, ElectronUpdate};

/// Text safe in XML 1.0 content or a quoted attribute: markup characters escaped, characters
/// XML 1.0 forbids (most C0 controls) dropped.
fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if xml_allowed(c) => out.push(c),
            _ => {}
        }
    }
    out
}

fn xml_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || ('\u{20}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c)
        || c >= '\u{10000}'
}

/// Release notes as CDATA: a `]]>` inside them is split across two sections, and characters
/// XML forbids are dropped.
fn cdata(text: &str) -> String {
    let clean: String = text.chars().filter(|c| xml_allowed(*c)).collect();
    format!("<![CDATA[{}]]>", clean.replace("]]>", "]]]]><![CDATA[>"))
}

fn published(release: &Release) -> OffsetDateTime {
    ms_to_datetime(release.published_at.unwrap_or(release.created_at))
}

/// What a Sparkle enclosure's `type` says for a file type.
fn mime_of(filetype: &str) -> &'static str {
    match filetype {
        "dmg" => "application/x-apple-diskimage",
        "zip" => "application/zip",
        "pkg" => "application/vnd.apple.installer+xml",
        "tar.gz" | "app.tar.gz" => "application/gzip",
        "tar.xz" => "application/x-xz",
        _ => "application/octet-stream",
    }
}

pub const SPARKLE_NS: &str = "http://www.andymatuschak.org/xml-namespaces/sparkle";

/// An RSS 2.0 appcast with Sparkle's namespace, one item per release, newest first.
pub fn appcast(feed: &Appcast) -> String {
    let mut xml = String::new();
    let name = xml_text(&feed.product.name);
    let _ = write!(
        xml,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <rss version=\"2.0\" xmlns:sparkle=\"{SPARKLE_NS}\">\n<channel>\n\
         <title>{name}</title>\n<description>Updates of {name}</description>\n\
         <language>en</language>\n"
    );
    for item in &feed.items {
        let r = &item.release;
        let a = &item.file.artifact;
        let version = xml_text(&r.version);
        let date = published(r).format(&Rfc2822).unwrap_or_default();
        let _ = write!(
            xml,
            "<item>\n<title>Version {version}</title>\n<pubDate>{date}</pubDate>\n\
             <sparkle:version>{version}</sparkle:version>\n\
             <sparkle:shortVersionString>{version}</sparkle:shortVersionString>\n"
        );
        if r.channel != Channel::Stable {
            let _ = writeln!(
                xml,
                "<sparkle:channel>{}</sparkle:channel>",
                r.channel.as_str()
            );
        }
        if r.is_critical {
            xml.push_str("<sparkle:criticalUpdate/>\n");
        } else if let Some(minimum) = &feed.minimum_version {
            let _ = writeln!(
                xml,
                "<sparkle:criticalUpdate sparkle:version=\"{}\"/>",
                xml_text(minimum)
            );
        }
        if let Some(minimum) = &a.minimum_system_version {
            let _ = writeln!(
                xml,
                "<sparkle:minimumSystemVersion>{}</sparkle:minimumSystemVersion>",
                xml_text(minimum)
            );
        }
        if !r.changelog.is_empty() {
            let _ = writeln!(xml, "<description>{}</description>", cdata(&r.changelog));
        }
        let _ = write!(
            xml,
            "<enclosure url=\"{}\" length=\"{}\" type=\"{}\" sparkle:edSignature=\"{}\"/>\n\
             </item>\n",
            xml_text(&item.file.url),
            a.file.size,
            mime_of(&a.filetype),
            xml_text(&a.file.signature),
        );
    }
    xml.push_str("</channel>\n</rss>\n");
    xml
}

/// A YAML double-quoted scalar: every character outside printable ASCII is escaped, so no
/// reader (js-yaml included) sees a line break or a BOM where the text had none.
fn yaml_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// The base64 form of a hex SHA-512, as electron-builder writes it.
fn sha512_base64(hex_digest: &str) -> String {
    hex::decode(hex_digest)
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
        .unwrap_or_default()
}

/// An electron-updater channel file (`latest.yml`, `latest-mac.yml`, …).
pub fn electron_yaml(update: &ElectronUpdate) -> String {
    let r = &update.release;
    let mut yaml = String::new();
    let _ = writeln!(yaml, "version: {}", yaml_str(&r.version));
    yaml.push_str("files:\n");
    for f in &update.files {
        let _ = write!(
            yaml,
            "  - url: {}\n    sha512: {}\n    size: {}\n",
            yaml_str(&f.url),
            yaml_str(&sha512_base64(&f.artifact.sha512)),
            f.artifact.file.size
        );
    }
    if let Some(main) = update.files.first() {
        let _ = writeln!(yaml, "path: {}", yaml_str(&main.url));
        let _ = writeln!(
            yaml,
            "sha512: {}",
            yaml_str(&sha512_base64(&main.artifact.sha512))
        );
    }
    let date = published(r).format(&Rfc3339).unwrap_or_default();
    let _ = writeln!(yaml, "releaseDate: {}", yaml_str(&date));
    let _ = writeln!(yaml, "releaseNotes: {}", yaml_str(&r.changelog));
    if let Some(percentage) = update.staging_percentage {
        let _ = writeln!(yaml, "stagingPercentage: {percentage}");
    }
    // The feed does not learn the client's version, so only a release marked critical is.
    if r.is_critical {
        // Not electron-updater's own: the app reads it from the update info it is given.
        yaml.push_str("critical: true\n");
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_its_reader() {
        assert_eq!(xml_text("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(cdata("x]]>y"), "<![CDATA[x]]]]><![CDATA[>y]]>");
        assert_eq!(
            yaml_str("a\"b\\c\nd\u{2028}é😀"),
            "\"a\\\"b\\\\c\\nd\\u2028\\u00E9\\U0001F600\""
        );
    }
}
