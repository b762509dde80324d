//! The XML of the S3 requests and answers pg_retention uses: the `Delete` body of
//! DeleteObjects and its `DeleteResult`, `ListVersionsResult`, `VersioningConfiguration`, and
//! S3's `Error` body. Plain Rust: read with `quick-xml`, written with escaping.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One object of a DeleteObjects request: a key, and a version (None: the current one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    pub key: String,
    pub version: Option<String>,
}

/// Characters XML 1.0 cannot carry at all, even escaped: a key holding one cannot be named in a
/// DeleteObjects body.
pub fn xml_can_carry(key: &str) -> bool {
    key.chars().all(|c| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}'))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as written: a raw CR or TAB in element text would be normalised by the reader.
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// The body of a DeleteObjects request, every result asked for (not Quiet).
pub fn delete_body(objects: &[ObjectId]) -> String {
    let mut body = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>false</Quiet>"#);
    for object in objects {
        body.push_str("<Object><Key>");
        body.push_str(&escape(&object.key));
        body.push_str("</Key>");
        if let Some(version) = &object.version {
            body.push_str("<VersionId>");
            body.push_str(&escape(version));
            body.push_str("</VersionId>");
        }
        body.push_str("</Object>");
    }
    body.push_str("</Delete>");
    body
}

/// One `<Deleted>` or `<Error>` of a `DeleteResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyResult {
    Deleted { key: String, version: Option<String> },
    Error { key: String, version: Option<String>, code: String, message: String },
}

/// The elements of a document as (path, text) pairs: each leaf's text with the names of its
/// ancestors joined by `/`, and an empty text at the end of each element (to tell entries apart).
fn leaves(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_str(body);
    let (mut path, mut out) = (Vec::<String>::new(), Vec::new());
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| format!("S3's answer is not XML: {e}"))? {
            Event::Start(start) => {
                path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| format!("S3's answer is not XML: {e}"))?),
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                match (quick_xml::escape::resolve_xml_entity(&name), r.resolve_char_ref().ok().flatten()) {
                    (Some(entity), _) => text.push_str(entity),
                    (None, Some(c)) => text.push(c),
                    (None, None) => return Err(format!("S3's answer has an unknown entity &{name};")),
                }
            }
            Event::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Event::End(_) => {
                out.push((path.join("/"), std::mem::take(&mut text)));
                path.pop();
            }
            Event::Empty(empty) => {
                let mut at = path.clone();
                at.push(String::from_utf8_lossy(empty.local_name().as_ref()).into_owned());
                out.push((at.join("/"), String::new()));
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// A DeleteObjects answer (HTTP 200): what became of each key.
pub fn delete_result(body: &str) -> Result<Vec<KeyResult>, String> {
    let mut results = Vec::new();
    let (mut key, mut version, mut code, mut message) = (None, None, String::new(), String::new());
    for (path, text) in leaves(body)? {
        match path.as_str() {
            "DeleteResult/Deleted/Key" | "DeleteResult/Error/Key" => key = Some(text),
            "DeleteResult/Deleted/VersionId" | "DeleteResult/Error/VersionId" => version = Some(text).filter(|v| !v.is_empty()),
            "DeleteResult/Error/Code" => code = text,
            "DeleteResult/Error/Message" => message = text,
            "DeleteResult/Deleted" => {
                let key = key.take().ok_or("a <Deleted> without a <Key> in S3's answer")?;
                results.push(KeyResult::Deleted { key, version: version.take() });
            }
            "DeleteResult/Error" => {
                let key = key.take().ok_or("an <Error> without a <Key> in S3's answer")?;
                results.push(KeyResult::Error { key, version: version.take(), code: std::mem::take(&mut code), message: std::mem::take(&mut message) });
            }
            _ => {}
        }
    }
    if results.is_empty() && !body.contains("DeleteResult") {
        return Err("S3's answer to DeleteObjects has no DeleteResult".into());
    }
    Ok(results)
}

/// One page of ListObjectVersions: every version and delete marker of exactly `key` (the
/// listing is by prefix, and other keys share it), and the markers of the next page if truncated.
pub fn versions_page(body: &str, key: &str) -> Result<(Vec<String>, Option<(String, String)>), String> {
    let (mut versions, mut truncated, mut next_key, mut next_version) = (Vec::new(), false, None, None);
    let (mut entry_key, mut entry_version) = (None::<String>, None::<String>);
    for (path, text) in leaves(body)? {
        match path.as_str() {
            "ListVersionsResult/Version/Key" | "ListVersionsResult/DeleteMarker/Key" => entry_key = Some(text),
            "ListVersionsResult/Version/VersionId" | "ListVersionsResult/DeleteMarker/VersionId" => entry_version = Some(text),
            "ListVersionsResult/Version" | "ListVersionsResult/DeleteMarker" => {
                let (k, v) = (entry_key.take(), entry_version.take());
                if k.as_deref() == Some(key) {
                    versions.push(v.ok_or("a version without a <VersionId> in S3's answer")?);
                }
            }
            "ListVersionsResult/IsTruncated" => truncated = text == "true",
            "ListVersionsResult/NextKeyMarker" => next_key = Some(text),
            "ListVersionsResult/NextVersionIdMarker" => next_version = Some(text),
            _ => {}
        }
    }
    let next = match (truncated, next_key, next_version) {
        (false, ..) => None,
        (true, Some(k), Some(v)) => Some((k, v)),
        (true, ..) => return Err("a truncated version listing without its next markers".into()),
    };
    Ok((versions, next))
}

/// GetBucketVersioning: whether the bucket keeps versions (`Enabled` or `Suspended`: a
/// suspended bucket still holds the versions made while it was enabled). The root is
/// `VersioningConfiguration` at AWS; some servers name it otherwise.
pub fn keeps_versions(body: &str) -> Result<bool, String> {
    let status = leaves(body)?.into_iter().find(|(path, _)| path.split('/').count() == 2 && path.ends_with("/Status")).map(|(_, text)| text);
    Ok(matches!(status.as_deref(), Some("Enabled" | "Suspended")))
}

/// S3's `<Error><Code>` of a failed request, if its body has one.
pub fn error_code(body: &str) -> Option<String> {
    leaves(body).ok()?.into_iter().find(|(path, _)| path == "Error/Code").map(|(_, text)| text)
}
