//! Turns a dashboard exported by any Grafana since 4.x into one that works
//! against this box: data source references of every shape Grafana has
//! written (a name, `{type, uid}`, a `${DS_...}` input of `__inputs`,
//! `null` for the default, `-- Mixed --`) pointed at the provisioned
//! Prometheus and Loki; the `rows` layout of schema versions before 16
//! flattened into `panels` with `gridPos` and row panels; library panels
//! inlined from `__elements`; the export's own keys (`__inputs`,
//! `__requires`, `__elements`, `id`) removed. Pure: JSON in, JSON and a list
//! of what could not be done out.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Grafana's grid is 24 columns wide; the old layout had 12 spans.
const GRID_COLUMNS: u64 = 24;
/// A grid row is 30 px high with an 8 px margin: an old row's pixel height
/// in grid units.
const GRID_ROW_PIXELS: f64 = 38.0;
/// What an old row was high when it said nothing.
const DEFAULT_ROW_PIXELS: f64 = 250.0;
/// The schema version whose layout `flatten_rows` produces.
const GRID_SCHEMA_VERSION: u64 = 16;
/// Grafana refuses longer uids.
pub const MAX_UID_LENGTH: usize = 40;
/// The tag every imported dashboard gets, to find them in Grafana.
pub const IMPORTED_TAG: &str = "imported";

/// The data sources a reference can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// PromQL, asked of the provisioned Prometheus.
    Prometheus,
    /// LogQL, asked of the provisioned Loki.
    Loki,
}

impl Language {
    fn reference(self) -> Value {
        match self {
            Language::Prometheus => json!({"type": "prometheus", "uid": "prometheus"}),
            Language::Loki => {
                json!({"type": "loki", "uid": crate::services::render::LOKI_DATASOURCE_UID})
            }
        }
    }

    fn of_type(plugin: &str) -> Option<Language> {
        match plugin {
            "prometheus" => Some(Language::Prometheus),
            "loki" => Some(Language::Loki),
            _ => None,
        }
    }
}

/// What the box offers imported dashboards.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Whether Loki runs (otherwise Loki references cannot be mapped).
    pub loki: bool,
    /// Uids Grafana already has from elsewhere (obsbox's own dashboards and
    /// the other dashboards of the same import): a colliding uid is renamed.
    pub taken: &'a BTreeSet<String>,
}

/// One query of an imported dashboard, to be checked against its data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    pub panel: String,
    pub ref_id: String,
    pub language: Language,
    pub expr: String,
}

/// A dashboard ready to provision, and what the import changed or could not do.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub dashboard: Value,
    pub uid: String,
    pub title: String,
    /// Panels, row panels not counted.
    pub panels: usize,
    pub queries: Vec<Query>,
    /// References and library panels that could not be mapped, one sentence each.
    pub unmapped: Vec<String>,
    /// Titles of the panels with a reference that could not be mapped.
    pub unmapped_panels: BTreeSet<String>,
    /// What the import changed beyond the data sources (uid renamed, layout
    /// converted, library panels inlined), one sentence each.
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("this is not a Grafana dashboard (a JSON object with a title and panels or rows)")]
    NotADashboard,
    #[error("the dashboard has no title")]
    NoTitle,
}

/// Normalizes one exported dashboard (or the `{"dashboard": ..., "meta": ...}`
/// the HTTP API answers) for this box.
pub fn normalize(exported: Value, context: &Context) -> Result<Normalized, NormalizeError> {
    let mut dashboard = unwrap(exported)?;
    let title = dashboard
        .get("title")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if title.is_empty() {
        return Err(NormalizeError::NoTitle);
    }
    let mut notes = Notes::default();
    let inputs = Inputs::read(&dashboard);
    inputs.substitute_constants(&mut dashboard);
    let elements = library_panels(&dashboard);
    for key in ["__inputs", "__requires", "__elements", "id"] {
        dashboard.remove(key);
    }
    if dashboard.get("rows").is_some_and(Value::is_array) {
        let version = dashboard.get("schemaVersion").and_then(Value::as_u64);
        flatten_rows(&mut dashboard);
        notes.changes.push(format!(
            "the rows layout of schema version {} was converted to panels (schema version {GRID_SCHEMA_VERSION})",
            version.map_or("unknown".into(), |v| v.to_string())
        ));
    }
    let resolver = Resolver {
        inputs: &inputs,
        variables: datasource_variables(&dashboard),
        loki: context.loki,
    };
    let mut panels = dashboard
        .get_mut("panels")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut counted = 0;
    for panel in &mut panels {
        counted += normalize_panel(panel, &elements, &resolver, &mut notes);
    }
    dashboard.insert("panels".into(), Value::Array(panels));
    normalize_templating(&mut dashboard, &resolver, &mut notes);
    normalize_annotations(&mut dashboard, &resolver, &mut notes);
    let uid = settle_uid(&mut dashboard, &title, context.taken, &mut notes);
    tag(&mut dashboard);
    Ok(Normalized {
        dashboard: Value::Object(dashboard),
        uid,
        title,
        panels: counted,
        queries: notes.queries,
        unmapped: notes.unmapped,
        unmapped_panels: notes.unmapped_panels,
        changes: notes.changes,
    })
}

fn unwrap(exported: Value) -> Result<Map<String, Value>, NormalizeError> {
    let Value::Object(mut object) = exported else {
        return Err(NormalizeError::NotADashboard);
    };
    let is_dashboard = |o: &Map<String, Value>| o.contains_key("panels") || o.contains_key("rows");
    if !is_dashboard(&object) {
        match object.remove("dashboard") {
            Some(Value::Object(inner)) if is_dashboard(&inner) => return Ok(inner),
            _ => return Err(NormalizeError::NotADashboard),
        }
    }
    Ok(object)
}

#[derive(Default)]
struct Notes {
    queries: Vec<Query>,
    unmapped: Vec<String>,
    unmapped_panels: BTreeSet<String>,
    changes: Vec<String>,
}

impl Notes {
    fn unmapped(&mut self, text: String) {
        if !self.unmapped.contains(&text) {
            self.unmapped.push(text);
        }
    }

    fn panel_unmapped(&mut self, panel: &str, text: String) {
        self.unmapped_panels.insert(panel.to_string());
        self.unmapped(text);
    }
}

/// The export's `__inputs`: data source inputs by name (their plugin id), and
/// constants by name (their value).
#[derive(Debug, Default)]
struct Inputs {
    sources: BTreeMap<String, String>,
    constants: BTreeMap<String, String>,
}

impl Inputs {
    fn read(dashboard: &Map<String, Value>) -> Inputs {
        let mut inputs = Inputs::default();
        let list = dashboard.get("__inputs").and_then(Value::as_array);
        for input in list.into_iter().flatten() {
            let Some(name) = input.get("name").and_then(Value::as_str) else {
                continue;
            };
            let text = |key: &str| input.get(key).and_then(Value::as_str).unwrap_or_default();
            match text("type") {
                "datasource" => {
                    inputs.sources.insert(name.into(), text("pluginId").into());
                }
                "constant" => {
                    inputs.constants.insert(name.into(), text("value").into());
                }
                _ => {}
            }
        }
        inputs
    }

    /// Replaces `${NAME}` of each constant input by its value, everywhere.
    fn substitute_constants(&self, dashboard: &mut Map<String, Value>) {
        if self.constants.is_empty() {
            return;
        }
        for value in dashboard.values_mut() {
            walk_strings(value, &mut |text| {
                for (name, constant) in &self.constants {
                    *text = text.replace(&format!("${{{name}}}"), constant);
                }
            });
        }
    }

    /// The plugin id of the data source input `name`, if the export has one.
    fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }
}

fn walk_strings(value: &mut Value, edit: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(text) => edit(text),
        Value::Array(items) => items.iter_mut().for_each(|v| walk_strings(v, edit)),
        Value::Object(map) => map.values_mut().for_each(|v| walk_strings(v, edit)),
        _ => {}
    }
}

/// `NAME` of `${NAME}` or `$NAME`, if `text` is exactly one variable.
fn variable_name(text: &str) -> Option<&str> {
    let name = text
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .or_else(|| text.strip_prefix('$'))?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

/// The library panels the export carries (`__elements`, keyed by uid in
/// Grafana 8.5 and later): uid → the panel's model.
fn library_panels(dashboard: &Map<String, Value>) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    let elements: Vec<&Value> = match dashboard.get("__elements") {
        Some(Value::Object(map)) => map.values().collect(),
        Some(Value::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    for element in elements {
        let uid = element.get("uid").and_then(Value::as_str);
        let model = element.get("model").filter(|m| m.is_object());
        if let (Some(uid), Some(model)) = (uid, model) {
            found.insert(uid.to_string(), model.clone());
        }
    }
    found
}

/// Converts the `rows` of schema versions before 16 into `panels`: a row
/// panel for each row that showed its title or could collapse, each panel
/// `span` (of 12) made `w` (of 24), left to right, wrapping when a line is
/// full; a collapsed row keeps its panels inside the row panel.
fn flatten_rows(dashboard: &mut Map<String, Value>) {
    let rows = match dashboard.remove("rows") {
        Some(Value::Array(rows)) => rows,
        _ => Vec::new(),
    };
    let mut next_id = max_panel_id(&rows) + 1;
    let mut panels: Vec<Value> = Vec::new();
    let mut y = 0;
    for row in rows {
        let flag = |key: &str| row.get(key).and_then(Value::as_bool).unwrap_or(false);
        let collapsed = flag("collapse");
        let titled = flag("showTitle") || collapsed;
        let row_y = y;
        if titled {
            y += 1;
        }
        let row_height = grid_height(row.get("height"));
        let (mut x, mut line_height) = (0, 0);
        let mut placed = Vec::new();
        let members = row.get("panels").and_then(Value::as_array).cloned();
        for mut panel in members.unwrap_or_default() {
            let Some(object) = panel.as_object_mut() else {
                continue;
            };
            let span = object
                .remove("span")
                .and_then(|s| s.as_f64())
                .unwrap_or(12.0);
            let w = ((span * 2.0).round() as u64).clamp(1, GRID_COLUMNS);
            let h = object
                .remove("height")
                .map(|h| grid_height(Some(&h)))
                .unwrap_or(row_height);
            if x + w > GRID_COLUMNS {
                (x, y) = (0, y + line_height);
                line_height = 0;
            }
            object.insert("gridPos".into(), json!({"x": x, "y": y, "w": w, "h": h}));
            x += w;
            line_height = line_height.max(h);
            placed.push(panel);
        }
        y += line_height;
        if !titled {
            panels.extend(placed);
            continue;
        }
        let inside = if collapsed {
            // The panels of a collapsed row take no room until it is opened.
            y = row_y + 1;
            std::mem::take(&mut placed)
        } else {
            Vec::new()
        };
        panels.push(json!({
            "type": "row",
            "id": next_id,
            "title": row.get("title").cloned().unwrap_or(json!("")),
            "collapsed": collapsed,
            "gridPos": {"x": 0, "y": row_y, "w": GRID_COLUMNS, "h": 1},
            "panels": inside,
        }));
        next_id += 1;
        panels.extend(placed);
    }
    dashboard.insert("panels".into(), Value::Array(panels));
    dashboard.insert("schemaVersion".into(), json!(GRID_SCHEMA_VERSION));
}

fn max_panel_id(rows: &[Value]) -> u64 {
    rows.iter()
        .filter_map(|row| row.get("panels").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("id").and_then(Value::as_u64))
        .max()
        .unwrap_or(0)
}

/// An old height ("250px", "250" or 250) in grid units.
fn grid_height(height: Option<&Value>) -> u64 {
    let pixels = match height {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().trim_end_matches("px").trim().parse().ok(),
        _ => None,
    }
    .filter(|p: &f64| p.is_finite() && *p > 0.0)
    .unwrap_or(DEFAULT_ROW_PIXELS);
    ((pixels / GRID_ROW_PIXELS).ceil() as u64).max(1)
}

/// Where a reference points, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Mapped to one of the box's data sources.
    Mapped(Language),
    /// A datasource variable of the dashboard (`$datasource`) that lists
    /// sources of this type: left as it is, since the variable picks the
    /// provisioned source by default.
    Variable(Language),
    /// The default data source (`null`, `"default"`, nothing): the
    /// provisioned Prometheus unless the query is LogQL.
    Default,
    /// A source named without its type (a bare name before Grafana 8.3):
    /// its type comes from the query's shape.
    Untyped(String),
    /// Grafana's own pseudo sources (`-- Grafana --`, `-- Dashboard --`,
    /// `-- Mixed --`): kept.
    Builtin,
    /// Cannot be mapped: why.
    Unmapped(String),
}

struct Resolver<'a> {
    inputs: &'a Inputs,
    /// Datasource variables of the dashboard: name → plugin id.
    variables: BTreeMap<String, String>,
    loki: bool,
}

const BUILTIN_SOURCES: [&str; 6] = [
    "-- Grafana --",
    "-- Mixed --",
    "-- Dashboard --",
    "grafana",
    "datasource",
    "dashboard",
];

impl Resolver<'_> {
    fn read(&self, reference: Option<&Value>) -> Target {
        match reference {
            None | Some(Value::Null) => Target::Default,
            Some(Value::String(text)) => self.named(text, None),
            Some(Value::Object(object)) => {
                let text = |key: &str| object.get(key).and_then(Value::as_str);
                let uid = text("uid").unwrap_or_default();
                match text("type").filter(|t| !t.is_empty()) {
                    Some(plugin) if BUILTIN_SOURCES.contains(&plugin) => Target::Builtin,
                    Some(plugin) if variable_name(plugin).is_some() || uid.starts_with('$') => {
                        self.named(uid, Some(plugin))
                    }
                    Some(plugin) => self.typed(plugin, &format!("\"{uid}\"")),
                    None => self.named(uid, None),
                }
            }
            Some(other) => Target::Unmapped(format!("a data source reference {other}")),
        }
    }

    /// A reference by name, uid or variable; `plugin` when the object said one.
    fn named(&self, text: &str, plugin: Option<&str>) -> Target {
        if text.is_empty() || text == "default" {
            return plugin.map_or(Target::Default, |p| self.typed(p, "the default"));
        }
        if BUILTIN_SOURCES.contains(&text) {
            return Target::Builtin;
        }
        if let Some(name) = variable_name(text) {
            if let Some(plugin) = self.inputs.source(name) {
                return self.typed(plugin, &format!("input {text}"));
            }
            return match self.variables.get(name).map(|p| Language::of_type(p)) {
                Some(Some(language)) if self.offers(language) => Target::Variable(language),
                Some(_) => Target::Unmapped(format!(
                    "data source variable {text} lists sources of type {}",
                    self.variables[name]
                )),
                None => Target::Unmapped(format!(
                    "data source {text} is neither an input of the export nor a variable of the dashboard"
                )),
            };
        }
        Target::Untyped(text.to_string())
    }

    fn typed(&self, plugin: &str, what: &str) -> Target {
        match Language::of_type(plugin) {
            Some(language) if self.offers(language) => Target::Mapped(language),
            Some(_) => Target::Unmapped(format!(
                "data source {what} is a Loki source, and Loki is turned off on this box"
            )),
            None => Target::Unmapped(format!(
                "data source {what} is of type {plugin}, which this box does not run"
            )),
        }
    }

    fn offers(&self, language: Language) -> bool {
        language == Language::Prometheus || self.loki
    }

    /// The language of a target whose source is `target`, given the query
    /// fields it carries; `None` when it cannot be mapped (with why).
    fn settle(&self, target: &Target, query: Option<&str>, logs_panel: bool) -> Settled {
        let shape = || match query {
            Some(expr) if logs_panel || looks_like_logql(expr) => Some(Language::Loki),
            Some(_) => Some(Language::Prometheus),
            None => None,
        };
        match target {
            Target::Mapped(language) => Settled::Rewrite(*language),
            Target::Variable(language) => Settled::Keep(Some(*language)),
            Target::Builtin => Settled::Keep(None),
            Target::Unmapped(why) => Settled::Unmapped(why.clone()),
            Target::Default => match shape() {
                Some(language) if self.offers(language) => Settled::Rewrite(language),
                Some(_) => Settled::Unmapped(
                    "a LogQL query on the default data source, and Loki is turned off".into(),
                ),
                // No query to go by: the default is Prometheus here.
                None => Settled::Rewrite(Language::Prometheus),
            },
            Target::Untyped(name) => match name_hint(name).or_else(shape) {
                Some(language) if self.offers(language) => Settled::Rewrite(language),
                Some(_) => Settled::Unmapped(format!(
                    "data source \"{name}\" is a Loki source, and Loki is turned off on this box"
                )),
                None => Settled::Unmapped(format!(
                    "data source \"{name}\" is of a type the export does not say and its queries do not show"
                )),
            },
        }
    }
}

enum Settled {
    Rewrite(Language),
    Keep(Option<Language>),
    Unmapped(String),
}

/// The type a data source's name gives away, if it does.
fn name_hint(name: &str) -> Option<Language> {
    let name = name.to_ascii_lowercase();
    if name.contains("loki") {
        Some(Language::Loki)
    } else if ["prom", "thanos", "mimir", "cortex", "victoria"]
        .iter()
        .any(|hint| name.contains(hint))
    {
        Some(Language::Prometheus)
    } else {
        None
    }
}

/// Whether an expression is LogQL: a stream selector followed by a line
/// filter or a parser stage, which PromQL has no syntax for.
fn looks_like_logql(expr: &str) -> bool {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| {
            regex::Regex::new(
                r"\}\s*(\|=|\|~|!=|!~|\|\s*(json|logfmt|pattern|regexp|unpack|line_format|label_format|unwrap|drop|keep|decolorize)\b)",
            )
            .expect("a valid regex")
        })
        .is_match(expr)
}

/// Datasource variables of the dashboard: name → the plugin id they list.
fn datasource_variables(dashboard: &Map<String, Value>) -> BTreeMap<String, String> {
    variables(dashboard)
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("datasource"))
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?;
            let plugin = v.get("query")?.as_str()?;
            Some((name.to_string(), plugin.to_string()))
        })
        .collect()
}

fn variables(dashboard: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    dashboard
        .get("templating")
        .and_then(|t| t.get("list"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Normalizes one panel (and a row's panels); returns how many panels it
/// counts, row panels not included.
fn normalize_panel(
    panel: &mut Value,
    elements: &BTreeMap<String, Value>,
    resolver: &Resolver,
    notes: &mut Notes,
) -> usize {
    inline_library_panel(panel, elements, notes);
    let title = panel
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("(untitled)")
        .to_string();
    if panel.get("type").and_then(Value::as_str) == Some("row") {
        let mut counted = 0;
        if let Some(children) = panel.get_mut("panels").and_then(Value::as_array_mut) {
            for child in children {
                counted += normalize_panel(child, elements, resolver, notes);
            }
        }
        return counted;
    }
    if panel.get("libraryPanel").is_some() {
        // Not carried by the export: Grafana shows it if it has one by that uid.
        return 1;
    }
    let logs_panel = panel.get("type").and_then(Value::as_str) == Some("logs");
    let panel_source = resolver.read(panel.get("datasource"));
    let mut languages = BTreeSet::new();
    let targets = panel.get_mut("targets").and_then(Value::as_array_mut);
    for target in targets.into_iter().flatten() {
        let Some(object) = target.as_object_mut() else {
            continue;
        };
        let own = match object.get("datasource") {
            None | Some(Value::Null) => None,
            some => Some(resolver.read(some)),
        };
        let source = match (&own, &panel_source) {
            (Some(own), _) => own.clone(),
            (None, Target::Builtin) => Target::Default,
            (None, inherited) => inherited.clone(),
        };
        let expr = object
            .get("expr")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ref_id = object
            .get("refId")
            .and_then(Value::as_str)
            .unwrap_or("A")
            .to_string();
        let language = match resolver.settle(&source, expr.as_deref(), logs_panel) {
            Settled::Rewrite(language) => {
                object.insert("datasource".into(), language.reference());
                Some(language)
            }
            Settled::Keep(language) => language,
            Settled::Unmapped(why) => {
                notes.panel_unmapped(&title, format!("panel \"{title}\" query {ref_id}: {why}"));
                None
            }
        };
        if let Some(language) = language {
            languages.insert(language);
            if let Some(expr) = expr.filter(|e| !e.trim().is_empty()) {
                notes.queries.push(Query {
                    panel: title.clone(),
                    ref_id,
                    language,
                    expr,
                });
            }
        }
    }
    rewrite_panel_source(panel, &panel_source, &languages, resolver, &title, notes);
    1
}

/// The panel's own reference: the one source its queries use, `-- Mixed --`
/// when they use two, unchanged when it is a variable or Grafana's own.
fn rewrite_panel_source(
    panel: &mut Value,
    source: &Target,
    languages: &BTreeSet<Language>,
    resolver: &Resolver,
    title: &str,
    notes: &mut Notes,
) {
    let Some(object) = panel.as_object_mut() else {
        return;
    };
    let reference = match (source, languages.len()) {
        (Target::Builtin | Target::Variable(_), _) => return,
        // A panel that queries nothing (text, news) needs no source.
        (Target::Default, 0) if !object.contains_key("datasource") => return,
        (_, 2) => json!({"type": "datasource", "uid": "-- Mixed --"}),
        (_, 1) => languages
            .iter()
            .next()
            .map(|l| l.reference())
            .unwrap_or_default(),
        // No query said: go by the reference alone.
        (_, _) => match resolver.settle(source, None, false) {
            Settled::Rewrite(language) => language.reference(),
            Settled::Keep(_) => return,
            // Said once, for its queries, when they had it.
            Settled::Unmapped(why) => {
                if !notes.unmapped_panels.contains(title) {
                    notes.panel_unmapped(title, format!("panel \"{title}\": {why}"));
                }
                return;
            }
        },
    };
    object.insert("datasource".into(), reference);
}

/// Replaces a reference to a library panel the export carries by the panel
/// itself (keeping its place and id); reports one it does not carry.
fn inline_library_panel(panel: &mut Value, elements: &BTreeMap<String, Value>, notes: &mut Notes) {
    let Some(reference) = panel.get("libraryPanel") else {
        return;
    };
    let uid = reference
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = reference
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(uid)
        .to_string();
    let Some(Value::Object(model)) = elements.get(uid) else {
        notes.panel_unmapped(&name, format!(
            "library panel \"{name}\" (uid {uid}) is not in the export: Grafana shows it only if it has a library panel of that uid"
        ));
        return;
    };
    let mut inlined = model.clone();
    inlined.remove("libraryPanel");
    for key in ["gridPos", "id"] {
        if let Some(value) = panel.get(key) {
            inlined.insert(key.into(), value.clone());
        }
    }
    *panel = Value::Object(inlined);
    notes.changes.push(format!(
        "library panel \"{name}\" was inlined from the export"
    ));
}

/// Datasource references of query variables (and the datasource variables
/// themselves, which only name a type).
fn normalize_templating(
    dashboard: &mut Map<String, Value>,
    resolver: &Resolver,
    notes: &mut Notes,
) {
    let list = dashboard
        .get_mut("templating")
        .and_then(|t| t.get_mut("list"))
        .and_then(Value::as_array_mut);
    for variable in list.into_iter().flatten() {
        let Some(object) = variable.as_object_mut() else {
            continue;
        };
        if object.get("type").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let source = resolver.read(object.get("datasource"));
        match resolver.settle(&source, None, false) {
            Settled::Rewrite(language) => {
                object.insert("datasource".into(), language.reference());
            }
            Settled::Keep(_) => {}
            Settled::Unmapped(why) => notes.unmapped(format!("variable ${name}: {why}")),
        }
    }
}

/// Annotation queries' references (Grafana's own annotations stay).
fn normalize_annotations(
    dashboard: &mut Map<String, Value>,
    resolver: &Resolver,
    notes: &mut Notes,
) {
    let list = dashboard
        .get_mut("annotations")
        .and_then(|t| t.get_mut("list"))
        .and_then(Value::as_array_mut);
    for annotation in list.into_iter().flatten() {
        let Some(object) = annotation.as_object_mut() else {
            continue;
        };
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let source = resolver.read(object.get("datasource"));
        let expr = object.get("expr").and_then(Value::as_str);
        match resolver.settle(&source, expr, false) {
            Settled::Rewrite(language) => {
                object.insert("datasource".into(), language.reference());
            }
            Settled::Keep(_) => {}
            Settled::Unmapped(why) => notes.unmapped(format!("annotation \"{name}\": {why}")),
        }
    }
}

/// Keeps the export's uid unless it is missing, not one Grafana accepts, or
/// taken; then derives one from the title (and a number when that is taken).
fn settle_uid(
    dashboard: &mut Map<String, Value>,
    title: &str,
    taken: &BTreeSet<String>,
    notes: &mut Notes,
) -> String {
    let exported = dashboard
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let valid = is_uid(&exported);
    let base = if valid { exported.clone() } else { slug(title) };
    let mut uid = base.clone();
    let mut n = 1;
    while taken.contains(&uid) {
        n += 1;
        let suffix = format!("-{n}");
        let keep = base.len().min(MAX_UID_LENGTH - suffix.len());
        uid = format!("{}{suffix}", &base[..keep]);
    }
    if exported.is_empty() {
        notes
            .changes
            .push(format!("the export had no uid: it was given \"{uid}\""));
    } else if !valid {
        notes.changes.push(format!(
            "uid \"{exported}\" is not one Grafana accepts (letters, digits, - and _, at most {MAX_UID_LENGTH}): it was given \"{uid}\""
        ));
    } else if uid != exported {
        notes.changes.push(format!(
            "uid \"{exported}\" is taken by another dashboard on this box: it was imported as \"{uid}\""
        ));
    }
    dashboard.insert("uid".into(), json!(uid));
    uid
}

/// Whether Grafana accepts `uid`.
pub fn is_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= MAX_UID_LENGTH
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A uid from a title: lower-case letters and digits, dashes between words.
fn slug(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug
        .trim_end_matches('-')
        .chars()
        .take(MAX_UID_LENGTH)
        .collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "imported".into()
    } else {
        slug
    }
}

fn tag(dashboard: &mut Map<String, Value>) {
    let tags = dashboard
        .entry("tags")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tags.is_array() {
        *tags = Value::Array(Vec::new());
    }
    if let Some(list) = tags.as_array_mut() {
        if !list.iter().any(|t| t == IMPORTED_TAG) {
            list.push(json!(IMPORTED_TAG));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            serde_json::from_str::<Value>(include_str!(concat!(
                "../../tests/fixtures/grafana-exports/",
                $name
            )))
            .unwrap()
        };
    }

    fn builtin() -> BTreeSet<String> {
        ["obsbox-infrastructure", "obsbox-appliance"]
            .map(String::from)
            .into()
    }

    fn run(exported: Value) -> Normalized {
        run_with(exported, true)
    }

    fn run_with(exported: Value, loki: bool) -> Normalized {
        let taken = builtin();
        normalize(
            exported,
            &Context {
                loki,
                taken: &taken,
            },
        )
        .unwrap()
    }

    /// Every panel, those inside rows included, by title.
    fn panel<'a>(dashboard: &'a Value, title: &str) -> &'a Value {
        fn find<'a>(panels: &'a Value, title: &str) -> Option<&'a Value> {
            panels.as_array()?.iter().find_map(|p| {
                if p["title"] == title {
                    Some(p)
                } else {
                    find(&p["panels"], title)
                }
            })
        }
        find(&dashboard["panels"], title).unwrap_or_else(|| panic!("no panel {title}"))
    }

    fn prometheus() -> Value {
        json!({"type": "prometheus", "uid": "prometheus"})
    }

    fn loki() -> Value {
        json!({"type": "loki", "uid": "loki"})
    }

    fn export_keys_gone(d: &Value) {
        for key in ["__inputs", "__requires", "__elements", "id", "rows"] {
            assert!(d.get(key).is_none(), "{key} is still there");
        }
    }

    #[test]
    fn a_schema_14_rows_layout_becomes_panels_on_the_grid() {
        let n = run(fixture!("grafana4-rows.json"));
        let d = &n.dashboard;
        export_keys_gone(d);
        assert_eq!(d["schemaVersion"], 16);
        let top: Vec<(&str, &Value)> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["title"].as_str().unwrap(), &p["gridPos"]))
            .collect();
        assert_eq!(
            top,
            [
                ("CPU", &json!({"x": 0, "y": 0, "w": 24, "h": 1})),
                // 250 px in rows of 38 px.
                ("CPU busy", &json!({"x": 0, "y": 1, "w": 12, "h": 7})),
                ("Load", &json!({"x": 12, "y": 1, "w": 12, "h": 7})),
                // A row that hid its title gets no row panel.
                (
                    "Memory available",
                    &json!({"x": 0, "y": 8, "w": 24, "h": 8})
                ),
                ("Disks", &json!({"x": 0, "y": 16, "w": 24, "h": 1})),
            ]
        );
        let disks = panel(d, "Disks");
        assert_eq!(
            (disks["type"].as_str(), disks["collapsed"].as_bool()),
            (Some("row"), Some(true))
        );
        let inside: Vec<&Value> = disks["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["gridPos"])
            .collect();
        assert_eq!(
            inside,
            [
                &json!({"x": 0, "y": 17, "w": 8, "h": 6}),
                &json!({"x": 8, "y": 17, "w": 16, "h": 6}),
            ]
        );
        let ids: BTreeSet<u64> = [panel(d, "CPU"), disks]
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            BTreeSet::from([6, 7]),
            "row panels get ids after the panels'"
        );
        assert!(panel(d, "CPU busy").get("span").is_none());
        // null and "Prometheus" both become the provisioned Prometheus.
        for title in ["CPU busy", "Load", "Memory available", "Disk reads"] {
            let p = panel(d, title);
            assert_eq!(p["datasource"], prometheus(), "{title}");
            assert_eq!(p["targets"][0]["datasource"], prometheus(), "{title}");
        }
        assert_eq!(d["templating"]["list"][0]["datasource"], prometheus());
        assert_eq!((n.panels, n.queries.len()), (5, 5));
        assert!(n.unmapped.is_empty(), "{:?}", n.unmapped);
        assert!(
            n.changes[0].contains("schema version 14"),
            "{:?}",
            n.changes
        );
        assert_eq!(n.uid, "legacy-node-overview", "no uid: one from the title");
        assert_eq!(d["tags"], json!(["node", "imported"]));
    }

    #[test]
    fn inputs_of_an_external_export_map_and_go() {
        let n = run(fixture!("grafana6-inputs.json"));
        let d = &n.dashboard;
        export_keys_gone(d);
        assert_eq!(n.uid, "node-overview-7");
        let scrape = panel(d, "Scrape health");
        assert_eq!(scrape["datasource"], prometheus());
        assert_eq!(scrape["targets"][0]["datasource"], prometheus());
        // The constant input is filled in.
        assert_eq!(
            scrape["targets"][0]["expr"],
            "up{job=\"node\", instance=~\"$instance\"}"
        );
        assert_eq!(d["templating"]["list"][0]["datasource"], prometheus());
        // Grafana's own annotation stays Grafana's.
        assert_eq!(d["annotations"]["list"][0]["datasource"], "-- Grafana --");
        assert_eq!(n.queries.len(), 2);
        assert!(n.queries.iter().all(|q| q.language == Language::Prometheus));
        assert!(n.unmapped.is_empty(), "{:?}", n.unmapped);
        assert!(!serde_json::to_string(d).unwrap().contains("DS_PROMETHEUS"));
    }

    #[test]
    fn datasource_objects_library_panels_loki_and_mixed_panels() {
        let n = run(fixture!("grafana9-elements.json"));
        let d = &n.dashboard;
        export_keys_gone(d);
        let uptime = panel(d, "Uptime");
        assert_eq!(uptime["type"], "stat");
        assert_eq!(uptime["gridPos"], json!({"h": 4, "w": 6, "x": 12, "y": 0}));
        assert_eq!(uptime["id"], 2);
        assert!(uptime.get("libraryPanel").is_none());
        assert_eq!(uptime["targets"][0]["datasource"], prometheus());
        assert!(n
            .changes
            .iter()
            .any(|c| c.contains("\"Uptime stat\" was inlined")));
        let errors = panel(d, "Errors");
        assert_eq!(errors["datasource"], loki());
        assert_eq!(errors["targets"][0]["datasource"], loki());
        let mixed = panel(d, "Samples and log lines");
        assert_eq!(mixed["datasource"]["uid"], "-- Mixed --");
        assert_eq!(mixed["targets"][0]["datasource"], prometheus());
        assert_eq!(mixed["targets"][1]["datasource"], loki());
        assert_eq!(panel(d, "Targets up")["datasource"], prometheus());
        assert_eq!(n.panels, 5);
        let languages: Vec<(&str, Language)> = n
            .queries
            .iter()
            .map(|q| (q.ref_id.as_str(), q.language))
            .collect();
        assert_eq!(
            languages,
            [
                ("A", Language::Prometheus),
                ("A", Language::Prometheus),
                ("A", Language::Loki),
                ("A", Language::Prometheus),
                ("B", Language::Loki),
                ("A", Language::Prometheus),
            ]
        );
        assert!(n.unmapped.is_empty(), "{:?}", n.unmapped);
    }

    #[test]
    fn without_loki_its_references_are_reported() {
        let n = run_with(fixture!("grafana9-elements.json"), false);
        assert!(n.queries.iter().all(|q| q.language == Language::Prometheus));
        assert_eq!(
            n.unmapped_panels,
            BTreeSet::from(["Errors".to_string(), "Samples and log lines".to_string()])
        );
        assert!(
            n.unmapped[0].contains("Loki is turned off"),
            "{:?}",
            n.unmapped
        );
    }

    #[test]
    fn what_cannot_map_is_reported_and_a_taken_uid_renamed() {
        let n = run(fixture!("grafana10-uids.json"));
        let d = &n.dashboard;
        export_keys_gone(d);
        assert_eq!(n.uid, "obsbox-infrastructure-2");
        assert_eq!(d["uid"], "obsbox-infrastructure-2");
        assert!(n
            .changes
            .iter()
            .any(|c| c.contains("\"obsbox-infrastructure\" is taken")));
        // The old instance's uid is the provisioned Prometheus here.
        assert_eq!(panel(d, "Scrape durations")["datasource"], prometheus());
        // InfluxDB is left as it was, and said.
        let influx = panel(d, "Room temperature");
        assert_eq!(influx["datasource"]["type"], "influxdb");
        assert_eq!(
            n.unmapped,
            [
                "panel \"Room temperature\" query A: data source \"influx-home\" is of type influxdb, which this box does not run",
                "library panel \"UPS load\" (uid lib-ups) is not in the export: Grafana shows it only if it has a library panel of that uid",
            ]
        );
        assert_eq!(
            n.unmapped_panels,
            BTreeSet::from(["Room temperature".to_string(), "UPS load".to_string()])
        );
        assert_eq!((n.panels, n.queries.len()), (3, 1));
    }

    #[test]
    fn sources_by_name_by_default_and_by_variable() {
        let n = run(fixture!("grafana8-names.json"));
        let d = &n.dashboard;
        assert_eq!(
            panel(d, "Memory by job")["targets"][0]["datasource"],
            prometheus()
        );
        assert_eq!(panel(d, "Memory by job")["datasource"], prometheus());
        assert_eq!(panel(d, "Log lines")["targets"][0]["datasource"], loki());
        assert_eq!(panel(d, "Targets")["datasource"], prometheus());
        // The variable picks the provisioned Prometheus by default: kept.
        assert_eq!(panel(d, "Picked source")["datasource"], "$datasource");
        assert_eq!(d["annotations"]["list"][0]["datasource"], prometheus());
        let languages: Vec<Language> = n.queries.iter().map(|q| q.language).collect();
        assert_eq!(
            languages,
            [
                Language::Prometheus,
                Language::Loki,
                Language::Prometheus,
                Language::Prometheus
            ]
        );
        assert!(n.unmapped.is_empty(), "{:?}", n.unmapped);
    }

    #[test]
    fn an_untyped_name_goes_by_its_query() {
        let exported = json!({"title": "t", "panels": [
            {"title": "promql", "datasource": "Home", "targets": [{"refId": "A", "expr": "up"}]},
            {"title": "logql", "datasource": "Home logs", "targets": [{"refId": "A", "expr": "{app=\"x\"} |= \"y\""}]},
            {"title": "graphite", "datasource": "Carbon", "targets": [{"refId": "A", "target": "a.b.c"}]},
            {"title": "text", "type": "text"},
        ]});
        let n = run(exported);
        assert_eq!(panel(&n.dashboard, "promql")["datasource"], prometheus());
        assert_eq!(panel(&n.dashboard, "logql")["datasource"], loki());
        assert_eq!(
            n.unmapped,
            ["panel \"graphite\" query A: data source \"Carbon\" is of a type the export does not say and its queries do not show"]
        );
        // A panel without queries (a text panel) needs no source.
        assert!(panel(&n.dashboard, "text").get("datasource").is_none());
    }

    #[test]
    fn the_http_apis_wrapping_is_taken_off_and_non_dashboards_refused() {
        let wrapped = json!({"meta": {"slug": "x"}, "dashboard": {"title": "Wrapped", "uid": "w", "panels": []}});
        assert_eq!(run(wrapped).uid, "w");
        let taken = BTreeSet::new();
        let context = Context {
            loki: true,
            taken: &taken,
        };
        assert_eq!(
            normalize(json!([1]), &context),
            Err(NormalizeError::NotADashboard)
        );
        assert_eq!(
            normalize(json!({"apiVersion": 1, "datasources": []}), &context),
            Err(NormalizeError::NotADashboard)
        );
        assert_eq!(
            normalize(json!({"title": " ", "panels": []}), &context),
            Err(NormalizeError::NoTitle)
        );
    }

    #[test]
    fn uids_grafana_refuses_are_replaced() {
        let n = run(json!({"title": "Über Dashboard!", "uid": "has space", "panels": []}));
        assert_eq!(n.uid, "ber-dashboard");
        let long = "x".repeat(45);
        let taken = BTreeSet::from(["x".repeat(40)]);
        let n = normalize(
            json!({"title": long, "panels": []}),
            &Context {
                loki: true,
                taken: &taken,
            },
        )
        .unwrap();
        assert_eq!(n.uid, format!("{}-2", "x".repeat(38)));
        assert!(is_uid(&n.uid));
    }
}
