//! The API tree: loading `pve-apidoc.json`, resolving concrete paths to templates, and the
//! per-method [`Endpoint`] that validates parameters and return values.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::check::{self, ErrorMap, IndexLimits, LXC_INDEX_LIMITS};
use crate::error::{Error, FindError};
use crate::format;
use crate::property_string;
use crate::scalar::python_str;

/// One path template and the methods registered on it.
#[derive(Debug)]
struct Route {
    template: String,
    /// Placeholder names in template order (`node`, `vmid`, ...).
    placeholders: Vec<String>,
    methods: Vec<(String, Value)>,
}

/// A node of the path trie: literal children by name, placeholder children by name.
#[derive(Debug, Default)]
struct TrieNode {
    literals: HashMap<String, usize>,
    params: Vec<(String, usize)>,
    route: Option<usize>,
}

/// The Proxmox VE API schema: every path template with its methods, indexed for lookups.
#[derive(Debug)]
pub struct Schema {
    routes: Vec<Route>,
    trie: Vec<TrieNode>,
    by_template: HashMap<String, usize>,
}

static NULL: Value = Value::Null;

impl Schema {
    /// Load a schema in the `pve-apidoc.json` shape: an array of `{path, info: {METHOD: {...}},
    /// children: [...]}` nodes (pve-docs `api-viewer/apidata.js`).
    pub fn from_json(text: &str) -> Result<Schema, Error> {
        let tree: Value = serde_json::from_str(text).map_err(|source| Error::Json { source })?;
        let mut schema = Schema {
            routes: Vec::new(),
            trie: vec![TrieNode::default()],
            by_template: HashMap::new(),
        };
        let Value::Array(nodes) = tree else {
            return Err(Error::Shape {
                at: "/".into(),
                reason: "top level is not an array",
            });
        };
        schema.add_nodes(nodes)?;
        Ok(schema)
    }

    fn add_nodes(&mut self, nodes: Vec<Value>) -> Result<(), Error> {
        for node in nodes {
            let Value::Object(mut node) = node else {
                return Err(Error::Shape {
                    at: "node".into(),
                    reason: "node is not an object",
                });
            };
            let Some(Value::String(template)) = node.remove("path") else {
                return Err(Error::Shape {
                    at: "node".into(),
                    reason: "node has no path",
                });
            };
            let methods = match node.remove("info") {
                Some(Value::Object(info)) => info.into_iter().collect(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(Error::Shape {
                        at: template,
                        reason: "info is not an object",
                    })
                }
            };
            self.add_route(template.clone(), methods);
            match node.remove("children") {
                Some(Value::Array(children)) => self.add_nodes(children)?,
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(Error::Shape {
                        at: template,
                        reason: "children is not an array",
                    })
                }
            }
        }
        Ok(())
    }

    fn add_route(&mut self, template: String, methods: Vec<(String, Value)>) {
        if let Some(&idx) = self.by_template.get(&template) {
            self.routes[idx].methods.extend(methods);
            return;
        }
        let idx = self.routes.len();
        let mut node = 0;
        let mut placeholders = Vec::new();
        for comp in components(&template) {
            node = match placeholder(comp) {
                Some(name) => {
                    placeholders.push(name.to_owned());
                    match self.trie[node].params.iter().find(|(n, _)| n == name) {
                        Some(&(_, child)) => child,
                        None => {
                            let child = self.new_node();
                            self.trie[node].params.push((name.to_owned(), child));
                            child
                        }
                    }
                }
                None => match self.trie[node].literals.get(comp) {
                    Some(&child) => child,
                    None => {
                        let child = self.new_node();
                        self.trie[node].literals.insert(comp.to_owned(), child);
                        child
                    }
                },
            };
        }
        self.trie[node].route = Some(idx);
        self.by_template.insert(template.clone(), idx);
        self.routes.push(Route {
            template,
            placeholders,
            methods,
        });
    }

    fn new_node(&mut self) -> usize {
        self.trie.push(TrieNode::default());
        self.trie.len() - 1
    }

    /// Resolve a concrete path (percent-decoded, without `/api2/json`) and a method.
    ///
    /// Empty path components are ignored. Among matching templates the one with the most literal
    /// components wins (so `/nodes/{node}/lxc/{vmid}/status/current` beats any placeholder there).
    /// Everything after `/nodes/N/storage/S/content/` is one `{volume}`, slashes included
    /// (pve-storage `API2/Storage/Status.pm` registers Content with an empty fragment delimiter).
    pub fn find(&self, method: &str, path: &str) -> Result<Endpoint<'_>, FindError> {
        let mut comps: Vec<&str> = components(path).collect();
        let joined;
        if comps.len() > 6 && comps[0] == "nodes" && comps[2] == "storage" && comps[4] == "content"
        {
            joined = comps[5..].join("/");
            comps.truncate(5);
            comps.push(&joined);
        }
        let mut best: Option<(usize, usize, Vec<&str>)> = None;
        let mut values = Vec::new();
        self.search(0, &comps, 0, &mut values, &mut best);
        let (route_idx, _, values) = best.ok_or(FindError::NoSuchPath)?;
        let route = &self.routes[route_idx];
        let method = method.to_ascii_uppercase();
        let (method, info) = route
            .methods
            .iter()
            .find(|(m, _)| *m == method)
            .ok_or(FindError::NoSuchMethod)?;
        let path_params = route
            .placeholders
            .iter()
            .cloned()
            .zip(values.into_iter().map(str::to_owned))
            .collect();
        Ok(Endpoint {
            method,
            template: &route.template,
            path_params,
            info,
            placeholders: &route.placeholders,
        })
    }

    /// Depth-first search over the trie keeping the match with the most literal components.
    fn search<'p>(
        &self,
        node: usize,
        comps: &[&'p str],
        literals: usize,
        values: &mut Vec<&'p str>,
        best: &mut Option<(usize, usize, Vec<&'p str>)>,
    ) {
        let Some((first, rest)) = comps.split_first() else {
            if let Some(route) = self.trie[node].route {
                if best.as_ref().is_none_or(|(_, n, _)| literals > *n) {
                    *best = Some((route, literals, values.clone()));
                }
            }
            return;
        };
        if let Some(&child) = self.trie[node].literals.get(*first) {
            self.search(child, rest, literals + 1, values, best);
        }
        for &(_, child) in &self.trie[node].params {
            values.push(first);
            self.search(child, rest, literals, values, best);
            values.pop();
        }
    }

    /// Every `(method, template)` pair of the schema, in schema order.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.routes.iter().flat_map(|r| {
            r.methods
                .iter()
                .map(move |(m, _)| (m.as_str(), r.template.as_str()))
        })
    }

    /// The method description for a template (`/nodes/{node}/lxc`) rather than a concrete path.
    pub fn method_info(&self, method: &str, template: &str) -> Option<&Value> {
        let route = &self.routes[*self.by_template.get(template)?];
        let method = method.to_ascii_uppercase();
        route
            .methods
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, info)| info)
    }
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

fn placeholder(comp: &str) -> Option<&str> {
    comp.strip_prefix('{').and_then(|c| c.strip_suffix('}'))
}

/// One method of one template, resolved from a concrete request path.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    /// The HTTP method as the schema spells it (`GET`, `POST`, `PUT`, `DELETE`).
    pub method: &'a str,
    /// The path template, e.g. `/nodes/{node}/lxc/{vmid}/config`.
    pub template: &'a str,
    /// Values of the template's placeholders taken from the concrete path.
    pub path_params: BTreeMap<String, String>,
    /// The method description from the schema (`parameters`, `returns`, `permissions`, ...).
    pub info: &'a Value,
    /// Placeholder names in template order (path params are merged in this order, as PVE does).
    placeholders: &'a [String],
}

/// PVE's 400 `errors` object: parameter name -> message(s) joined by "\n".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamErrors(pub BTreeMap<String, String>);

impl std::fmt::Display for ParamErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("parameter verification failed")?;
        for (k, v) in &self.0 {
            write!(f, "; {k}: {}", v.trim_end_matches('\n'))?;
        }
        Ok(())
    }
}

impl std::error::Error for ParamErrors {}

/// The full outcome of a validation: the errors PVE would report and notes about checks this
/// crate cannot perform (named formats it does not implement), as the reference checker prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Errors keyed like PVE's 400 `errors` object; empty when the input is valid.
    pub errors: ParamErrors,
    /// Human-readable notes (`net0.hwaddr: named format 'x' not checked by this tool`).
    pub notes: Vec<String>,
}

impl Report {
    /// `Ok(())` when there are no errors.
    pub fn into_result(self) -> Result<(), ParamErrors> {
        if self.errors.0.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

impl<'a> Endpoint<'a> {
    fn parameters(&self) -> (&'a Map<String, Value>, Option<&'a Value>) {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(Map::new);
        let pschema = self.info.get("parameters");
        let props = pschema
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
            .unwrap_or(empty);
        (props, pschema.and_then(|p| p.get("additionalProperties")))
    }

    fn index_limits(&self) -> Option<IndexLimits> {
        let lxc = "/nodes/{node}/lxc";
        let under_lxc = self.template == lxc
            || self
                .template
                .strip_prefix(lxc)
                .is_some_and(|rest| rest.starts_with('/'));
        under_lxc.then_some(LXC_INDEX_LIMITS)
    }

    /// Validate request parameters: all of them, path params merged in by the caller, values as
    /// JSON (strings from forms and query strings, numbers/bools/strings from JSON bodies).
    ///
    /// A parameter that names a path placeholder with a different value gives "duplicate parameter
    /// (already defined in URI) with conflicting values!" (pve-http-server `HTTPServer.pm`); the
    /// path value is then the one checked.
    pub fn validate_params(&self, params: &Map<String, Value>) -> Result<(), ParamErrors> {
        self.check_params(params).into_result()
    }

    /// [`Endpoint::validate_params`] with the notes about unchecked named formats.
    pub fn check_params(&self, params: &Map<String, Value>) -> Report {
        let mut errors = ErrorMap::new();
        let mut notes = Vec::new();
        let (props, additional) = self.parameters();
        let mut value = params.clone();
        for name in self.placeholders {
            let Some(path_value) = self.path_params.get(name) else {
                continue;
            };
            if let Some(given) = value.get(name) {
                if python_str(given) != *path_value {
                    check::add_error(
                        &mut errors,
                        name,
                        "duplicate parameter (already defined in URI) with conflicting values!",
                    );
                }
            }
            value.insert(name.clone(), Value::String(path_value.clone()));
        }
        check::check_object(
            "",
            props,
            &Value::Object(value),
            additional,
            &mut errors,
            &mut notes,
            self.index_limits(),
        );
        Report {
            errors: ParamErrors(errors),
            notes,
        }
    }

    /// Validate a response `data` value against the method's `returns` schema with the same rules
    /// (PVE does this in `RESTHandler::handle` when result verification is on). Objects whose
    /// schema leaves `additionalProperties` unset accept extra keys; only an explicit `0` refuses
    /// them, exactly as `check_object` treats an undefined `$additional_properties`.
    pub fn validate_returns(&self, data: &Value) -> Result<(), ParamErrors> {
        self.check_returns(data).into_result()
    }

    /// [`Endpoint::validate_returns`] with notes.
    pub fn check_returns(&self, data: &Value) -> Report {
        let mut errors = ErrorMap::new();
        let mut notes = Vec::new();
        check::check_prop(Some(data), self.returns(), "", &mut errors, &mut notes);
        Report {
            errors: ParamErrors(errors),
            notes,
        }
    }

    /// The method's `permissions` object, `None` when it declares none (root@pam only).
    pub fn permissions(&self) -> Option<&'a Value> {
        self.info.get("permissions")
    }

    /// Whether API tokens may call the method: false only when `allowtoken` is `0`.
    pub fn allowtoken(&self) -> bool {
        match self.info.get("allowtoken") {
            None | Some(Value::Null) => true,
            Some(v) => crate::scalar::parse_boolean(v) != Some(false),
        }
    }

    /// The method's `returns` schema (JSON null when the schema has none).
    pub fn returns(&self) -> &'a Value {
        self.info.get("returns").unwrap_or(&NULL)
    }

    /// Whether the method is `protected` (runs in the privileged daemon, pvedaemon).
    pub fn protected(&self) -> bool {
        crate::scalar::truthy(self.info.get("protected"))
    }

    /// The schema of one parameter, resolving `net3` to `net[n]` (within the LXC index limits).
    pub fn param_schema(&self, name: &str) -> Option<&'a Value> {
        let (props, _) = self.parameters();
        check::lookup_property(props, name, self.index_limits()).map(|(schema, _)| schema)
    }

    /// Parse a property-string parameter (`net0`, `mp1`, `rootfs`, `features`, ...) as PVE would
    /// store it: key -> value with the default key applied and booleans normalised to `1`/`0`.
    /// Errors are keyed like the 400 response (`net0.mtu: ...`).
    pub fn parse_property_param(
        &self,
        name: &str,
        text: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let schema = self
            .param_schema(name)
            .ok_or_else(|| format!("no parameter '{name}' in {} {}", self.method, self.template))?;
        let fmt = schema.get("format").unwrap_or(&NULL);
        parse_with_path(fmt, text, name)
    }
}

/// Parse a property string (e.g. net0 `name=eth0,bridge=vmbr0,hwaddr=..`) against the `format` of a
/// parameter (an inline property-string format, or the name of a registered one such as
/// `prune-backups`), returning key -> value with the default key applied. `Err` is PVE's text after
/// "invalid format - " (e.g. "format error\nmtu: value must have a minimum value of 64\n").
pub fn parse_property_string(
    format: &Value,
    text: &str,
) -> Result<BTreeMap<String, String>, String> {
    parse_with_path(format, text, "")
}

fn parse_with_path(
    fmt: &Value,
    text: &str,
    path: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut notes = Vec::new();
    let (format, prune) = match fmt {
        Value::Object(map) => (map, false),
        Value::String(name) => format::named_property_format(name)
            .ok_or_else(|| format!("format '{name}' is not a property-string format"))?,
        _ => return Err("parameter has no property-string format".to_owned()),
    };
    property_string::parse(format, text, path, &mut notes, prune).map(property_string::to_text_map)
}
