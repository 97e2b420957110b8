//! FDT Instances (RFC 3926 §3.4.2, TS 26.346 §7.2.10): a model, a renderer
//! that fills an operator-editable template, and a namespace-aware parser.
//!
//! Templates are FDT-Instance skeletons (see `fdt-templates/`) holding three
//! markers: `{{EXPIRES}}` inside the `Expires` attribute value,
//! `{{INSTANCE-ATTRIBUTES}}` in the root start tag and `{{FILES}}` where the
//! `File` elements go. The template declares the namespaces; the renderer
//! uses whatever prefixes it binds to the 3GPP namespaces, and the parser
//! resolves prefixes, so `Decryption-KEY-URI` is found under any prefix bound
//! to the 2009 namespace.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use thiserror::Error;

use super::oti::{Oti, SchemeOti};

/// Namespaces of TS 26.346 §7.2.10 (wire reference §7.6).
pub mod ns {
    pub const FDT: &str = "urn:IETF:metadata:2005:FLUTE:FDT";
    pub const MBMS_2005: &str = "urn:3GPP:metadata:2005:MBMS:FLUTE:FDT";
    pub const MBMS_2007: &str = "urn:3GPP:metadata:2007:MBMS:FLUTE:FDT";
    pub const MBMS_2008: &str = "urn:3GPP:metadata:2008:MBMS:FLUTE:FDT_ext";
    pub const MBMS_2009: &str = "urn:3GPP:metadata:2009:MBMS:FLUTE:FDT_ext";
    pub const MBMS_2012: &str = "urn:3GPP:metadata:2012:MBMS:FLUTE:FDT";
    pub const MBMS_2015: &str = "urn:3GPP:metadata:2015:MBMS:FLUTE:FDT";
    pub const SCHEMA_VERSION: &str = "urn:3gpp:metadata:2009:MBMS:schemaVersion";
}

/// The FEC-OTI-* attributes of a File (or FDT-Instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdtFecOti {
    pub encoding_id: u8,
    pub max_source_block_length: Option<u32>,
    pub encoding_symbol_length: Option<u16>,
    /// Decoded `FEC-OTI-Scheme-Specific-Info` (base64 on the wire).
    pub scheme_specific_info: Option<Vec<u8>>,
}

impl From<&Oti> for FdtFecOti {
    fn from(oti: &Oti) -> Self {
        let max_source_block_length = match oti.scheme {
            SchemeOti::CompactNoCode {
                max_source_block_length,
            } => Some(max_source_block_length),
            _ => None,
        };
        Self {
            encoding_id: oti.encoding_id() as u8,
            max_source_block_length,
            encoding_symbol_length: Some(oti.symbol_length),
            scheme_specific_info: oti.scheme_specific_info().map(|s| s.to_vec()),
        }
    }
}

/// One `File` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdtFile {
    pub content_location: String,
    pub toi: u128,
    pub content_length: Option<u64>,
    pub transfer_length: Option<u64>,
    pub content_type: Option<String>,
    /// MD5 of the content (`Content-MD5`, base64 on the wire).
    pub content_md5: Option<[u8; 16]>,
    pub fec_oti: Option<FdtFecOti>,
    /// `mbms2009:Decryption-KEY-URI`: the Content-Location of the MIKEY
    /// object carrying the key of this (protected) file.
    pub decryption_key_uri: Option<String>,
}

impl FdtFile {
    pub fn new(content_location: impl Into<String>, toi: u128) -> Self {
        Self {
            content_location: content_location.into(),
            toi,
            content_length: None,
            transfer_length: None,
            content_type: None,
            content_md5: None,
            fec_oti: None,
            decryption_key_uri: None,
        }
    }
}

/// One FDT Instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdtInstance {
    /// `Expires`: NTP seconds (the high 32 bits of an NTP timestamp).
    pub expires: u32,
    /// `Complete`: no new files will be announced in this session.
    pub complete: bool,
    /// `mbms2008:FullFDT`: this instance lists every file of the session.
    pub full_fdt: bool,
    /// FEC-OTI-* on the FDT-Instance: the default for Files without their own
    /// (RFC 3926 §3.4.2).
    pub fec_oti: Option<FdtFecOti>,
    pub files: Vec<FdtFile>,
}

impl FdtInstance {
    /// The FEC OTI that applies to `file`: its own, else the instance default.
    pub fn fec_oti_for<'s>(&'s self, file: &'s FdtFile) -> Option<&'s FdtFecOti> {
        file.fec_oti.as_ref().or(self.fec_oti.as_ref())
    }
}

const MARK_EXPIRES: &str = "{{EXPIRES}}";
const MARK_ATTRIBUTES: &str = "{{INSTANCE-ATTRIBUTES}}";
const MARK_FILES: &str = "{{FILES}}";
const MARKERS: [&str; 3] = [MARK_EXPIRES, MARK_ATTRIBUTES, MARK_FILES];

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateProblem {
    #[error("marker {0} is missing")]
    MissingMarker(&'static str),
    #[error("marker {0} appears more than once")]
    RepeatedMarker(&'static str),
    #[error(
        "namespace {namespace} (needed for {needed_for}) is not bound to a prefix on the root element"
    )]
    MissingNamespace {
        namespace: &'static str,
        needed_for: &'static str,
    },
    #[error("the rendered FDT is not valid: {0}")]
    Invalid(#[from] FdtParseError),
    #[error("a rendered FDT parses back differently (a marker sits where its content is lost)")]
    RoundTrip,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("FDT template {template:?}: {problem}")]
pub struct TemplateError {
    pub template: String,
    pub problem: TemplateProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    #[error("File TOI {toi}: {attribute} holds a character XML cannot carry")]
    InvalidCharacter { toi: u128, attribute: &'static str },
}

/// Why an FDT Instance document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FdtParseError {
    #[error("XML error at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("root element is {found}, not FDT-Instance in {}", ns::FDT)]
    WrongRoot { found: String },
    #[error("no FDT-Instance element")]
    MissingRoot,
    #[error("element {0} is not closed")]
    Unclosed(String),
    #[error("{element}: missing attribute {attribute}")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("{element}: attribute {attribute}={value:?} is invalid ({reason})")]
    InvalidAttribute {
        element: &'static str,
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{element}: prefix {prefix:?} is not bound to a namespace")]
    UnboundPrefix {
        element: &'static str,
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Expires,
    Attributes,
    Files,
}

/// A validated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdtTemplate {
    name: String,
    segments: Vec<Segment>,
    /// Prefixes the template binds to the 2008 and 2009 namespaces.
    prefix_2008: String,
    prefix_2009: String,
}

impl FdtTemplate {
    /// Loads and checks a template; `name` (e.g. the file name) is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, TemplateError> {
        let fail = |problem| TemplateError {
            template: name.to_owned(),
            problem,
        };
        for marker in MARKERS {
            match text.matches(marker).count() {
                0 => return Err(fail(TemplateProblem::MissingMarker(marker))),
                1 => {}
                _ => return Err(fail(TemplateProblem::RepeatedMarker(marker))),
            }
        }
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some((at, marker)) = MARKERS
            .iter()
            .filter_map(|m| rest.find(m).map(|at| (at, *m)))
            .min()
        {
            segments.push(Segment::Text(rest[..at].to_owned()));
            segments.push(match marker {
                MARK_EXPIRES => Segment::Expires,
                MARK_ATTRIBUTES => Segment::Attributes,
                _ => Segment::Files,
            });
            rest = &rest[at + marker.len()..];
        }
        segments.push(Segment::Text(rest.to_owned()));

        let mut template = Self {
            name: name.to_owned(),
            segments,
            prefix_2008: String::new(),
            prefix_2009: String::new(),
        };
        let bindings = root_bindings(&template.render_unchecked(&FdtInstance::default()))
            .map_err(|e| fail(e.into()))?;
        let prefix = |namespace, needed_for| {
            bindings
                .iter()
                .find(|(_, uri)| uri == namespace)
                .map(|(p, _)| p.clone())
                .ok_or_else(|| {
                    fail(TemplateProblem::MissingNamespace {
                        namespace,
                        needed_for,
                    })
                })
        };
        template.prefix_2008 = prefix(ns::MBMS_2008, "FullFDT")?;
        template.prefix_2009 = prefix(ns::MBMS_2009, "Decryption-KEY-URI")?;

        let probe = probe_instance();
        let parsed =
            FdtInstance::parse(&template.render_unchecked(&probe)).map_err(|e| fail(e.into()))?;
        if parsed != probe {
            return Err(fail(TemplateProblem::RoundTrip));
        }
        Ok(template)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The FDT Instance document for `fdt`. Fails only for strings XML 1.0
    /// cannot carry (control characters other than tab, CR and LF).
    pub fn render(&self, fdt: &FdtInstance) -> Result<String, RenderError> {
        for f in &fdt.files {
            let strings = [
                ("Content-Location", Some(&f.content_location)),
                ("Content-Type", f.content_type.as_ref()),
                ("Decryption-KEY-URI", f.decryption_key_uri.as_ref()),
            ];
            for (attribute, value) in strings {
                if value.is_some_and(|v| v.chars().any(|c| !is_xml_char(c))) {
                    return Err(RenderError::InvalidCharacter {
                        toi: f.toi,
                        attribute,
                    });
                }
            }
        }
        Ok(self.render_unchecked(fdt))
    }

    fn render_unchecked(&self, fdt: &FdtInstance) -> String {
        let mut out = String::with_capacity(1024 + 512 * fdt.files.len());
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Expires => {
                    let _ = write!(out, "{}", fdt.expires);
                }
                Segment::Attributes => {
                    if fdt.complete {
                        out.push_str(" Complete=\"true\"");
                    }
                    if fdt.full_fdt {
                        let _ = write!(out, " {}:FullFDT=\"true\"", self.prefix_2008);
                    }
                    if let Some(oti) = &fdt.fec_oti {
                        render_fec_oti(&mut out, oti);
                    }
                }
                Segment::Files => {
                    for file in &fdt.files {
                        self.render_file(&mut out, file);
                    }
                }
            }
        }
        out
    }

    fn render_file(&self, out: &mut String, f: &FdtFile) {
        out.push_str("  <File");
        push_attribute(out, "Content-Location", &f.content_location);
        push_attribute(out, "TOI", &f.toi.to_string());
        if let Some(v) = f.content_length {
            push_attribute(out, "Content-Length", &v.to_string());
        }
        if let Some(v) = f.transfer_length {
            push_attribute(out, "Transfer-Length", &v.to_string());
        }
        if let Some(v) = &f.content_type {
            push_attribute(out, "Content-Type", v);
        }
        if let Some(v) = &f.content_md5 {
            push_attribute(out, "Content-MD5", &BASE64.encode(v));
        }
        if let Some(oti) = &f.fec_oti {
            render_fec_oti(out, oti);
        }
        if let Some(v) = &f.decryption_key_uri {
            let name = format!("{}:Decryption-KEY-URI", self.prefix_2009);
            push_attribute(out, &name, v);
        }
        out.push_str("/>\n");
    }
}

fn push_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_attribute(out, value);
    out.push('"');
}

fn render_fec_oti(out: &mut String, oti: &FdtFecOti) {
    push_attribute(out, "FEC-OTI-FEC-Encoding-ID", &oti.encoding_id.to_string());
    if let Some(v) = oti.max_source_block_length {
        push_attribute(out, "FEC-OTI-Maximum-Source-Block-Length", &v.to_string());
    }
    if let Some(v) = oti.encoding_symbol_length {
        push_attribute(out, "FEC-OTI-Encoding-Symbol-Length", &v.to_string());
    }
    if let Some(v) = &oti.scheme_specific_info {
        push_attribute(out, "FEC-OTI-Scheme-Specific-Info", &BASE64.encode(v));
    }
}

/// XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes an attribute value, including whitespace that attribute-value
/// normalisation would otherwise turn into spaces (XML 1.0 §3.3.3).
fn escape_attribute(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// A File with every attribute set, to check where a template puts things.
fn probe_instance() -> FdtInstance {
    let mut file = FdtFile::new("file:///probe?a=1&b=\"<2>\"", 1);
    file.content_length = Some(2);
    file.transfer_length = Some(3);
    file.content_type = Some("application/octet-stream".into());
    file.content_md5 = Some([0xa5; 16]);
    file.fec_oti = Some(FdtFecOti {
        encoding_id: 1,
        max_source_block_length: Some(64),
        encoding_symbol_length: Some(1400),
        scheme_specific_info: Some(vec![0, 1, 1, 4]),
    });
    file.decryption_key_uri = Some("mikey/1'2".into());
    FdtInstance {
        expires: 0xfedc_ba98,
        complete: true,
        full_fdt: true,
        fec_oti: Some(FdtFecOti {
            encoding_id: 0,
            max_source_block_length: Some(1),
            encoding_symbol_length: Some(2),
            scheme_specific_info: None,
        }),
        files: vec![file],
    }
}

fn xml_error(reader: &NsReader<&[u8]>, e: impl std::fmt::Display) -> FdtParseError {
    FdtParseError::Xml {
        position: reader.error_position(),
        message: e.to_string(),
    }
}

/// `xmlns:prefix` declarations on the root element.
fn root_bindings(xml: &str) -> Result<Vec<(String, String)>, FdtParseError> {
    let mut reader = NsReader::from_str(xml);
    loop {
        match reader.read_event().map_err(|e| xml_error(&reader, e))? {
            Event::Start(e) | Event::Empty(e) => {
                let mut out = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| xml_error(&reader, e))?;
                    if let Some(prefix) = a.key.as_ref().strip_prefix(b"xmlns:") {
                        let value = a
                            .decode_and_unescape_value(reader.decoder())
                            .map_err(|e| xml_error(&reader, e))?;
                        out.push((
                            String::from_utf8_lossy(prefix).into_owned(),
                            value.into_owned(),
                        ));
                    }
                }
                return Ok(out);
            }
            Event::Eof => return Err(FdtParseError::MissingRoot),
            _ => {}
        }
    }
}

/// Which namespace an element or attribute name resolved to.
fn namespace_of(
    element: &'static str,
    resolved: ResolveResult<'_>,
) -> Result<Option<String>, FdtParseError> {
    match resolved {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unknown(prefix) => Err(FdtParseError::UnboundPrefix {
            element,
            prefix: String::from_utf8_lossy(&prefix).into_owned(),
        }),
    }
}

/// Attributes of one element as (namespace, local name, value).
fn attributes(
    reader: &NsReader<&[u8]>,
    element: &'static str,
    e: &BytesStart<'_>,
) -> Result<Vec<(Option<String>, String, String)>, FdtParseError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| xml_error(reader, err))?;
        if a.key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolve_attribute(a.key);
        let namespace = namespace_of(element, resolved)?;
        let value = a
            .decode_and_unescape_value(reader.decoder())
            .map_err(|err| xml_error(reader, err))?;
        out.push((
            namespace,
            String::from_utf8_lossy(local.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    element: &'static str,
    attribute: &'static str,
    value: &str,
) -> Result<T, FdtParseError> {
    value
        .trim()
        .parse()
        .map_err(|_| FdtParseError::InvalidAttribute {
            element,
            attribute,
            value: value.to_owned(),
            reason: "not an unsigned integer in range",
        })
}

fn boolean(
    element: &'static str,
    attribute: &'static str,
    value: &str,
) -> Result<bool, FdtParseError> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FdtParseError::InvalidAttribute {
            element,
            attribute,
            value: value.to_owned(),
            reason: "not an xs:boolean",
        }),
    }
}

fn base64_value(
    element: &'static str,
    attribute: &'static str,
    value: &str,
) -> Result<Vec<u8>, FdtParseError> {
    BASE64
        .decode(value.trim())
        .map_err(|_| FdtParseError::InvalidAttribute {
            element,
            attribute,
            value: value.to_owned(),
            reason: "not base64",
        })
}

impl FdtInstance {
    /// Parses an FDT Instance. Elements and attributes this model does not
    /// hold are skipped.
    pub fn parse(xml: &str) -> Result<Self, FdtParseError> {
        let mut reader = NsReader::from_str(xml);
        let mut open: Vec<String> = Vec::new();
        let mut fdt: Option<FdtInstance> = None;
        loop {
            let event = reader.read_event().map_err(|e| xml_error(&reader, e))?;
            let (start, is_empty) = match &event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => {
                    open.pop();
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            let (resolved, local) = reader.resolve_element(start.name());
            let element_ns = namespace_of("element", resolved)?;
            let local = String::from_utf8_lossy(local.as_ref()).into_owned();
            let in_fdt_ns = element_ns.as_deref() == Some(ns::FDT);
            match (open.len(), fdt.as_mut()) {
                (0, None) => {
                    if !(in_fdt_ns && local == "FDT-Instance") {
                        return Err(FdtParseError::WrongRoot {
                            found: format!("{{{}}}{}", element_ns.unwrap_or_default(), local),
                        });
                    }
                    fdt = Some(parse_instance(&attributes(
                        &reader,
                        "FDT-Instance",
                        start,
                    )?)?);
                }
                (1, Some(fdt)) if in_fdt_ns && local == "File" => {
                    fdt.files
                        .push(parse_file(&attributes(&reader, "File", start)?)?);
                }
                _ => {}
            }
            if !is_empty {
                open.push(local);
            }
        }
        if let Some(name) = open.pop() {
            return Err(FdtParseError::Unclosed(name));
        }
        fdt.ok_or(FdtParseError::MissingRoot)
    }
}

type Attrs = [(Option<String>, String, String)];

/// FEC-OTI-* attributes collected from one element.
#[derive(Default)]
struct FecOtiAttributes {
    encoding_id: Option<u8>,
    max_source_block_length: Option<u32>,
    encoding_symbol_length: Option<u16>,
    scheme_specific_info: Option<Vec<u8>>,
}

impl FecOtiAttributes {
    /// Takes the attribute if it is a FEC-OTI one; `Ok(false)` otherwise.
    fn take(
        &mut self,
        element: &'static str,
        name: &str,
        value: &str,
    ) -> Result<bool, FdtParseError> {
        match name {
            "FEC-OTI-FEC-Encoding-ID" => {
                self.encoding_id = Some(number(element, "FEC-OTI-FEC-Encoding-ID", value)?)
            }
            "FEC-OTI-Maximum-Source-Block-Length" => {
                self.max_source_block_length = Some(number(
                    element,
                    "FEC-OTI-Maximum-Source-Block-Length",
                    value,
                )?)
            }
            "FEC-OTI-Encoding-Symbol-Length" => {
                self.encoding_symbol_length =
                    Some(number(element, "FEC-OTI-Encoding-Symbol-Length", value)?)
            }
            "FEC-OTI-Scheme-Specific-Info" => {
                self.scheme_specific_info = Some(base64_value(
                    element,
                    "FEC-OTI-Scheme-Specific-Info",
                    value,
                )?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The OTI, present when the element names a FEC Encoding ID.
    fn finish(self) -> Option<FdtFecOti> {
        Some(FdtFecOti {
            encoding_id: self.encoding_id?,
            max_source_block_length: self.max_source_block_length,
            encoding_symbol_length: self.encoding_symbol_length,
            scheme_specific_info: self.scheme_specific_info,
        })
    }
}

fn parse_instance(attrs: &Attrs) -> Result<FdtInstance, FdtParseError> {
    const E: &str = "FDT-Instance";
    let mut fdt = FdtInstance::default();
    let mut expires = None;
    let mut fec = FecOtiAttributes::default();
    for (namespace, name, value) in attrs {
        match (namespace.as_deref(), name.as_str()) {
            (None, "Expires") => expires = Some(number(E, "Expires", value)?),
            (None, "Complete") => fdt.complete = boolean(E, "Complete", value)?,
            (Some(ns::MBMS_2008), "FullFDT") => fdt.full_fdt = boolean(E, "FullFDT", value)?,
            (None, name) => {
                fec.take(E, name, value)?;
            }
            _ => {}
        }
    }
    fdt.expires = expires.ok_or(FdtParseError::MissingAttribute {
        element: E,
        attribute: "Expires",
    })?;
    fdt.fec_oti = fec.finish();
    Ok(fdt)
}

fn parse_file(attrs: &Attrs) -> Result<FdtFile, FdtParseError> {
    const E: &str = "File";
    let mut location = None;
    let mut toi = None;
    let mut file = FdtFile::new(String::new(), 0);
    let mut fec = FecOtiAttributes::default();
    for (namespace, name, value) in attrs {
        match (namespace.as_deref(), name.as_str()) {
            (None, "Content-Location") => location = Some(value.clone()),
            (None, "TOI") => toi = Some(number(E, "TOI", value)?),
            (None, "Content-Length") => {
                file.content_length = Some(number(E, "Content-Length", value)?)
            }
            (None, "Transfer-Length") => {
                file.transfer_length = Some(number(E, "Transfer-Length", value)?)
            }
            (None, "Content-Type") => file.content_type = Some(value.clone()),
            (None, "Content-MD5") => {
                let md5 = base64_value(E, "Content-MD5", value)?;
                file.content_md5 =
                    Some(
                        md5.try_into()
                            .map_err(|_| FdtParseError::InvalidAttribute {
                                element: E,
                                attribute: "Content-MD5",
                                value: value.clone(),
                                reason: "not 16 bytes",
                            })?,
                    );
            }
            (Some(ns::MBMS_2009), "Decryption-KEY-URI") => {
                file.decryption_key_uri = Some(value.clone())
            }
            (None, name) => {
                fec.take(E, name, value)?;
            }
            _ => {}
        }
    }
    file.content_location = location.ok_or(FdtParseError::MissingAttribute {
        element: E,
        attribute: "Content-Location",
    })?;
    file.toi = toi.ok_or(FdtParseError::MissingAttribute {
        element: E,
        attribute: "TOI",
    })?;
    file.fec_oti = fec.finish();
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEMPLATES: [(&str, &str); 2] = [
        (
            "3gpp-rel12.xml",
            include_str!("../../../fdt-templates/3gpp-rel12.xml"),
        ),
        (
            "minimal.xml",
            include_str!("../../../fdt-templates/minimal.xml"),
        ),
    ];

    fn sample() -> FdtInstance {
        let mut protected = FdtFile::new("http://example.com/seg 1.mp4?x=<&>", 7);
        protected.content_length = Some(3_000_000);
        protected.transfer_length = Some(3_000_112);
        protected.content_type = Some("application/vnd.oma.drm.dcf".into());
        protected.content_md5 = Some(*b"0123456789abcdef");
        protected.fec_oti = Some(FdtFecOti {
            encoding_id: 0,
            max_source_block_length: Some(1024),
            encoding_symbol_length: Some(1396),
            scheme_specific_info: None,
        });
        protected.decryption_key_uri = Some("mikey/msk-1\"mtk-2\"".into());
        let mut mikey = FdtFile::new("mikey/msk-1\"mtk-2\"", 6);
        mikey.content_type = Some("application/mikey".into());
        FdtInstance {
            expires: 3_900_000_000,
            complete: false,
            full_fdt: true,
            fec_oti: Some(FdtFecOti {
                encoding_id: 0,
                max_source_block_length: Some(64),
                encoding_symbol_length: Some(1392),
                scheme_specific_info: None,
            }),
            files: vec![mikey, protected],
        }
    }

    #[test]
    fn every_template_round_trips() {
        for (name, text) in TEMPLATES {
            let template = FdtTemplate::parse(name, text).unwrap();
            let fdt = sample();
            let xml = template.render(&fdt).unwrap();
            assert_eq!(FdtInstance::parse(&xml).unwrap(), fdt, "{name}:\n{xml}");
            let empty = FdtInstance::default();
            assert_eq!(
                FdtInstance::parse(&template.render(&empty).unwrap()).unwrap(),
                empty
            );
        }
    }

    #[test]
    fn rendered_attributes_are_escaped() {
        let template = FdtTemplate::parse(TEMPLATES[0].0, TEMPLATES[0].1).unwrap();
        let xml = template.render(&sample()).unwrap();
        assert!(xml.contains(r#"Content-Location="http://example.com/seg 1.mp4?x=&lt;&amp;&gt;""#));
        assert!(xml.contains(r#"mbms2009:Decryption-KEY-URI="mikey/msk-1&quot;mtk-2&quot;""#));
        assert!(xml.contains(r#"Content-MD5="MDEyMzQ1Njc4OWFiY2RlZg==""#));
        assert!(xml.contains(r#"Expires="3900000000""#));
        let mut bad = sample();
        bad.files[1].content_type = Some("a\u{1}b".into());
        assert_eq!(
            template.render(&bad),
            Err(RenderError::InvalidCharacter {
                toi: 7,
                attribute: "Content-Type"
            })
        );
    }

    #[test]
    fn parser_resolves_any_prefix() {
        let xml = r#"<?xml version="1.0"?>
            <f:FDT-Instance xmlns:f="urn:IETF:metadata:2005:FLUTE:FDT"
                xmlns:k="urn:3GPP:metadata:2009:MBMS:FLUTE:FDT_ext"
                xmlns:mbms2009="urn:example:not-3gpp" Expires="5">
              <f:File Content-Location="a" TOI="1" k:Decryption-KEY-URI="key"
                      mbms2009:Decryption-KEY-URI="wrong namespace">
                <k:Unknown/>
              </f:File>
              <Other xmlns="urn:example"><File Content-Location="no" TOI="9"/></Other>
            </f:FDT-Instance>"#;
        let fdt = FdtInstance::parse(xml).unwrap();
        assert_eq!(fdt.files.len(), 1);
        assert_eq!(fdt.files[0].decryption_key_uri.as_deref(), Some("key"));
    }

    #[test]
    fn parser_rejections_name_the_problem() {
        let cases: [(&str, FdtParseError); 6] = [
            (
                r#"<FDT-Instance Expires="1"/>"#,
                FdtParseError::WrongRoot {
                    found: "{}FDT-Instance".into(),
                },
            ),
            (
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT"/>"#,
                FdtParseError::MissingAttribute {
                    element: "FDT-Instance",
                    attribute: "Expires",
                },
            ),
            (
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT" Expires="1"><File TOI="1"/></FDT-Instance>"#,
                FdtParseError::MissingAttribute {
                    element: "File",
                    attribute: "Content-Location",
                },
            ),
            (
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT" Expires="-1"/>"#,
                FdtParseError::InvalidAttribute {
                    element: "FDT-Instance",
                    attribute: "Expires",
                    value: "-1".into(),
                    reason: "not an unsigned integer in range",
                },
            ),
            (
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT" Expires="1"><File Content-Location="a" TOI="1" Content-MD5="AAAA"/></FDT-Instance>"#,
                FdtParseError::InvalidAttribute {
                    element: "File",
                    attribute: "Content-MD5",
                    value: "AAAA".into(),
                    reason: "not 16 bytes",
                },
            ),
            (
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT" Expires="1">"#,
                FdtParseError::Unclosed("FDT-Instance".into()),
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(FdtInstance::parse(xml), Err(expected), "{xml}");
        }
        assert!(matches!(
            FdtInstance::parse(
                r#"<FDT-Instance xmlns="urn:IETF:metadata:2005:FLUTE:FDT" Expires="1"></FDT>"#
            ),
            Err(FdtParseError::Xml { .. })
        ));
        assert_eq!(FdtInstance::parse(""), Err(FdtParseError::MissingRoot));
    }

    #[test]
    fn broken_templates_are_named_and_explained() {
        let good = TEMPLATES[0].1;
        let check = |text: &str, problem: &dyn Fn(&TemplateProblem) -> bool| {
            let err = FdtTemplate::parse("broken.xml", text).unwrap_err();
            assert_eq!(err.template, "broken.xml");
            assert!(problem(&err.problem), "{err}");
            assert!(err.to_string().starts_with("FDT template \"broken.xml\": "));
        };
        check(&good.replace(MARK_FILES, ""), &|p| {
            *p == TemplateProblem::MissingMarker(MARK_FILES)
        });
        check(&good.replace(MARK_FILES, "{{FILES}}{{FILES}}"), &|p| {
            *p == TemplateProblem::RepeatedMarker(MARK_FILES)
        });
        check(&good.replace(ns::MBMS_2009, "urn:example:other"), &|p| {
            matches!(
                p,
                TemplateProblem::MissingNamespace {
                    namespace: ns::MBMS_2009,
                    ..
                }
            )
        });
        check(&good.replace("</FDT-Instance>", "</FDT>"), &|p| {
            matches!(p, TemplateProblem::Invalid(FdtParseError::Xml { .. }))
        });
        // Files placed inside a comment vanish from the parsed document.
        check(&good.replace(MARK_FILES, "<!-- {{FILES}} -->"), &|p| {
            *p == TemplateProblem::RoundTrip
        });
        check(
            &good.replace("urn:IETF:metadata:2005:FLUTE:FDT\"", "urn:example\""),
            &|p| matches!(p, TemplateProblem::Invalid(FdtParseError::WrongRoot { .. })),
        );
    }

    proptest! {
        #[test]
        fn random_text_never_panics(xml in "\\PC{0,200}") {
            let _ = FdtInstance::parse(&xml);
            let _ = FdtTemplate::parse("random", &xml);
        }

        /// Near-valid documents reach deeper parser paths than random text.
        #[test]
        fn mutated_fdt_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let template = FdtTemplate::parse(TEMPLATES[0].0, TEMPLATES[0].1).unwrap();
            let mut bytes = template.render(&sample()).unwrap().into_bytes();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let xml = String::from_utf8_lossy(&bytes);
            let _ = FdtInstance::parse(&xml);
            let _ = FdtTemplate::parse("mutated", &xml);
        }

        #[test]
        fn any_strings_round_trip(location in "[\\PC\t\n\r]{1,40}", ctype in "[\\PC\t\n\r]{0,40}", key in "[\\PC\t\n\r]{0,40}",
                                  toi in 1u128..(1 << 112), expires in any::<u32>()) {
            let template = FdtTemplate::parse(TEMPLATES[0].0, TEMPLATES[0].1).unwrap();
            let mut file = FdtFile::new(location, toi);
            file.content_type = Some(ctype);
            file.decryption_key_uri = Some(key);
            let fdt = FdtInstance { expires, complete: true, full_fdt: false, fec_oti: None, files: vec![file] };
            let xml = template.render(&fdt).unwrap();
            prop_assert_eq!(FdtInstance::parse(&xml).unwrap(), fdt);
        }
    }
}
