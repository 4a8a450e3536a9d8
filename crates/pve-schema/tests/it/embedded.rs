//! Whole-schema tests of the embedded `pve-apidoc.json`.

use pve_schema::{embedded, FindError};
use serde_json::{Map, Value};

/// A concrete value for a path placeholder: recognisable values for the common ones, and values
/// that cannot collide with literal path components for the rest.
fn concrete(name: &str) -> String {
    match name {
        "node" => "pve".into(),
        "vmid" => "101".into(),
        "storage" => "local".into(),
        "volume" => "local:backup/vzdump-lxc-101.tar.zst".into(),
        "upid" => "UPID:pve:00001234:00005678:6650A1B2:vzdump:101:felhom@pve!agent:".into(),
        other => format!("zz-{other}-1"),
    }
}

fn concrete_path(template: &str) -> String {
    template
        .split('/')
        .map(
            |c| match c.strip_prefix('{').and_then(|c| c.strip_suffix('}')) {
                Some(name) => concrete(name),
                None => c.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn all_281_patterns_compile() {
    let tree: Value = serde_json::from_str(pve_schema::EMBEDDED_JSON).expect("schema is JSON");
    let patterns = pve_schema::patterns(&tree);
    assert_eq!(patterns.len(), 281, "pattern occurrences in the 9.1 schema");
    for p in &patterns {
        if let Err(err) = pve_schema::compile_pattern(p) {
            panic!("pattern {p:?} does not compile: {err}");
        }
    }
}

#[test]
fn every_method_is_found_from_a_concrete_path() {
    let schema = embedded();
    let mut count = 0;
    for (method, template) in schema.endpoints() {
        let path = concrete_path(template);
        let ep = schema
            .find(method, &path)
            .unwrap_or_else(|e| panic!("{method} {path} ({template}): {e}"));
        assert_eq!(ep.template, template, "{method} {path}");
        assert_eq!(ep.method, method);
        for (name, value) in &ep.path_params {
            assert_eq!(*value, concrete(name), "{method} {path}: {name}");
        }
        count += 1;
    }
    assert_eq!(count, 649, "methods in the 9.1 schema");
}

#[test]
fn empty_parameters_only_report_required_non_path_parameters() {
    let schema = embedded();
    for (method, template) in schema.endpoints() {
        let ep = schema
            .find(method, &concrete_path(template))
            .expect("found");
        let report = ep.check_params(&Map::new());
        let props = ep.info["parameters"]["properties"].as_object();
        for (key, msg) in &report.errors.0 {
            let prop = props.and_then(|p| p.get(key));
            assert!(
                prop.is_some(),
                "{method} {template}: unexpected key {key}: {msg}"
            );
            // Path parameters are present (their placeholder values may fail a format or
            // pattern); every other key can only be a missing required parameter.
            if !ep.path_params.contains_key(key) {
                assert_eq!(
                    msg, "property is missing and it is not optional",
                    "{method} {template}"
                );
            }
        }
        // Responses of any shape never panic either.
        for data in [
            Value::Null,
            serde_json::json!({}),
            serde_json::json!([1, "x"]),
            serde_json::json!("s"),
        ] {
            let _ = ep.validate_returns(&data);
        }
    }
}

#[test]
fn lxc_create_requires_vmid_and_ostemplate() {
    let ep = embedded().find("POST", "/nodes/pve/lxc").expect("found");
    let errors = ep.validate_params(&Map::new()).expect_err("invalid");
    let keys: Vec<&str> = errors.0.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ostemplate", "vmid"]);
    assert!(!ep.allowtoken() || ep.permissions().is_some());
    assert_eq!(ep.returns()["type"], "string");
}

#[test]
fn find_resolves_volumes_methods_and_literals() {
    let schema = embedded();
    let ep = schema
        .find(
            "get",
            "/nodes/pve/storage/local/content/local:backup/ct/101/2026-05-01T10:00:00Z",
        )
        .expect("volume with slashes is one component");
    assert_eq!(
        ep.template,
        "/nodes/{node}/storage/{storage}/content/{volume}"
    );
    assert_eq!(
        ep.path_params["volume"],
        "local:backup/ct/101/2026-05-01T10:00:00Z"
    );

    let ep = schema
        .find("GET", "//nodes/pve//lxc/101/status/current")
        .expect("found");
    assert_eq!(ep.template, "/nodes/{node}/lxc/{vmid}/status/current");

    assert_eq!(
        schema.find("GET", "/nodes/pve/nonsense/x/y/z/w").err(),
        Some(FindError::NoSuchPath)
    );
    assert_eq!(
        schema.find("PATCH", "/nodes/pve/lxc").err(),
        Some(FindError::NoSuchMethod)
    );
    assert_eq!(
        schema.find("DELETE", "/version").err(),
        Some(FindError::NoSuchMethod)
    );
    assert!(schema.find("GET", "/").is_err());
}

#[test]
fn param_schema_resolves_indexed_names_within_lxc_limits() {
    let ep = embedded()
        .find("PUT", "/nodes/pve/lxc/101/config")
        .expect("found");
    assert!(ep.param_schema("net31").is_some());
    assert!(ep.param_schema("net32").is_none());
    assert!(ep.param_schema("mp255").is_some());
    assert!(ep.param_schema("mp256").is_none());
    assert!(ep.param_schema("net[n]").is_none());
    assert_eq!(
        ep.param_schema("onboot").map(|s| &s["type"]),
        Some(&Value::from("boolean"))
    );
    // Outside the LXC subtree any index is accepted (qemu has its own limits, not mirrored).
    let qm = embedded()
        .find("PUT", "/nodes/pve/qemu/100/config")
        .expect("found");
    assert!(qm.param_schema("net40").is_some());
}

#[test]
fn property_params_parse_like_pve_stores_them() {
    let ep = embedded()
        .find("PUT", "/nodes/pve/lxc/101/config")
        .expect("found");
    let net = ep
        .parse_property_param("net0", "name=eth0,bridge=vmbr0,firewall=yes,ip=dhcp")
        .expect("valid");
    assert_eq!(net["name"], "eth0");
    assert_eq!(net["firewall"], "1");
    let mp = ep
        .parse_property_param("mp3", "local-lvm:8,mp=/srv,backup=off")
        .expect("valid");
    assert_eq!(mp["volume"], "local-lvm:8");
    assert_eq!(mp["backup"], "0");
    let err = ep
        .parse_property_param("net0", "name=eth0,mtu=10")
        .expect_err("invalid");
    assert_eq!(
        err,
        "format error\nnet0.mtu: value must have a minimum value of 64\n"
    );
    assert!(
        ep.parse_property_param("onboot", "1").is_err(),
        "not a property string"
    );

    let vz = embedded().find("POST", "/nodes/pve/vzdump").expect("found");
    let prune = vz.param_schema("prune-backups").expect("exists");
    let parsed = pve_schema::parse_property_string(&prune["format"], "keep-last=3,keep-daily=7")
        .expect("valid");
    assert_eq!(parsed["keep-last"], "3");
    assert_eq!(
        pve_schema::parse_property_string(&prune["format"], "keep-all=1,keep-last=3").unwrap_err(),
        "keep-all cannot be set together with other options."
    );
}

#[test]
fn returns_objects_allow_extra_keys_unless_forbidden() {
    let ep = embedded()
        .find("GET", "/nodes/pve/lxc/101/status/current")
        .expect("found");
    let data = serde_json::json!({
        "vmid": 101, "status": "running", "ha": {"managed": 0}, "extra-key": 1
    });
    let report = ep.check_returns(&data);
    assert!(
        !report.errors.0.contains_key("extra-key"),
        "{:?}",
        report.errors
    );
    let bad = serde_json::json!({"vmid": "x", "status": "flying"});
    let errors = ep.validate_returns(&bad).expect_err("invalid");
    assert!(errors.0["status"].contains("enumeration"), "{errors:?}");
    assert!(
        errors.0["vmid"].starts_with("type check ('integer')"),
        "{errors:?}"
    );
}

/// Regression: the reference checker reports alias entries as missing properties
/// (`efidisk0.volume: property is missing`); PVE skips aliases and honours keyAlias.
#[test]
fn qemu_aliases_follow_pve_not_the_checker() {
    let ep = embedded()
        .find("POST", "/nodes/pve/qemu/100/config")
        .expect("found");
    let mut params = Map::new();
    params.insert("efidisk0".into(), Value::from("local-lvm:1,efitype=4m"));
    params.insert(
        "net0".into(),
        Value::from("virtio=BC:24:11:00:00:01,bridge=vmbr0"),
    );
    assert_eq!(ep.validate_params(&params), Ok(()));
    let net = ep
        .parse_property_param("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0")
        .expect("valid");
    assert_eq!(net["model"], "virtio");
    assert_eq!(net["macaddr"], "BC:24:11:00:00:01");
    let err = ep
        .parse_property_param("net0", "virtio=BC:24:11:00:00:01,e1000=BC:24:11:00:00:02")
        .expect_err("two models");
    assert_eq!(err, "key alias 'model' is already defined");
}
