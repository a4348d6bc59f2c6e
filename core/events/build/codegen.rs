//! tapelog's protobuf code generator.
//!
//! Reads the schema with protox (a protobuf compiler in Rust) and writes, for every message:
//! a plain Rust struct, wire encoding and decoding that match what Teleport's gogoproto code
//! does byte for byte, and JSON writing and reading that match Go's struct tags (flattened
//! embedded structs with Go's name-conflict rules, `omitempty`, nil slices as `null`).
//! The options that carry the Go-side facts are declared in `proto/tapelog/options.proto`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind,
    MessageDescriptor,
};

/// Result of generation.
pub struct Schema {
    /// The Rust source.
    pub code: String,
    /// `(oneof field number, variant name, message name)` of every `OneOf` member.
    pub oneof_messages: Vec<(u32, String, String)>,
}

/// Root module of the generated code, inside the crate.
const ROOT: &str = "crate::event::schema";
/// Package whose types are generated at the root.
const MAIN_PACKAGE: &str = "events";

#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Scalar(&'static str, &'static str), // codec, rust type
    Enum(String),
    Message(String),
    Time,
    Dur,
    Struct,
    Traits,
    Wkt(&'static str, &'static str),
}

impl Ty {
    fn rust(&self) -> String {
        match self {
            Ty::Scalar(_, t) | Ty::Wkt(_, t) => (*t).to_string(),
            Ty::Enum(_) => "i32".into(),
            Ty::Message(p) => p.clone(),
            Ty::Time => "crate::proto::Timestamp".into(),
            Ty::Dur => "crate::proto::Duration".into(),
            Ty::Struct => "crate::proto::JsonStruct".into(),
            Ty::Traits => "crate::proto::Traits".into(),
        }
    }
    fn codec(&self) -> Option<&'static str> {
        match self {
            Ty::Scalar(c, _) | Ty::Wkt(c, _) => Some(c),
            Ty::Enum(_) => Some("PInt32"),
            _ => None,
        }
    }
    fn is_message_like(&self) -> bool {
        matches!(
            self,
            Ty::Message(_) | Ty::Time | Ty::Dur | Ty::Struct | Ty::Traits
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Card {
    /// Implicit presence: scalars written when non-zero; value-typed messages always written.
    Single,
    /// Explicit presence (`Option`).
    Optional,
    Repeated,
    Map(Box<Ty>),
    Oneof(usize),
}

#[derive(Clone, Debug)]
struct Field {
    proto_name: String,
    number: u32,
    rust_name: String,
    go_name: String,
    /// None: `json:"-"`.
    json_name: Option<String>,
    omitempty: bool,
    embed: bool,
    ty: Ty,
    card: Card,
    boxed: bool,
}

struct Oneof {
    rust_field: String,
    enum_name: String,
    members: Vec<usize>,
}

struct Msg {
    full_name: String,
    rust_name: String,
    fields: Vec<Field>,
    oneofs: Vec<Oneof>,
}

struct Opts {
    json: ExtensionDescriptor,
    embed: ExtensionDescriptor,
    nonnull: ExtensionDescriptor,
    stdtime: ExtensionDescriptor,
    stdduration: ExtensionDescriptor,
    wktpointer: ExtensionDescriptor,
    customtype: ExtensionDescriptor,
    customname: ExtensionDescriptor,
}

impl Opts {
    fn new(pool: &DescriptorPool) -> Result<Self, String> {
        let get = |n: &str| {
            pool.get_extension_by_name(&format!("tapelog.{n}"))
                .ok_or_else(|| format!("option tapelog.{n} is not declared"))
        };
        Ok(Opts {
            json: get("json")?,
            embed: get("embed")?,
            nonnull: get("nonnull")?,
            stdtime: get("stdtime")?,
            stdduration: get("stdduration")?,
            wktpointer: get("wktpointer")?,
            customtype: get("customtype")?,
            customname: get("customname")?,
        })
    }

    fn string(&self, f: &FieldDescriptor, ext: &ExtensionDescriptor) -> Option<String> {
        let o = f.options();
        if o.has_extension(ext) {
            o.get_extension(ext).as_str().map(str::to_owned)
        } else {
            None
        }
    }

    fn flag(&self, f: &FieldDescriptor, ext: &ExtensionDescriptor) -> bool {
        let o = f.options();
        o.has_extension(ext) && o.get_extension(ext).as_bool() == Some(true)
    }
}

/// Rust keywords that cannot be field names.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// `SessionID` → `session_id`, `AWSRoleARN` → `aws_role_arn`, `X11Forward` → `x11_forward`.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next = chars.get(i + 1).copied();
            // "IPs" / "IDs": a plural s after an acronym stays with it.
            let plural_s = next == Some('s')
                && chars
                    .get(i + 2)
                    .is_none_or(|n| n.is_ascii_uppercase() || *n == '_');
            let boundary = prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase()
                    && next.is_some_and(|n| n.is_ascii_lowercase())
                    && !plural_s);
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// gogoproto's CamelCase of a proto field name (the Go field name).
fn go_camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
        if c.is_ascii_digit() {
            upper = true;
        }
    }
    out
}

fn pascal_from_upper_snake(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            let first = cs.next().map(|c| c.to_ascii_uppercase()).into_iter();
            first
                .chain(cs.map(|c| c.to_ascii_lowercase()))
                .collect::<String>()
        })
        .collect()
}

fn module_of(package: &str) -> Option<String> {
    if package == MAIN_PACKAGE {
        None
    } else {
        Some(package.replace('.', "_"))
    }
}

/// Rust path of a message or enum, from its full protobuf name.
fn rust_path(full_name: &str, package: &str) -> String {
    let local = full_name
        .strip_prefix(package)
        .map(|s| s.trim_start_matches('.'))
        .unwrap_or(full_name);
    let name: String = local.split('.').collect::<Vec<_>>().join("");
    match module_of(package) {
        None => format!("{ROOT}::{name}"),
        Some(m) => format!("{ROOT}::{m}::{name}"),
    }
}

fn local_name(full_name: &str, package: &str) -> String {
    let local = full_name
        .strip_prefix(package)
        .map(|s| s.trim_start_matches('.'))
        .unwrap_or(full_name);
    local.split('.').collect::<Vec<_>>().join("")
}

fn scalar_of(kind: &Kind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        Kind::Double => ("PDouble", "f64"),
        Kind::Float => ("PFloat", "f32"),
        Kind::Int32 => ("PInt32", "i32"),
        Kind::Int64 => ("PInt64", "i64"),
        Kind::Uint32 => ("PUint32", "u32"),
        Kind::Uint64 => ("PUint64", "u64"),
        Kind::Sint32 => ("PSint32", "i32"),
        Kind::Sint64 => ("PSint64", "i64"),
        Kind::Fixed32 => ("PFixed32", "u32"),
        Kind::Fixed64 => ("PFixed64", "u64"),
        Kind::Sfixed32 => ("PSfixed32", "i32"),
        Kind::Sfixed64 => ("PSfixed64", "i64"),
        Kind::Bool => ("PBool", "bool"),
        Kind::String => ("PString", "String"),
        Kind::Bytes => ("PBytes", "Vec<u8>"),
        _ => return None,
    })
}

fn ty_of(opts: &Opts, f: &FieldDescriptor, kind: &Kind) -> Result<Ty, String> {
    if let Some(s) = scalar_of(kind) {
        return Ok(Ty::Scalar(s.0, s.1));
    }
    match kind {
        Kind::Enum(e) => Ok(Ty::Enum(rust_path(e.full_name(), e.package_name()))),
        Kind::Message(m) => {
            let customtype = opts.string(f, &opts.customtype);
            match m.full_name() {
                "google.protobuf.Timestamp" => {
                    if opts.flag(f, &opts.stdtime) {
                        Ok(Ty::Time)
                    } else {
                        Err(format!(
                            "{}: Timestamp without stdtime is not supported",
                            f.full_name()
                        ))
                    }
                }
                "google.protobuf.Duration" => {
                    if opts.flag(f, &opts.stdduration) {
                        Ok(Ty::Dur)
                    } else {
                        Err(format!(
                            "{}: Duration without stdduration is not supported",
                            f.full_name()
                        ))
                    }
                }
                "google.protobuf.Struct" => Ok(Ty::Struct),
                name if name.starts_with("google.protobuf.") && name.ends_with("Value") => {
                    if !opts.flag(f, &opts.wktpointer) {
                        return Err(format!(
                            "{}: wrapper type without wktpointer",
                            f.full_name()
                        ));
                    }
                    let inner = m.get_field(1).ok_or("wrapper without field 1")?;
                    let (c, t) = scalar_of(&inner.kind()).ok_or("wrapper of a non-scalar")?;
                    Ok(Ty::Wkt(c, t))
                }
                _ if customtype
                    .as_deref()
                    .is_some_and(|c| c.ends_with("wrappers.Traits")) =>
                {
                    Ok(Ty::Traits)
                }
                _ if customtype.is_some() => Err(format!(
                    "{}: customtype {:?} is not supported",
                    f.full_name(),
                    customtype
                )),
                _ => Ok(Ty::Message(rust_path(m.full_name(), m.package_name()))),
            }
        }
        _ => Err(format!("{}: unsupported kind", f.full_name())),
    }
}

fn build_msg(opts: &Opts, m: &MessageDescriptor) -> Result<Msg, String> {
    let rust_name = local_name(m.full_name(), m.package_name());
    let mut fields = Vec::new();
    let mut seen_rust = BTreeSet::new();
    let mut oneofs: Vec<Oneof> = Vec::new();
    let mut oneof_index: HashMap<String, usize> = HashMap::new();
    for f in m.fields() {
        let kind = f.kind();
        let nonnull = opts.flag(&f, &opts.nonnull);
        let synthetic_oneof = f.field_descriptor_proto().proto3_optional();
        let (ty, card) = if f.is_map() {
            let Kind::Message(entry) = &kind else {
                return Err("map without entry".into());
            };
            let k = entry.map_entry_key_field();
            let v = entry.map_entry_value_field();
            let kt = ty_of(opts, &k, &k.kind())?;
            if !matches!(kt, Ty::Scalar("PString", _)) {
                return Err(format!(
                    "{}: only string map keys are supported",
                    f.full_name()
                ));
            }
            let vt = ty_of(opts, &v, &v.kind())?;
            (vt, Card::Map(Box::new(kt)))
        } else {
            let ty = ty_of(opts, &f, &kind)?;
            let card = if f.is_list() {
                Card::Repeated
            } else if let (Some(o), false) = (f.containing_oneof(), synthetic_oneof) {
                let idx = *oneof_index.entry(o.name().to_string()).or_insert_with(|| {
                    oneofs.push(Oneof {
                        rust_field: snake(o.name()),
                        enum_name: format!("{rust_name}{}", go_camel(o.name())),
                        members: Vec::new(),
                    });
                    oneofs.len() - 1
                });
                Card::Oneof(idx)
            } else if synthetic_oneof || matches!(ty, Ty::Wkt(..)) {
                Card::Optional
            } else if ty.is_message_like() {
                if nonnull {
                    Card::Single
                } else {
                    Card::Optional
                }
            } else {
                Card::Single
            };
            (ty, card)
        };
        if f.cardinality() == Cardinality::Required {
            return Err(format!(
                "{}: required fields are not supported",
                f.full_name()
            ));
        }
        let tag = opts.string(&f, &opts.json);
        let go_name = if opts.flag(&f, &opts.embed) {
            match &kind {
                Kind::Message(t) => t.name().to_string(),
                _ => go_camel(f.name()),
            }
        } else {
            opts.string(&f, &opts.customname)
                .unwrap_or_else(|| go_camel(f.name()))
        };
        let tag = tag.unwrap_or_else(|| format!("{},omitempty", f.name()));
        let (json_name, omitempty) = if tag == "-" {
            (None, false)
        } else {
            let mut parts = tag.split(',');
            let name = parts.next().unwrap_or("").to_string();
            // Go compares options exactly: " omitempty" is not "omitempty".
            let omitempty = parts.any(|p| p == "omitempty");
            (Some(name), omitempty)
        };
        let mut rust_field = snake(f.name());
        if !seen_rust.insert(rust_field.clone()) {
            rust_field = format!("{rust_field}_{}", f.number());
            seen_rust.insert(rust_field.clone());
        }
        if rust_field == "unknown_fields" {
            return Err(format!(
                "{}: field name clashes with unknown_fields",
                f.full_name()
            ));
        }
        let boxed = matches!(&ty, Ty::Message(p) if *p == rust_path(m.full_name(), m.package_name()))
            && !matches!(card, Card::Repeated | Card::Map(_));
        let idx = fields.len();
        if let Card::Oneof(o) = card {
            oneofs[o].members.push(idx);
        }
        fields.push(Field {
            proto_name: f.name().to_string(),
            number: f.number(),
            rust_name: rust_field,
            go_name,
            json_name,
            omitempty,
            embed: opts.flag(&f, &opts.embed),
            ty,
            card,
            boxed,
        });
    }
    Ok(Msg {
        full_name: m.full_name().to_string(),
        rust_name,
        fields,
        oneofs,
    })
}

/// One JSON member of a message after Go's flattening of embedded structs.
#[derive(Clone)]
struct Leaf {
    name: String,
    depth: usize,
    /// Field indexes from the root message down to the leaf field.
    path: Vec<(String, usize)>,
}

fn leaves(
    msgs: &BTreeMap<String, Msg>,
    msg: &Msg,
    depth: usize,
    prefix: &[(String, usize)],
    out: &mut Vec<Leaf>,
) {
    for (i, f) in msg.fields.iter().enumerate() {
        let Some(name) = &f.json_name else { continue };
        if matches!(f.card, Card::Oneof(_)) {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push((msg.full_name.clone(), i));
        if f.embed
            && name.is_empty()
            && let (Ty::Message(p), Card::Single | Card::Optional) = (&f.ty, &f.card)
            && let Some(sub) = msgs.values().find(|m| rust_path_of(m) == *p)
        {
            leaves(msgs, sub, depth + 1, &path, out);
            continue;
        }
        let name = if name.is_empty() {
            f.go_name.clone()
        } else {
            name.clone()
        };
        out.push(Leaf { name, depth, path });
    }
}

fn rust_path_of(m: &Msg) -> String {
    let package = package_of(&m.full_name);
    rust_path(&m.full_name, &package)
}

fn package_of(full_name: &str) -> String {
    // Packages are lower case; message names start upper case.
    full_name
        .split('.')
        .take_while(|p| p.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(".")
}

/// Go's rule: among members with one name, the shallowest wins; a tie removes them all.
fn resolve(all: Vec<Leaf>) -> Vec<Leaf> {
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, l) in all.iter().enumerate() {
        by_name.entry(l.name.clone()).or_default().push(i);
    }
    let mut keep = vec![false; all.len()];
    for idxs in by_name.values() {
        let min = idxs.iter().map(|&i| all[i].depth).min().unwrap_or(0);
        let top: Vec<usize> = idxs
            .iter()
            .copied()
            .filter(|&i| all[i].depth == min)
            .collect();
        if top.len() == 1 {
            keep[top[0]] = true;
        }
    }
    all.into_iter()
        .zip(keep)
        .filter_map(|(l, k)| k.then_some(l))
        .collect()
}

struct Gen<'a> {
    msgs: &'a BTreeMap<String, Msg>,
    out: String,
}

impl Gen<'_> {
    fn field<'b>(&'b self, msg: &str, idx: usize) -> &'b Field {
        &self.msgs[msg].fields[idx]
    }

    fn rust_field_type(f: &Field) -> String {
        let t = f.ty.rust();
        let t = if f.boxed {
            format!("::std::boxed::Box<{t}>")
        } else {
            t
        };
        match &f.card {
            Card::Single => t,
            Card::Optional => format!("::std::option::Option<{t}>"),
            Card::Repeated => format!("::std::vec::Vec<{t}>"),
            Card::Map(k) => format!("::std::collections::BTreeMap<{}, {t}>", k.rust()),
            Card::Oneof(_) => unreachable!("oneof members live in their enum"),
        }
    }

    fn struct_def(&mut self, m: &Msg) {
        let o = &mut self.out;
        let _ = writeln!(o, "/// `{}` (generated from the schema).", m.full_name);
        let _ = writeln!(o, "#[derive(Debug, Clone, PartialEq, Default)]");
        let _ = writeln!(o, "pub struct {} {{", m.rust_name);
        for f in &m.fields {
            if matches!(f.card, Card::Oneof(_)) {
                continue;
            }
            let json = f.json_name.as_deref().map_or("-".to_string(), |n| {
                format!("{n}{}", if f.omitempty { ",omitempty" } else { "" })
            });
            let _ = writeln!(
                o,
                "    /// `{}` = {} (JSON `{}`).",
                f.proto_name, f.number, json
            );
            let _ = writeln!(o, "    pub {}: {},", f.rust_name, Self::rust_field_type(f));
        }
        for one in &m.oneofs {
            let _ = writeln!(o, "    /// The `{}` oneof.", one.rust_field);
            let _ = writeln!(
                o,
                "    pub {}: ::std::option::Option<{}>,",
                one.rust_field, one.enum_name
            );
        }
        let _ = writeln!(
            o,
            "    /// Fields this build does not know, written back unchanged."
        );
        let _ = writeln!(o, "    pub unknown_fields: crate::proto::UnknownFields,");
        let _ = writeln!(o, "}}\n");
        for one in &m.oneofs {
            let _ = writeln!(o, "/// Members of `{}.{}`.", m.full_name, one.rust_field);
            let _ = writeln!(o, "#[derive(Debug, Clone, PartialEq)]");
            let _ = writeln!(o, "pub enum {} {{", one.enum_name);
            for &i in &one.members {
                let f = &m.fields[i];
                let t = if f.ty.is_message_like() {
                    format!("::std::boxed::Box<{}>", f.ty.rust())
                } else {
                    f.ty.rust()
                };
                let _ = writeln!(o, "    /// `{}` = {}.", f.proto_name, f.number);
                let _ = writeln!(o, "    {}({}),", go_camel(&f.proto_name), t);
            }
            let _ = writeln!(o, "}}\n");
        }
    }

    /// (len expression, encode statement) of one field.
    fn wire_field(f: &Field) -> (String, String) {
        let n = f.number;
        let v = format!("self.{}", f.rust_name);
        let s = "crate::proto::scalar";
        match (&f.card, &f.ty) {
            (Card::Single, t) if t.codec().is_some() && !matches!(t, Ty::Wkt(..)) => {
                let c = t.codec().unwrap_or_default();
                (
                    format!("{s}::single_len::<{s}::{c}>({n}, &{v})"),
                    format!("{s}::put_single::<{s}::{c}>(buf, {n}, &{v});"),
                )
            }
            (Card::Optional, Ty::Wkt(c, _)) => (
                format!("{s}::wkt_len::<{s}::{c}>({n}, &{v})"),
                format!("{s}::put_wkt::<{s}::{c}>(buf, {n}, &{v});"),
            ),
            (Card::Optional, t) if t.codec().is_some() => {
                let c = t.codec().unwrap_or_default();
                (
                    format!("{v}.as_ref().map_or(0, |x| {s}::always_len::<{s}::{c}>({n}, x))"),
                    format!(
                        "if let Some(x) = &{v} {{ {s}::put_always::<{s}::{c}>(buf, {n}, x); }}"
                    ),
                )
            }
            (Card::Single, _) => (
                format!("crate::proto::message_field_len({n}, &{v})"),
                format!("crate::proto::put_message_field(buf, {n}, &{v});"),
            ),
            (Card::Optional, _) => {
                let deref = if f.boxed { "&**x" } else { "x" };
                (
                    format!(
                        "{v}.as_ref().map_or(0, |x| crate::proto::message_field_len({n}, {deref}))"
                    ),
                    format!(
                        "if let Some(x) = &{v} {{ crate::proto::put_message_field(buf, {n}, {deref}); }}"
                    ),
                )
            }
            (Card::Repeated, t) if t.codec().is_some() => {
                let c = t.codec().unwrap_or_default();
                (
                    format!("{s}::repeated_len::<{s}::{c}>({n}, &{v})"),
                    format!("{s}::put_repeated::<{s}::{c}>(buf, {n}, &{v});"),
                )
            }
            (Card::Repeated, _) => (
                format!("{s}::repeated_message_len({n}, &{v})"),
                format!("{s}::put_repeated_message(buf, {n}, &{v});"),
            ),
            (Card::Map(k), t) => {
                let kc = k.codec().unwrap_or_default();
                match t.codec() {
                    Some(vc) => (
                        format!("{s}::map_len::<{s}::{kc}, {s}::{vc}>({n}, &{v})"),
                        format!("{s}::put_map::<{s}::{kc}, {s}::{vc}>(buf, {n}, &{v});"),
                    ),
                    None => (
                        format!("{s}::map_message_len::<{s}::{kc}, _>({n}, &{v})"),
                        format!("{s}::put_map_message::<{s}::{kc}, _>(buf, {n}, &{v});"),
                    ),
                }
            }
            (Card::Oneof(_), _) => unreachable!("oneofs are encoded by their enum"),
        }
    }

    fn decode_arm(m: &Msg, f: &Field) -> String {
        let n = f.number;
        let name = format!("{}::NAME", m.rust_name);
        let v = format!("self.{}", f.rust_name);
        let s = "crate::proto::scalar";
        match (&f.card, &f.ty) {
            (Card::Optional, Ty::Wkt(c, _)) => {
                format!("{v} = Some({s}::read_wkt::<{s}::{c}>({name}, {n}, wt, buf)?);")
            }
            (Card::Single, t) if t.codec().is_some() => {
                let c = t.codec().unwrap_or_default();
                format!("{v} = {s}::read_scalar::<{s}::{c}>({name}, {n}, wt, buf)?;")
            }
            (Card::Optional, t) if t.codec().is_some() => {
                let c = t.codec().unwrap_or_default();
                format!("{v} = Some({s}::read_scalar::<{s}::{c}>({name}, {n}, wt, buf)?);")
            }
            (Card::Single, Ty::Time) => format!(
                "crate::proto::expect_wire({name}, {n}, wt, crate::proto::WireType::Len)?; {v} = crate::proto::read_std_time(buf, depth)?;"
            ),
            (Card::Optional, Ty::Time) => format!(
                "crate::proto::expect_wire({name}, {n}, wt, crate::proto::WireType::Len)?; {v} = Some(crate::proto::read_std_time(buf, depth)?);"
            ),
            (Card::Single, _) => {
                format!("{s}::read_message({name}, {n}, wt, buf, depth, &mut {v})?;")
            }
            (Card::Optional, _) => format!(
                "{s}::read_message({name}, {n}, wt, buf, depth, {}{v}.get_or_insert_with(Default::default))?;",
                if f.boxed { "&mut **" } else { "" }
            ),
            (Card::Repeated, t) if t.codec().is_some() => {
                let c = t.codec().unwrap_or_default();
                format!("{s}::read_repeated::<{s}::{c}>({name}, {n}, wt, buf, &mut {v})?;")
            }
            (Card::Repeated, Ty::Time) => format!(
                "crate::proto::expect_wire({name}, {n}, wt, crate::proto::WireType::Len)?; {v}.push(crate::proto::read_std_time(buf, depth)?);"
            ),
            (Card::Repeated, _) => {
                format!("{s}::read_repeated_message({name}, {n}, wt, buf, depth, &mut {v})?;")
            }
            (Card::Map(k), t) => {
                let kc = k.codec().unwrap_or_default();
                match t.codec() {
                    Some(vc) => format!(
                        "let (k, x) = {s}::read_map_entry::<{s}::{kc}, {s}::ScalarValue<{s}::{vc}>>({name}, {n}, wt, buf, depth)?; {v}.insert(k, x.0);"
                    ),
                    None => format!(
                        "let (k, x) = {s}::read_map_entry::<{s}::{kc}, {}>({name}, {n}, wt, buf, depth)?; {v}.insert(k, x);",
                        t.rust()
                    ),
                }
            }
            (Card::Oneof(o), t) => {
                let one = &m.oneofs[*o];
                let var = format!("{}::{}", one.enum_name, go_camel(&f.proto_name));
                let of = format!("self.{}", one.rust_field);
                match t {
                    Ty::Time => format!(
                        "crate::proto::expect_wire({name}, {n}, wt, crate::proto::WireType::Len)?; {of} = Some({var}(Box::new(crate::proto::read_std_time(buf, depth)?)));"
                    ),
                    t if t.codec().is_some() && !matches!(t, Ty::Wkt(..)) => {
                        let c = t.codec().unwrap_or_default();
                        format!(
                            "{of} = Some({var}({s}::read_scalar::<{s}::{c}>({name}, {n}, wt, buf)?));"
                        )
                    }
                    _ => format!(
                        "let mut x = <{}>::default(); {s}::read_message({name}, {n}, wt, buf, depth, &mut x)?; {of} = Some({var}(Box::new(x)));",
                        t.rust()
                    ),
                }
            }
        }
    }

    fn oneof_wire(m: &Msg, one: &Oneof) -> (String, String) {
        let s = "crate::proto::scalar";
        let mut len = format!("match &self.{} {{ None => 0,", one.rust_field);
        let mut enc = format!("match &self.{} {{ None => {{}}", one.rust_field);
        for &i in &one.members {
            let f = &m.fields[i];
            let n = f.number;
            let var = format!("{}::{}", one.enum_name, go_camel(&f.proto_name));
            match f.ty.codec() {
                Some(c) if !matches!(f.ty, Ty::Wkt(..)) => {
                    let _ = write!(
                        len,
                        " Some({var}(x)) => {s}::always_len::<{s}::{c}>({n}, x),"
                    );
                    let _ = write!(
                        enc,
                        " Some({var}(x)) => {s}::put_always::<{s}::{c}>(buf, {n}, x),"
                    );
                }
                _ => {
                    let _ = write!(
                        len,
                        " Some({var}(x)) => crate::proto::message_field_len({n}, &**x),"
                    );
                    let _ = write!(
                        enc,
                        " Some({var}(x)) => crate::proto::put_message_field(buf, {n}, &**x),"
                    );
                }
            }
        }
        len.push('}');
        enc.push('}');
        (len, enc)
    }

    fn message_impl(&mut self, m: &Msg) {
        let mut order: Vec<usize> = (0..m.fields.len()).collect();
        order.sort_by_key(|&i| m.fields[i].number);
        let mut len_terms = Vec::new();
        let mut enc_stmts = Vec::new();
        let mut done_oneofs = BTreeSet::new();
        for &i in &order {
            let f = &m.fields[i];
            if let Card::Oneof(o) = f.card {
                if done_oneofs.insert(o) {
                    let (l, e) = Self::oneof_wire(m, &m.oneofs[o]);
                    len_terms.push(l);
                    enc_stmts.push(e);
                }
                continue;
            }
            let (l, e) = Self::wire_field(f);
            len_terms.push(l);
            enc_stmts.push(e);
        }
        let o = &mut self.out;
        let _ = writeln!(o, "impl crate::proto::Message for {} {{", m.rust_name);
        let _ = writeln!(o, "    const NAME: &'static str = \"{}\";", m.full_name);
        let _ = writeln!(o, "    #[allow(clippy::identity_op)]");
        let _ = writeln!(o, "    fn encoded_len(&self) -> usize {{");
        let _ = writeln!(o, "        0");
        for t in &len_terms {
            let _ = writeln!(o, "        + {t}");
        }
        let _ = writeln!(o, "        + self.unknown_fields.0.len()");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "    fn encode_raw(&self, buf: &mut Vec<u8>) {{");
        for e in &enc_stmts {
            let _ = writeln!(o, "        {e}");
        }
        let _ = writeln!(o, "        buf.extend_from_slice(&self.unknown_fields.0);");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "    #[allow(unused_variables)]");
        let _ = writeln!(
            o,
            "    fn merge_field(&mut self, field: u32, wt: crate::proto::WireType, key_start: &[u8], buf: &mut &[u8], depth: u32) -> Result<(), crate::proto::DecodeError> {{"
        );
        let _ = writeln!(o, "        match field {{");
        for f in &m.fields {
            let _ = writeln!(
                o,
                "            {} => {{ {} }}",
                f.number,
                Self::decode_arm(m, f)
            );
        }
        let _ = writeln!(
            o,
            "            _ => crate::proto::keep_unknown(&mut self.unknown_fields, wt, key_start, buf)?,"
        );
        let _ = writeln!(o, "        }}");
        let _ = writeln!(o, "        Ok(())");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "}}\n");
    }

    /// Expression reaching a leaf for reading (`Some` wrappers for nullable embeds handled by
    /// nesting `if let`s); returns (prefix statements opener, expression, closers).
    fn leaf_access(&self, leaf: &Leaf, mutable: bool) -> (String, String, String) {
        let mut open = String::new();
        let mut close = String::new();
        let mut expr = "self".to_string();
        let last = leaf.path.len() - 1;
        for (k, (msg, idx)) in leaf.path.iter().enumerate() {
            let f = self.field(msg, *idx);
            expr = format!("{expr}.{}", f.rust_name);
            if k < last && f.card == Card::Optional {
                if mutable {
                    expr = format!("{expr}.get_or_insert_with(Default::default)");
                } else {
                    let var = format!("e{k}");
                    let _ = write!(open, "if let Some({var}) = &{expr} {{ ");
                    close.push_str(" }");
                    expr = var;
                }
            }
        }
        (open, expr, close)
    }

    fn json_write_stmt(f: &Field, name: &str, v: &str) -> String {
        let omit = f.omitempty;
        let null_else = if omit {
            String::new()
        } else {
            format!(" else {{ w.null(\"{name}\"); }}")
        };
        match (&f.card, &f.ty) {
            (Card::Single, Ty::Scalar("PString", _)) => {
                if omit {
                    format!("if !{v}.is_empty() {{ w.str(\"{name}\", &{v}); }}")
                } else {
                    format!("w.str(\"{name}\", &{v});")
                }
            }
            (Card::Single, Ty::Scalar("PBytes", _)) => {
                format!("if !{v}.is_empty() {{ w.bytes(\"{name}\", &{v}); }}{null_else}")
            }
            (Card::Single, Ty::Scalar("PBool", _)) => {
                if omit {
                    format!("if {v} {{ w.bool(\"{name}\", true); }}")
                } else {
                    format!("w.bool(\"{name}\", {v});")
                }
            }
            (Card::Single, Ty::Scalar(c, _)) if *c == "PDouble" || *c == "PFloat" => {
                if omit {
                    format!("if {v} != 0.0 {{ w.float(\"{name}\", {v} as f64); }}")
                } else {
                    format!("w.float(\"{name}\", {v} as f64);")
                }
            }
            (Card::Single, Ty::Scalar(..) | Ty::Enum(_)) => {
                if omit {
                    format!("if {v} != 0 {{ w.int(\"{name}\", {v}); }}")
                } else {
                    format!("w.int(\"{name}\", {v});")
                }
            }
            (Card::Single, Ty::Dur) => {
                if omit {
                    format!("if {v}.0 != 0 {{ w.int(\"{name}\", {v}.0); }}")
                } else {
                    format!("w.int(\"{name}\", {v}.0);")
                }
            }
            (Card::Single, Ty::Traits) => {
                format!("if !{v}.0.is_empty() {{ w.value(\"{name}\", &{v}); }}{null_else}")
            }
            (Card::Single, _) => format!("w.value(\"{name}\", &{v});"),
            (Card::Optional, Ty::Scalar("PBytes", _)) => {
                format!("if let Some(x) = &{v} {{ w.bytes(\"{name}\", x); }}{null_else}")
            }
            (Card::Optional, Ty::Scalar("PString", _) | Ty::Wkt("PString", _)) => {
                format!("if let Some(x) = &{v} {{ w.str(\"{name}\", x); }}{null_else}")
            }
            (Card::Optional, Ty::Scalar("PBool", _) | Ty::Wkt("PBool", _)) => {
                format!("if let Some(x) = {v} {{ w.bool(\"{name}\", x); }}{null_else}")
            }
            (Card::Optional, Ty::Scalar(c, _) | Ty::Wkt(c, _))
                if *c == "PDouble" || *c == "PFloat" =>
            {
                format!("if let Some(x) = {v} {{ w.float(\"{name}\", x as f64); }}{null_else}")
            }
            (Card::Optional, Ty::Wkt("PBytes", _)) => {
                format!("if let Some(x) = &{v} {{ w.bytes(\"{name}\", x); }}{null_else}")
            }
            (Card::Optional, Ty::Scalar(..) | Ty::Enum(_) | Ty::Wkt(..)) => {
                format!("if let Some(x) = {v} {{ w.int(\"{name}\", x); }}{null_else}")
            }
            (Card::Optional, Ty::Dur) => {
                format!("if let Some(x) = {v} {{ w.int(\"{name}\", x.0); }}{null_else}")
            }
            (Card::Optional, _) => {
                format!("if let Some(x) = &{v} {{ w.value(\"{name}\", x); }}{null_else}")
            }
            (Card::Repeated, Ty::Scalar("PString", _)) => {
                format!("if !{v}.is_empty() {{ w.strs(\"{name}\", &{v}); }}{null_else}")
            }
            (Card::Repeated, Ty::Scalar("PBytes", _)) => {
                format!(
                    "if !{v}.is_empty() {{ w.value(\"{name}\", &crate::json::Base64List(&{v})); }}{null_else}"
                )
            }
            (Card::Repeated, _) => {
                format!(
                    "if !{v}.is_empty() {{ w.value(\"{name}\", &crate::json::List(&{v})); }}{null_else}"
                )
            }
            (Card::Map(_), _) => {
                format!(
                    "if !{v}.is_empty() {{ w.value(\"{name}\", &crate::json::StrMap(&{v})); }}{null_else}"
                )
            }
            (Card::Oneof(_), _) => String::new(),
        }
    }

    fn json_read_stmt(f: &Field, name: &str, target: &str) -> String {
        let t = f.ty.rust();
        let one = match &f.ty {
            Ty::Scalar("PBytes", _) | Ty::Wkt("PBytes", _) => {
                format!("crate::json::bytes_from_json(v, \"{name}\")?")
            }
            Ty::Message(_) => format!("crate::json::from_json_value::<{t}>(v, \"{name}\")?"),
            _ => format!("<{t} as crate::json::FromJson>::from_json(v, \"{name}\")?"),
        };
        match &f.card {
            Card::Single => format!("{target} = {one};"),
            Card::Optional => {
                if f.boxed {
                    format!("{target} = Some(Box::new({one}));")
                } else {
                    format!("{target} = Some({one});")
                }
            }
            Card::Repeated => match &f.ty {
                Ty::Scalar("PBytes", _) => {
                    format!("{target} = crate::json::base64_list_from_json(v, \"{name}\")?;")
                }
                Ty::Message(_) => {
                    format!("{target} = crate::json::messages_from_json(v, \"{name}\")?;")
                }
                _ => format!(
                    "{target} = <Vec<{t}> as crate::json::FromJson>::from_json(v, \"{name}\")?;"
                ),
            },
            Card::Map(_) => match &f.ty {
                Ty::Message(_) => {
                    format!("{target} = crate::json::message_map_from_json(v, \"{name}\")?;")
                }
                Ty::Scalar("PBytes", _) => {
                    format!("{target} = crate::json::base64_map_from_json(v, \"{name}\")?;")
                }
                _ => format!(
                    "{target} = <::std::collections::BTreeMap<String, {t}> as crate::json::FromJson>::from_json(v, \"{name}\")?;"
                ),
            },
            Card::Oneof(_) => String::new(),
        }
    }

    /// The direct reader's statement for a leaf (`set_json_field_direct`, `json/direct.rs`):
    /// strings, times and messages read from the member's text; anything else through the
    /// `Value` the `Value` reader would have had (its statement, errors become declines).
    fn json_direct_stmt(f: &Field, name: &str, target: &str) -> String {
        let t = f.ty.rust();
        let one = match &f.ty {
            Ty::Scalar("PBytes", _) | Ty::Wkt("PBytes", _) => None,
            Ty::Message(_) => Some(format!("crate::json::direct::message::<{t}>(raw)?")),
            Ty::Time => Some("crate::json::direct::timestamp(raw)?".to_string()),
            _ if t == "String" => Some("crate::json::direct::string(raw)?".to_string()),
            _ => None,
        };
        match (&f.card, one) {
            (Card::Single, Some(one)) => format!("{target} = {one};"),
            (Card::Optional, Some(one)) if f.boxed => format!("{target} = Some(Box::new({one}));"),
            (Card::Optional, Some(one)) => format!("{target} = Some({one});"),
            (Card::Oneof(_), _) => String::new(),
            _ => format!(
                "let v = &crate::json::direct::value(raw)?; {}",
                Self::json_read_stmt(f, name, target)
            ),
        }
    }

    fn json_impl(&mut self, m: &Msg) {
        let mut all = Vec::new();
        leaves(self.msgs, m, 0, &[], &mut all);
        let ls = resolve(all);
        let mut write = String::new();
        let mut read = String::new();
        let mut direct = String::new();
        let mut names = Vec::new();
        for leaf in &ls {
            let (msg, idx) = leaf.path.last().cloned().unwrap_or_default();
            let f = self.field(&msg, idx).clone();
            let (open, expr, close) = self.leaf_access(leaf, false);
            let _ = writeln!(
                write,
                "        {open}{}{close}",
                Self::json_write_stmt(&f, &leaf.name, &expr)
            );
            let (_, mexpr, _) = self.leaf_access(leaf, true);
            let _ = writeln!(
                read,
                "            \"{}\" => {{ {} }}",
                leaf.name,
                Self::json_read_stmt(&f, &leaf.name, &mexpr)
            );
            let _ = writeln!(
                direct,
                "            \"{}\" => {{ {} }}",
                leaf.name,
                Self::json_direct_stmt(&f, &leaf.name, &mexpr)
            );
            names.push(format!("\"{}\"", leaf.name));
        }
        let o = &mut self.out;
        let _ = writeln!(o, "impl crate::json::JsonFields for {} {{", m.rust_name);
        let _ = writeln!(o, "    #[allow(unused_variables, clippy::needless_borrow)]");
        let _ = writeln!(
            o,
            "    fn write_json_fields(&self, w: &mut crate::json::ObjectWriter<'_>) {{"
        );
        o.push_str(&write);
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "    #[allow(unused_variables, unreachable_code)]");
        let _ = writeln!(
            o,
            "    fn set_json_field(&mut self, key: &str, v: &serde_json::Value) -> Result<bool, crate::json::JsonError> {{"
        );
        let _ = writeln!(o, "        match key {{");
        o.push_str(&read);
        let _ = writeln!(o, "            _ => return Ok(false),");
        let _ = writeln!(o, "        }}");
        let _ = writeln!(o, "        Ok(true)");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(
            o,
            "    fn json_field_names() -> &'static [&'static str] {{ &[{}] }}",
            names.join(", ")
        );
        let _ = writeln!(o, "    #[allow(unused_variables, unreachable_code)]");
        let _ = writeln!(
            o,
            "    fn set_json_field_direct(&mut self, key: &str, raw: crate::json::direct::Raw<'_>) -> Result<bool, crate::json::direct::Decline> {{"
        );
        let _ = writeln!(o, "        match key {{");
        o.push_str(&direct);
        let _ = writeln!(o, "            _ => return Ok(false),");
        let _ = writeln!(o, "        }}");
        let _ = writeln!(o, "        Ok(true)");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "}}\n");
        let _ = writeln!(o, "crate::json::serde_via_json!({});", m.rust_name);
        let _ = writeln!(o, "impl crate::json::ToJson for {} {{", m.rust_name);
        let _ = writeln!(o, "    fn write_json(&self, out: &mut String) {{");
        let _ = writeln!(
            o,
            "        let mut w = crate::json::ObjectWriter::begin(out);"
        );
        let _ = writeln!(
            o,
            "        crate::json::JsonFields::write_json_fields(self, &mut w);"
        );
        let _ = writeln!(o, "        w.end();");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "}}\n");
    }

    fn random_impl(&mut self, m: &Msg) {
        let o = &mut self.out;
        let _ = writeln!(o, "#[cfg(feature = \"random\")]");
        let _ = writeln!(o, "impl crate::random::Random for {} {{", m.rust_name);
        let _ = writeln!(o, "    #[allow(unused_variables, unused_mut)]");
        let _ = writeln!(
            o,
            "    fn random(r: &mut crate::random::Rng, depth: u32) -> Self {{"
        );
        let _ = writeln!(o, "        let mut m = Self::default();");
        let _ = writeln!(
            o,
            "        if depth > crate::random::MAX_DEPTH {{ return m; }}"
        );
        for f in &m.fields {
            let v = format!("m.{}", f.rust_name);
            let one = match &f.ty {
                Ty::Enum(_) => "r.small_i32()".to_string(),
                _ => "crate::random::Random::random(r, depth + 1)".to_string(),
            };
            let stmt = match &f.card {
                Card::Single => format!("{v} = {one};"),
                Card::Optional if f.boxed => {
                    format!("if r.coin() {{ {v} = Some(Box::new({one})); }}")
                }
                Card::Optional => format!("if r.coin() {{ {v} = Some({one}); }}"),
                Card::Repeated => match &f.ty {
                    Ty::Enum(_) => {
                        format!("{v} = (0..r.below(3)).map(|_| r.small_i32()).collect();")
                    }
                    _ => format!("{v} = crate::random::vec(r, depth + 1);"),
                },
                Card::Map(_) => format!("{v} = crate::random::map(r, depth + 1);"),
                Card::Oneof(_) => continue,
            };
            let _ = writeln!(o, "        {stmt}");
        }
        for one in &m.oneofs {
            let _ = writeln!(o, "        match r.below({}) {{", one.members.len() + 1);
            for (k, &i) in one.members.iter().enumerate() {
                let f = &m.fields[i];
                let var = format!("{}::{}", one.enum_name, go_camel(&f.proto_name));
                let val = match &f.ty {
                    Ty::Enum(_) => "r.small_i32()".to_string(),
                    t if t.is_message_like() => {
                        "Box::new(crate::random::Random::random(r, depth + 1))".to_string()
                    }
                    _ => "crate::random::Random::random(r, depth + 1)".to_string(),
                };
                let _ = writeln!(
                    o,
                    "            {k} => m.{} = Some({var}({val})),",
                    one.rust_field
                );
            }
            let _ = writeln!(o, "            _ => {{}}");
            let _ = writeln!(o, "        }}");
        }
        let _ = writeln!(o, "        m");
        let _ = writeln!(o, "    }}");
        let _ = writeln!(o, "}}\n");
    }

    fn enum_def(&mut self, e: &EnumDescriptor) {
        let name = local_name(e.full_name(), e.package_name());
        let o = &mut self.out;
        let _ = writeln!(
            o,
            "/// Values of the enum `{}` (fields hold them as `i32`).",
            e.full_name()
        );
        let _ = writeln!(o, "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]");
        let _ = writeln!(o, "#[repr(i32)]");
        let _ = writeln!(o, "pub enum {name} {{");
        let mut seen = BTreeSet::new();
        let mut variants = Vec::new();
        for v in e.values() {
            if !seen.insert(v.number()) {
                continue;
            }
            let mut vn = pascal_from_upper_snake(v.name());
            if vn.is_empty() || vn.starts_with(|c: char| c.is_ascii_digit()) {
                vn = format!("V{vn}");
            }
            let _ = writeln!(o, "    /// `{}`.", v.name());
            let _ = writeln!(o, "    {vn} = {},", v.number());
            variants.push((vn, v.number(), v.name().to_string()));
        }
        let _ = writeln!(o, "}}\n");
        let _ = writeln!(o, "impl {name} {{");
        let _ = writeln!(o, "    /// The variant with this number, if any.");
        let _ = writeln!(
            o,
            "    pub fn from_i32(v: i32) -> Option<Self> {{ match v {{"
        );
        for (vn, n, _) in &variants {
            let _ = writeln!(o, "        {n} => Some(Self::{vn}),");
        }
        let _ = writeln!(o, "        _ => None }} }}");
        let _ = writeln!(o, "    /// The name in the schema.");
        let _ = writeln!(
            o,
            "    pub fn as_str_name(&self) -> &'static str {{ match self {{"
        );
        for (vn, _, pn) in &variants {
            let _ = writeln!(o, "        Self::{vn} => \"{pn}\",");
        }
        let _ = writeln!(o, "    }} }}");
        let _ = writeln!(o, "}}\n");
    }
}

/// Compiles `file` under `dir` and generates the Rust code.
pub fn generate(dir: &str, file: &str) -> Result<Schema, String> {
    let mut compiler = protox::Compiler::new([dir]).map_err(|e| format!("{e:?}"))?;
    compiler.include_imports(true);
    compiler
        .open_file(file)
        .map_err(|e| format!("{e}: {e:?}"))?;
    let pool = compiler.descriptor_pool();
    let opts = Opts::new(&pool)?;

    let skip = |pkg: &str| pkg.starts_with("google.protobuf") || pkg == "tapelog";
    let mut msgs = BTreeMap::new();
    for m in pool.all_messages() {
        if skip(m.package_name()) || m.is_map_entry() {
            continue;
        }
        msgs.insert(m.full_name().to_string(), build_msg(&opts, &m)?);
    }
    let mut g = Gen {
        msgs: &msgs,
        out: String::new(),
    };
    g.out.push_str(
        "// @generated by core/events/build/codegen.rs from core/events/proto. Do not edit.\n\n",
    );

    // Group by Rust module.
    let mut by_module: BTreeMap<Option<String>, (Vec<String>, Vec<EnumDescriptor>)> =
        BTreeMap::new();
    for name in msgs.keys() {
        by_module
            .entry(module_of(&package_of(name)))
            .or_default()
            .0
            .push(name.clone());
    }
    for e in pool.all_enums() {
        if skip(e.package_name()) {
            continue;
        }
        by_module
            .entry(module_of(e.package_name()))
            .or_default()
            .1
            .push(e);
    }
    for (module, (names, enums)) in &by_module {
        if let Some(m) = module {
            let _ = writeln!(g.out, "/// Types of the `{}` package.", m.replace('_', "."));
            let _ = writeln!(g.out, "pub mod {m} {{\n");
        }
        for e in enums {
            g.enum_def(e);
        }
        for n in names {
            let m = &msgs[n];
            g.struct_def(m);
            g.message_impl(m);
            g.json_impl(m);
            g.random_impl(m);
        }
        if module.is_some() {
            g.out.push_str("}\n\n");
        }
    }

    // The OneOf members: the event kinds.
    let oneof = msgs.get("events.OneOf").ok_or("events.OneOf is missing")?;
    let mut oneof_messages = Vec::new();
    let mut list = String::new();
    for f in &oneof.fields {
        let Ty::Message(path) = &f.ty else {
            return Err(format!("OneOf.{} is not a message", f.proto_name));
        };
        let msg_name = path.rsplit("::").next().unwrap_or_default().to_string();
        oneof_messages.push((f.number, go_camel(&f.proto_name), msg_name.clone()));
        let _ = writeln!(
            list,
            "            ({}, {}, {}),",
            f.number,
            go_camel(&f.proto_name),
            msg_name
        );
    }
    let _ = writeln!(
        g.out,
        "/// Calls `$m!` with `(oneof field number, variant, message type)` of every event kind."
    );
    let _ = writeln!(g.out, "macro_rules! with_event_kinds {{");
    let _ = writeln!(g.out, "    ($m:ident) => {{");
    let _ = writeln!(g.out, "        $m! {{");
    g.out.push_str(&list);
    let _ = writeln!(g.out, "        }}");
    let _ = writeln!(g.out, "    }};");
    let _ = writeln!(g.out, "}}");
    let _ = writeln!(g.out, "pub(crate) use with_event_kinds;\n");

    // Metadata accessors of each event kind.
    let find = |m: &Msg, ty: &str| -> Option<String> {
        m.fields
            .iter()
            .find(|f| {
                f.ty == Ty::Message(format!("{ROOT}::{ty}")) && matches!(f.card, Card::Single)
            })
            .map(|f| f.rust_name.clone())
    };
    for (_, _, msg_name) in &oneof_messages {
        let m = msgs
            .get(&format!("events.{msg_name}"))
            .ok_or_else(|| format!("events.{msg_name} missing"))?;
        let _ = writeln!(g.out, "impl crate::event::EventKind for {msg_name} {{");
        for (acc, ty) in [
            ("metadata", "Metadata"),
            ("session_metadata", "SessionMetadata"),
            ("user_metadata", "UserMetadata"),
            ("server_metadata", "ServerMetadata"),
            ("connection_metadata", "ConnectionMetadata"),
        ] {
            match find(m, ty) {
                Some(f) => {
                    let _ = writeln!(
                        g.out,
                        "    fn {acc}(&self) -> Option<&{ty}> {{ Some(&self.{f}) }}"
                    );
                    let _ = writeln!(
                        g.out,
                        "    fn {acc}_mut(&mut self) -> Option<&mut {ty}> {{ Some(&mut self.{f}) }}"
                    );
                }
                None => {
                    let _ = writeln!(g.out, "    fn {acc}(&self) -> Option<&{ty}> {{ None }}");
                    let _ = writeln!(
                        g.out,
                        "    fn {acc}_mut(&mut self) -> Option<&mut {ty}> {{ None }}"
                    );
                }
            }
        }
        let _ = writeln!(g.out, "}}\n");
    }

    // TrimToMaxSize rules.
    g.out.push_str(&crate::tables::trim_code(
        "schema/trim.tsv",
        &msgs_view(&msgs),
        &oneof_messages,
    )?);

    Ok(Schema {
        code: g.out,
        oneof_messages,
    })
}

/// What the table generator needs to know of a message: Go field name → (Rust field, kind).
pub struct FieldView {
    pub rust_name: String,
    pub kind: &'static str,
    pub message: Option<String>,
    pub optional: bool,
}

fn msgs_view(msgs: &BTreeMap<String, Msg>) -> BTreeMap<String, BTreeMap<String, FieldView>> {
    let mut out = BTreeMap::new();
    for m in msgs
        .values()
        .filter(|m| package_of(&m.full_name) == MAIN_PACKAGE)
    {
        let mut fields = BTreeMap::new();
        for f in &m.fields {
            let kind = match (&f.card, &f.ty) {
                (Card::Single, Ty::Scalar("PString", _)) => "string",
                (Card::Repeated, Ty::Scalar("PString", _)) => "strings",
                (Card::Map(_), Ty::Scalar("PString", _)) => "strmap",
                (Card::Single, Ty::Scalar("PBytes", _)) => "bytes",
                (Card::Optional, Ty::Struct) => "struct",
                (Card::Single, Ty::Traits) => "traits",
                (Card::Repeated, Ty::Message(p)) if p.ends_with("::FileTransferStat") => {
                    "sftp_paths"
                }
                (Card::Single, Ty::Message(p)) if p.ends_with("::Status") => "status",
                (Card::Optional, Ty::Message(p)) if p.ends_with("::Status") => "status_ptr",
                (Card::Single, Ty::Message(p)) if p.ends_with("::CommandMetadata") => "command",
                (Card::Single, Ty::Message(p)) if p.ends_with("::MCPJSONRPCMessage") => "mcp",
                (Card::Single, Ty::Message(p)) if p.ends_with("::SCIMCommonData") => "scim",
                (Card::Single | Card::Optional, Ty::Message(_)) => "message",
                _ => "other",
            };
            let message = match &f.ty {
                Ty::Message(p) => Some(p.rsplit("::").next().unwrap_or_default().to_string()),
                _ => None,
            };
            fields.insert(
                f.go_name.clone(),
                FieldView {
                    rust_name: f.rust_name.clone(),
                    kind,
                    message,
                    optional: f.card == Card::Optional,
                },
            );
        }
        out.insert(m.rust_name.clone(), fields);
    }
    out
}
