//! Sparkle's appcast, parsed as XML, and its edSignature checked with openssl.

use super::*;

/// Sparkle: an RSS appcast that parses as XML, with the notes escaped, criticalUpdate from
/// the minimum version, and an edSignature openssl verifies over the archive downloaded
/// through the enclosure URL.
#[tokio::test]
async fn sparkle_appcast_parses_and_its_ed_signature_verifies_with_openssl() {
    let f = fixture().await;
    let mac = [
        file("darwin", "x86_64", "zip", "App-1.1.0-x64.zip"),
        file("darwin", "aarch64", "zip", "App-1.1.0-arm64.zip"),
        file("darwin", "aarch64", "dmg", "App-1.1.0-arm64.dmg"),
    ];
    f.release("1.1.0", "stable", 100, &mac).await;
    let a = f
        .srv
        .call(
            Method::PATCH,
            &format!("/api/projects/{}/update-settings", f.project),
            Some(&f.admin),
            Some(json!({"minimumVersion": "1.0.5"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let appcast = f
        .feed(
            "/api/v1/updates/sparkle/app/appcast.xml?arch=arm64",
            Some(&f.license),
            &[],
        )
        .await;
    assert_eq!(appcast.status, StatusCode::OK);
    assert!(
        appcast
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/xml"))
    );
    let items = appcast_items(&appcast.raw);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.version, "1.1.0");
    assert_eq!(item.short_version, "1.1.0");
    assert_eq!(item.channel, None);
    assert_eq!(item.critical_below.as_deref(), Some("1.0.5"));
    assert_eq!(
        item.minimum_system_version, None,
        "not set on this artifact"
    );
    assert_eq!(
        item.description, "Notes of 1.1.0: <b>bold</b> & ]]> \"quoted\" é",
        "CDATA keeps the notes as written"
    );
    time::OffsetDateTime::parse(
        &item.pub_date,
        &time::format_description::well_known::Rfc2822,
    )
    .expect("pubDate is RFC 2822");
    assert!(item.url.ends_with("/App-1.1.0-arm64.zip"), "{}", item.url);
    let got = f.fetch(&item.url, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.raw, mac[1].4);
    assert_eq!(item.length, got.raw.len().to_string());

    // openssl verifies the raw Ed25519 signature with the product's public key.
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_key = B64.decode(&f.public_key).expect("key");
    let mut der = hex::decode("302a300506032b6570032100").expect("hex");
    der.extend_from_slice(&raw_key);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(&der)
    );
    let pem_path = dir.path().join("pub.pem");
    std::fs::write(&pem_path, pem).expect("write");
    let sig_path = dir.path().join("sig.bin");
    std::fs::write(&sig_path, B64.decode(&item.ed_signature).expect("base64")).expect("write");
    let verify = |bytes: &[u8]| {
        let data = dir.path().join("archive.zip");
        std::fs::write(&data, bytes).expect("write");
        tool(
            "openssl",
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                &pem_path.to_string_lossy(),
                "-rawin",
                "-in",
                &data.to_string_lossy(),
                "-sigfile",
                &sig_path.to_string_lossy(),
            ],
        )
    };
    let out = verify(&got.raw);
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tampered = got.raw.clone();
    tampered[3] ^= 1;
    assert!(!verify(&tampered).status.success());

    // The Intel archive for arch=x86_64; bad arch is bad input; a release marked critical
    // says so without a version.
    let intel = f
        .feed(
            "/api/v1/updates/sparkle/app/appcast.xml?arch=x86_64",
            Some(&f.license),
            &[],
        )
        .await;
    assert!(
        appcast_items(&intel.raw)[0]
            .url
            .ends_with("/App-1.1.0-x64.zip")
    );
    f.feed(
        "/api/v1/updates/sparkle/app/appcast.xml?arch=m68k",
        Some(&f.license),
        &[],
    )
    .await
    .assert_error(400, "VALIDATION_ERROR");
    let critical = f
        .create_draft(json!({"version": "1.2.0", "isCritical": true}))
        .await;
    let id = str_of(&critical.body["data"]["release"]["id"]);
    let uploaded = f
        .upload_as(
            &f.admin,
            &id,
            artifact_form(
                &[
                    ("platform", "darwin"),
                    ("arch", "universal"),
                    ("filetype", "zip"),
                    ("minimumSystemVersion", "10.15"),
                ],
                Some(("App-1.2.0.zip", bytes_of("c", 500))),
            ),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    assert_eq!(
        uploaded.body["data"]["artifact"]["minimumSystemVersion"],
        "10.15"
    );
    assert_eq!(f.publish(&id).await.status, StatusCode::OK);
    let appcast = f
        .feed(
            "/api/v1/updates/sparkle/app/appcast.xml",
            Some(&f.license),
            &[],
        )
        .await;
    let items = appcast_items(&appcast.raw);
    assert_eq!(items[0].version, "1.2.0");
    assert_eq!(
        items[0].critical_below.as_deref(),
        Some(""),
        "critical for everyone"
    );
    assert_eq!(
        items[0].minimum_system_version.as_deref(),
        Some("10.15"),
        "the artifact's minimum macOS version"
    );
}

/// One `<item>` of an appcast, as Sparkle reads it.
#[derive(Debug, Default)]
pub(super) struct AppcastItem {
    pub(super) version: String,
    pub(super) short_version: String,
    pub(super) channel: Option<String>,
    /// `Some("")`: critical for everyone; `Some(v)`: below v.
    pub(super) critical_below: Option<String>,
    pub(super) pub_date: String,
    pub(super) description: String,
    pub(super) url: String,
    pub(super) length: String,
    pub(super) ed_signature: String,
    pub(super) minimum_system_version: Option<String>,
}

/// Parses an appcast with an XML parser, checking its namespace and RSS shape.
pub(super) fn appcast_items(xml: &[u8]) -> Vec<AppcastItem> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;
    const SPARKLE: &[u8] = b"http://www.andymatuschak.org/xml-namespaces/sparkle";
    let mut reader = NsReader::from_reader(xml);
    let mut items = Vec::new();
    let mut current: Option<AppcastItem> = None;
    let mut path: Vec<String> = Vec::new();
    let mut saw_rss = false;
    let mut buf = Vec::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .expect("the appcast is well-formed XML");
        let sparkle = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == SPARKLE);
        match event {
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => {
                let (e, is_start) = match event {
                    Event::Start(e) => (e, true),
                    Event::Empty(e) => (e, false),
                    _ => unreachable!(),
                };
                let local = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                let attrs: Vec<(String, String)> = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("attribute");
                        let (_, local) = reader.resolve_attribute(a.key);
                        (
                            String::from_utf8_lossy(local.as_ref()).to_string(),
                            a.unescape_value().expect("value").to_string(),
                        )
                    })
                    .collect();
                let attr = |name: &str| {
                    attrs
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                match (sparkle, local.as_str()) {
                    (false, "rss") => {
                        saw_rss = attr("version").as_deref() == Some("2.0");
                    }
                    (false, "item") => current = Some(AppcastItem::default()),
                    (false, "enclosure") => {
                        let item = current.as_mut().expect("enclosure inside an item");
                        item.url = attr("url").expect("url");
                        item.length = attr("length").expect("length");
                        assert!(attr("type").is_some());
                        item.ed_signature = attr("edSignature").expect("sparkle:edSignature");
                    }
                    (true, "criticalUpdate") => {
                        current.as_mut().expect("inside an item").critical_below =
                            Some(attr("version").unwrap_or_default());
                    }
                    _ => {}
                }
                if is_start {
                    path.push(format!("{}{local}", if sparkle { "sparkle:" } else { "" }));
                }
            }
            Event::End(_) => {
                let closed = path.pop();
                if closed.as_deref() == Some("item") {
                    items.push(current.take().expect("an item"));
                }
            }
            Event::Text(t) => {
                let text = t.unescape().expect("text").to_string();
                text_into(&mut current, path.last(), &text);
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t.into_inner()).to_string();
                text_into(&mut current, path.last(), &text);
            }
            _ => {}
        }
        buf.clear();
    }
    assert!(saw_rss, "an RSS 2.0 document");
    items
}

fn text_into(current: &mut Option<AppcastItem>, element: Option<&String>, text: &str) {
    let (Some(item), Some(element)) = (current.as_mut(), element) else {
        return;
    };
    match element.as_str() {
        "sparkle:version" => item.version.push_str(text),
        "sparkle:shortVersionString" => item.short_version.push_str(text),
        "sparkle:channel" => item.channel.get_or_insert_with(String::new).push_str(text),
        "pubDate" => item.pub_date.push_str(text),
        "sparkle:minimumSystemVersion" => item
            .minimum_system_version
            .get_or_insert_with(String::new)
            .push_str(text),
        "description" => item.description.push_str(text),
        _ => {}
    }
}
