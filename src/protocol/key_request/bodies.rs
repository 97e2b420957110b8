//! The XML bodies of the Key Request function (TS 33.246 §6.3.2.1A
//! registration, §6.3.2.1B deregistration, §6.3.2.2.1 MSK request) and of its
//! answers, with one status code per User Service or per MSK in the style of
//! TS 24.109 / TS 33.246 §6.3.2.4 ("multiple status codes within one
//! response"). The seed CRs leave the syntax to stage 3: element names and the
//! namespace are the project's (`profile::key_management`), the media types
//! are the IANA-registered ones.
//!
//! ```xml
//! <register xmlns="…"><serviceId>urn:svc:tv</serviceId></register>
//! <deregister xmlns="…"><serviceId>urn:svc:tv</serviceId></deregister>
//! <mskRequest xmlns="…"><key keyDomainId="09f107" mskId="00010000"/></mskRequest>
//! <registerResponse xmlns="…"><status serviceId="urn:svc:tv" code="200"/></registerResponse>
//! <mskResponse xmlns="…"><status keyDomainId="09f107" mskId="00010000" code="200"/></mskResponse>
//! ```
//!
//! Parsing is strict: wrong root, unknown element or attribute, missing
//! attribute, bad number, text where none belongs: each is its own error.

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use thiserror::Error;

use crate::protocol::keys::{KeyDomainId, MskId};
use crate::protocol::profile::key_management as profile;

/// Most items one body may list: bounds the work one request can cause.
pub const MAX_ITEMS: usize = 64;
/// Longest User Service ID accepted.
pub const MAX_SERVICE_ID_LEN: usize = 256;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("body: media type {0:?} is not a key management type")]
    UnknownMediaType(String),
    #[error("body: not UTF-8")]
    NotUtf8,
    #[error("body: XML error at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error(
        "body: root element is {found}, expected {{{}}}{expected}",
        profile::XML_NAMESPACE
    )]
    WrongRoot {
        found: String,
        expected: &'static str,
    },
    #[error("body: unexpected element {found} inside {parent}")]
    UnexpectedElement { parent: &'static str, found: String },
    #[error("body: element {element} has unexpected attribute {attribute}")]
    UnexpectedAttribute {
        element: &'static str,
        attribute: String,
    },
    #[error("body: element {element} lacks attribute {attribute}")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("body: {element}/@{attribute} = {value:?}: {reason}")]
    InvalidValue {
        element: &'static str,
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("body: element {0} must not carry text")]
    UnexpectedText(&'static str),
    #[error("body: {0} lists nothing")]
    Empty(&'static str),
    #[error("body: {element} lists more than {max} items")]
    TooMany { element: &'static str, max: usize },
    #[error("body: no root element")]
    MissingRoot,
}

/// A per-item status code (HTTP-like, TS 33.246 §6.3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 200: registered / deregistered / the MSK will be delivered over MIKEY.
    Ok,
    /// 400: the item itself is malformed (e.g. an MSK ID of another domain).
    BadRequest,
    /// 403: the Membership function refuses this UE this User Service, or the
    /// UE is not registered to any User Service that uses the MSK.
    Forbidden,
    /// 404: no such User Service or MSK.
    NotFound,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::Forbidden => 403,
            Self::NotFound => 404,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            200 => Self::Ok,
            400 => Self::BadRequest,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            _ => return None,
        })
    }
}

/// A key named in an MSK request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub key_domain_id: KeyDomainId,
    /// Key Number 0 asks for the current MSK of the Key Group (seed §6.3.2.2.1).
    pub msk_id: MskId,
}

/// A request to the Key Request function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequest {
    Register { service_ids: Vec<String> },
    Deregister { service_ids: Vec<String> },
    Msk { keys: Vec<KeyRef> },
}

/// The answer of the Key Request function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyResponse {
    /// Answers both registration and deregistration.
    Registration(Vec<(String, Status)>),
    Msk(Vec<(KeyRef, Status)>),
}

const REGISTER: &str = "register";
const DEREGISTER: &str = "deregister";
const MSK_REQUEST: &str = "mskRequest";
const REGISTER_RESPONSE: &str = "registerResponse";
const MSK_RESPONSE: &str = "mskResponse";
const SERVICE_ID: &str = "serviceId";
const KEY: &str = "key";
const STATUS: &str = "status";

impl KeyRequest {
    pub fn media_type(&self) -> &'static str {
        match self {
            Self::Register { .. } => profile::REGISTER_TYPE,
            Self::Deregister { .. } => profile::DEREGISTER_TYPE,
            Self::Msk { .. } => profile::MSK_REQUEST_TYPE,
        }
    }

    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        match self {
            Self::Register { service_ids } | Self::Deregister { service_ids } => {
                let root = if matches!(self, Self::Register { .. }) {
                    REGISTER
                } else {
                    DEREGISTER
                };
                open_root(&mut out, root);
                for id in service_ids {
                    let _ = write!(out, "<{SERVICE_ID}>{}</{SERVICE_ID}>", escape(id));
                }
                close_root(&mut out, root);
            }
            Self::Msk { keys } => {
                open_root(&mut out, MSK_REQUEST);
                for key in keys {
                    out.push_str("<key");
                    push_key_attributes(&mut out, key);
                    out.push_str("/>");
                }
                close_root(&mut out, MSK_REQUEST);
            }
        }
        out
    }

    /// Parses a request body of media type `media_type` (parameters such as
    /// `; charset=utf-8` are ignored).
    pub fn parse(media_type: &str, body: &[u8]) -> Result<Self, BodyError> {
        let essence = media_essence(media_type);
        let root = if essence == profile::REGISTER_TYPE {
            REGISTER
        } else if essence == profile::DEREGISTER_TYPE {
            DEREGISTER
        } else if essence == profile::MSK_REQUEST_TYPE {
            MSK_REQUEST
        } else {
            return Err(BodyError::UnknownMediaType(media_type.to_owned()));
        };
        let doc = Document::parse(body, root)?;
        match root {
            MSK_REQUEST => {
                let keys = doc.items(MSK_REQUEST, KEY, |item| {
                    item.no_text(KEY)?;
                    item.only_attributes(KEY, &["keyDomainId", "mskId"])?;
                    key_ref(item, KEY)
                })?;
                Ok(Self::Msk { keys })
            }
            _ => {
                let service_ids = doc.items(root_name(root), SERVICE_ID, |item| {
                    item.only_attributes(SERVICE_ID, &[])?;
                    service_id(&item.text)
                })?;
                Ok(if root == REGISTER {
                    Self::Register { service_ids }
                } else {
                    Self::Deregister { service_ids }
                })
            }
        }
    }
}

fn root_name(root: &str) -> &'static str {
    if root == REGISTER {
        REGISTER
    } else {
        DEREGISTER
    }
}

fn service_id(text: &str) -> Result<String, BodyError> {
    let id = text.trim();
    if id.is_empty() || id.len() > MAX_SERVICE_ID_LEN {
        return Err(BodyError::InvalidValue {
            element: SERVICE_ID,
            attribute: "(text)",
            value: id.chars().take(64).collect(),
            reason: "a User Service ID is 1 to 256 characters",
        });
    }
    Ok(id.to_owned())
}

impl KeyResponse {
    pub fn media_type(&self) -> &'static str {
        match self {
            Self::Registration(_) => profile::REGISTER_RESPONSE_TYPE,
            Self::Msk(_) => profile::MSK_RESPONSE_TYPE,
        }
    }

    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        match self {
            Self::Registration(items) => {
                open_root(&mut out, REGISTER_RESPONSE);
                for (id, status) in items {
                    let _ = write!(
                        out,
                        "<status serviceId=\"{}\" code=\"{}\"/>",
                        escape(id),
                        status.code()
                    );
                }
                close_root(&mut out, REGISTER_RESPONSE);
            }
            Self::Msk(items) => {
                open_root(&mut out, MSK_RESPONSE);
                for (key, status) in items {
                    out.push_str("<status");
                    push_key_attributes(&mut out, key);
                    let _ = write!(out, " code=\"{}\"/>", status.code());
                }
                close_root(&mut out, MSK_RESPONSE);
            }
        }
        out
    }

    pub fn parse(media_type: &str, body: &[u8]) -> Result<Self, BodyError> {
        let essence = media_essence(media_type);
        if essence == profile::REGISTER_RESPONSE_TYPE {
            let doc = Document::parse(body, REGISTER_RESPONSE)?;
            let items = doc.items(REGISTER_RESPONSE, STATUS, |item| {
                item.no_text(STATUS)?;
                item.only_attributes(STATUS, &["serviceId", "code"])?;
                Ok((
                    service_id(item.attribute(STATUS, "serviceId")?)?,
                    status(item)?,
                ))
            })?;
            Ok(Self::Registration(items))
        } else if essence == profile::MSK_RESPONSE_TYPE {
            let doc = Document::parse(body, MSK_RESPONSE)?;
            let items = doc.items(MSK_RESPONSE, STATUS, |item| {
                item.no_text(STATUS)?;
                item.only_attributes(STATUS, &["keyDomainId", "mskId", "code"])?;
                Ok((key_ref(item, STATUS)?, status(item)?))
            })?;
            Ok(Self::Msk(items))
        } else {
            Err(BodyError::UnknownMediaType(media_type.to_owned()))
        }
    }
}

fn status(item: &Item) -> Result<Status, BodyError> {
    let text = item.attribute(STATUS, "code")?;
    text.parse::<u16>()
        .ok()
        .and_then(Status::from_code)
        .ok_or_else(|| BodyError::InvalidValue {
            element: STATUS,
            attribute: "code",
            value: text.to_owned(),
            reason: "not one of the status codes 200, 400, 403, 404",
        })
}

fn key_ref(item: &Item, element: &'static str) -> Result<KeyRef, BodyError> {
    let domain = item.attribute(element, "keyDomainId")?;
    let msk = item.attribute(element, "mskId")?;
    let invalid = |attribute, value: &str, reason| BodyError::InvalidValue {
        element,
        attribute,
        value: value.to_owned(),
        reason,
    };
    let domain_bytes = fixed_hex::<3>(domain)
        .ok_or_else(|| invalid("keyDomainId", domain, "not 6 hex digits (MCC ‖ MNC)"))?;
    let msk_bytes = fixed_hex::<4>(msk).ok_or_else(|| invalid("mskId", msk, "not 8 hex digits"))?;
    Ok(KeyRef {
        key_domain_id: KeyDomainId(domain_bytes),
        msk_id: MskId(u32::from_be_bytes(msk_bytes)),
    })
}

fn fixed_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

fn push_key_attributes(out: &mut String, key: &KeyRef) {
    let _ = write!(
        out,
        " keyDomainId=\"{}\" mskId=\"{:08x}\"",
        hex::encode(key.key_domain_id.0),
        key.msk_id.0
    );
}

fn media_essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn open_root(out: &mut String, root: &str) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root} xmlns=\"{}\">",
        profile::XML_NAMESPACE
    );
}

fn close_root(out: &mut String, root: &str) {
    let _ = write!(out, "</{root}>");
}

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// One child element of the root: its attributes and text.
struct Item {
    attributes: Vec<(String, String)>,
    text: String,
}

impl Item {
    fn attribute(&self, element: &'static str, name: &'static str) -> Result<&str, BodyError> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or(BodyError::MissingAttribute {
                element,
                attribute: name,
            })
    }

    fn only_attributes(&self, element: &'static str, allowed: &[&str]) -> Result<(), BodyError> {
        match self
            .attributes
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            Some((n, _)) => Err(BodyError::UnexpectedAttribute {
                element,
                attribute: n.clone(),
            }),
            None => Ok(()),
        }
    }

    fn no_text(&self, element: &'static str) -> Result<(), BodyError> {
        if self.text.trim().is_empty() {
            Ok(())
        } else {
            Err(BodyError::UnexpectedText(element))
        }
    }
}

/// A root element in the project namespace with a flat list of children.
struct Document {
    children: Vec<(String, Item)>,
}

impl Document {
    fn parse(body: &[u8], root: &'static str) -> Result<Self, BodyError> {
        let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
        let mut reader = NsReader::from_str(text);
        let xml_error = |reader: &NsReader<&[u8]>, e: &dyn std::fmt::Display| BodyError::Xml {
            position: reader.error_position(),
            message: e.to_string(),
        };
        let mut seen_root = false;
        let mut closed_root = false;
        let mut current: Option<(String, Item)> = None;
        let mut children = Vec::new();
        loop {
            let event = reader.read_event().map_err(|e| xml_error(&reader, &e))?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let is_empty = matches!(event, Event::Empty(_));
                    let name = qualified_name(&reader, e);
                    if closed_root {
                        return Err(BodyError::UnexpectedElement {
                            parent: "(document end)",
                            found: name,
                        });
                    }
                    if !seen_root {
                        if name != format!("{{{}}}{root}", profile::XML_NAMESPACE) {
                            return Err(BodyError::WrongRoot {
                                found: name,
                                expected: root,
                            });
                        }
                        if let Some(attribute) = attribute_list(&reader, e)?.into_iter().next() {
                            return Err(BodyError::UnexpectedAttribute {
                                element: root,
                                attribute: attribute.0,
                            });
                        }
                        seen_root = true;
                        closed_root = is_empty;
                        continue;
                    }
                    if current.is_some() {
                        return Err(BodyError::UnexpectedElement {
                            parent: "an item",
                            found: name,
                        });
                    }
                    if children.len() >= MAX_ITEMS {
                        return Err(BodyError::TooMany {
                            element: root,
                            max: MAX_ITEMS,
                        });
                    }
                    let item = Item {
                        attributes: attribute_list(&reader, e)?,
                        text: String::new(),
                    };
                    if is_empty {
                        children.push((name, item));
                    } else {
                        current = Some((name, item));
                    }
                }
                Event::End(_) => match current.take() {
                    Some(child) => children.push(child),
                    None => closed_root = true,
                },
                Event::Text(t) => {
                    let t = t.unescape().map_err(|e| xml_error(&reader, &e))?;
                    match current.as_mut() {
                        Some((_, item)) => item.text.push_str(&t),
                        None if t.trim().is_empty() => {}
                        None => return Err(BodyError::UnexpectedText(root)),
                    }
                }
                Event::CData(_) => return Err(BodyError::UnexpectedText(root)),
                Event::Eof => break,
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
        if !seen_root {
            return Err(BodyError::MissingRoot);
        }
        Ok(Self { children })
    }

    /// The children, all of which must be `{ns}child`, mapped by `f`.
    fn items<T>(
        self,
        root: &'static str,
        child: &'static str,
        mut f: impl FnMut(&Item) -> Result<T, BodyError>,
    ) -> Result<Vec<T>, BodyError> {
        let expected = format!("{{{}}}{child}", profile::XML_NAMESPACE);
        let mut out = Vec::with_capacity(self.children.len());
        for (name, item) in &self.children {
            if *name != expected {
                return Err(BodyError::UnexpectedElement {
                    parent: root,
                    found: name.clone(),
                });
            }
            out.push(f(item)?);
        }
        if out.is_empty() {
            return Err(BodyError::Empty(root));
        }
        Ok(out)
    }
}

/// `{namespace}local` of an element (`{}` when unbound, `{?prefix}` when the
/// prefix is undeclared, so such a name never matches).
fn qualified_name(reader: &NsReader<&[u8]>, e: &BytesStart<'_>) -> String {
    let (resolved, local) = reader.resolve_element(e.name());
    let local = String::from_utf8_lossy(local.as_ref());
    match resolved {
        ResolveResult::Bound(ns) => format!("{{{}}}{local}", String::from_utf8_lossy(ns.as_ref())),
        ResolveResult::Unbound => format!("{{}}{local}"),
        ResolveResult::Unknown(prefix) => {
            format!("{{?{}}}{local}", String::from_utf8_lossy(&prefix))
        }
    }
}

/// Attributes other than namespace declarations, as (name, value).
fn attribute_list(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
) -> Result<Vec<(String, String)>, BodyError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| BodyError::Xml {
            position: reader.error_position(),
            message: err.to_string(),
        })?;
        if a.key.as_namespace_binding().is_some() {
            continue;
        }
        let value = a
            .decode_and_unescape_value(reader.decoder())
            .map_err(|err| BodyError::Xml {
                position: reader.error_position(),
                message: err.to_string(),
            })?;
        out.push((
            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(group: u16, number: u16) -> KeyRef {
        KeyRef {
            key_domain_id: KeyDomainId([0x09, 0xf1, 0x07]),
            msk_id: MskId::new(group, number),
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            KeyRequest::Register {
                service_ids: vec!["urn:svc:tv&<1>".into(), "urn:svc:radio".into()],
            },
            KeyRequest::Deregister {
                service_ids: vec!["urn:svc:tv".into()],
            },
            KeyRequest::Msk {
                keys: vec![key(1, 0), key(2, 7)],
            },
        ] {
            let xml = request.to_xml();
            assert_eq!(
                KeyRequest::parse(request.media_type(), xml.as_bytes()),
                Ok(request)
            );
        }
        let xml = KeyRequest::Msk {
            keys: vec![key(1, 0)],
        }
        .to_xml();
        assert!(
            xml.ends_with("<key keyDomainId=\"09f107\" mskId=\"00010000\"/></mskRequest>"),
            "{xml}"
        );
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            KeyResponse::Registration(vec![
                ("urn:svc:tv".into(), Status::Ok),
                ("urn:svc:x".into(), Status::Forbidden),
            ]),
            KeyResponse::Msk(vec![(key(1, 0), Status::Ok), (key(9, 9), Status::NotFound)]),
        ] {
            let xml = response.to_xml();
            assert_eq!(
                KeyResponse::parse(response.media_type(), xml.as_bytes()),
                Ok(response)
            );
        }
    }

    fn parse_msk(body: &str) -> Result<KeyRequest, BodyError> {
        KeyRequest::parse(
            "application/mbms-msk+xml; charset=utf-8",
            format!(
                "<mskRequest xmlns=\"{}\">{body}</mskRequest>",
                profile::XML_NAMESPACE
            )
            .as_bytes(),
        )
    }

    #[test]
    fn strict_parsing_names_the_problem() {
        assert_eq!(
            parse_msk("<key keyDomainId=\"09f107\" mskId=\"10000\"/>"),
            Err(BodyError::InvalidValue {
                element: "key",
                attribute: "mskId",
                value: "10000".into(),
                reason: "not 8 hex digits"
            })
        );
        assert_eq!(
            parse_msk("<key mskId=\"00010000\"/>"),
            Err(BodyError::MissingAttribute {
                element: "key",
                attribute: "keyDomainId"
            })
        );
        assert_eq!(
            parse_msk("<key keyDomainId=\"09f107\" mskId=\"00010000\" x=\"1\"/>"),
            Err(BodyError::UnexpectedAttribute {
                element: "key",
                attribute: "x".into()
            })
        );
        assert!(matches!(
            parse_msk("<serviceId>a</serviceId>"),
            Err(BodyError::UnexpectedElement { .. })
        ));
        assert_eq!(parse_msk(""), Err(BodyError::Empty("mskRequest")));
        assert_eq!(
            parse_msk("hello"),
            Err(BodyError::UnexpectedText("mskRequest"))
        );
        assert!(matches!(
            parse_msk("<key keyDomainId=\"09f107\" mskId=\"00010000\">"),
            Err(BodyError::Xml { .. })
        ));
        assert!(matches!(
            KeyRequest::parse("application/mbms-msk+xml", b"<mskRequest/>"),
            Err(BodyError::WrongRoot { .. })
        ));
        assert!(matches!(
            KeyRequest::parse("text/plain", b""),
            Err(BodyError::UnknownMediaType(_))
        ));
        let many = "<key keyDomainId=\"09f107\" mskId=\"00010000\"/>".repeat(MAX_ITEMS + 1);
        assert!(matches!(parse_msk(&many), Err(BodyError::TooMany { .. })));
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), which in 0usize..5) {
            let types = [profile::REGISTER_TYPE, profile::DEREGISTER_TYPE, profile::MSK_REQUEST_TYPE,
                profile::REGISTER_RESPONSE_TYPE, profile::MSK_RESPONSE_TYPE];
            let _ = KeyRequest::parse(types[which], &body);
            let _ = KeyResponse::parse(types[which], &body);
        }

        #[test]
        fn random_xml_text_never_panics(text in "[<>/=\" a-zA-Z0-9:{}]{0,200}") {
            let body = format!("<register xmlns=\"{}\">{text}</register>", profile::XML_NAMESPACE);
            let _ = KeyRequest::parse(profile::REGISTER_TYPE, body.as_bytes());
        }
    }
}
