//! `felhom-agent check-config`.

use serde_json::{json, Value};

use crate::{check_config, run, valid_config, Fixture, FINGERPRINT, HUB_KEY, TOKEN};

/// Runs check-config and expects failure with exit 2 and exactly one stderr line.
fn expect_error(cmd: &mut std::process::Command) -> String {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(
        !stderr.contains(TOKEN) && !stderr.contains("5ecret"),
        "secret leaked: {stderr}"
    );
    stderr
}

fn expect_ok(cmd: &mut std::process::Command) -> Value {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(!stdout.contains("5ecret"), "token leaked: {stdout}");
    assert!(!stdout.contains(HUB_KEY), "hub key leaked: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn valid_config_prints_redacted_effective_config() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let out = expect_ok(&mut check_config(&path));
    assert_eq!(out["host_id"], "host-1");
    assert_eq!(
        out["proxmox"]["token"],
        json!({"value": "<redacted>", "source": "inline"})
    );
    assert_eq!(
        out["hub"]["api_key"],
        json!({"value": "<redacted>", "source": "inline"})
    );
    assert_eq!(out["proxmox"]["fingerprint"], FINGERPRINT);
    assert_eq!(out["proxmox"]["connect_timeout_s"], 5, "default");
    assert_eq!(out["proxmox"]["request_timeout_s"], 30, "default");
    assert_eq!(out["hub"]["poll_interval_s"], 15);
    assert_eq!(out["local_api"]["listen"], json!(["127.0.0.1:0"]));
    assert_eq!(out["log"], json!({"level": "debug", "format": "json"}));
}

#[test]
fn config_path_from_environment() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let mut cmd = crate::agent();
    cmd.arg("check-config").env("FELHOM_AGENT_CONFIG", &path);
    let out = expect_ok(&mut cmd);
    assert_eq!(out["source"], path.display().to_string());
}

#[test]
fn no_config_path_is_an_error() {
    let err = expect_error(crate::agent().arg("check-config"));
    assert!(
        err.contains("--config") && err.contains("FELHOM_AGENT_CONFIG"),
        "{err}"
    );
}

#[test]
fn unknown_top_level_key_is_named() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["hots_id"] = json!("typo");
    let path = fx.config(&config);
    let err = expect_error(&mut check_config(&path));
    assert!(err.contains("unknown key hots_id"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn unknown_nested_key_is_named() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["proxmox"]["verify_tls"] = json!(false);
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("unknown key proxmox.verify_tls"), "{err}");
}

#[test]
fn unknown_section_is_named() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["tunnel"] = json!({"token": "x"});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("unknown key tunnel"), "{err}");
}

#[test]
fn unknown_environment_variable_is_named() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let err = expect_error(check_config(&path).env("FELHOM_AGENT_PROXMOX_VERIFY", "0"));
    assert!(err.contains("FELHOM_AGENT_PROXMOX_VERIFY"), "{err}");
}

#[test]
fn environment_overrides_file_values() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let out = expect_ok(
        check_config(&path)
            .env("FELHOM_AGENT_PROXMOX_URL", "https://10.1.2.3:8006")
            .env("FELHOM_AGENT_HOST_ID", "host-from-env")
            .env("FELHOM_AGENT_PROXMOX_REQUEST_TIMEOUT_S", "90")
            .env("FELHOM_AGENT_LOCAL_API_LISTEN", "127.0.0.1:1, 127.0.0.2:2")
            .env("FELHOM_AGENT_LOG_FORMAT", "text"),
    );
    assert_eq!(out["proxmox"]["url"], "https://10.1.2.3:8006/");
    assert_eq!(out["host_id"], "host-from-env");
    assert_eq!(out["proxmox"]["request_timeout_s"], 90);
    assert_eq!(
        out["local_api"]["listen"],
        json!(["127.0.0.1:1", "127.0.0.2:2"])
    );
    assert_eq!(out["log"]["format"], "text");
}

#[test]
fn environment_can_supply_a_missing_required_key() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config.as_object_mut().unwrap().remove("host_id");
    let path = fx.config(&config);
    let err = expect_error(&mut check_config(&path));
    assert!(
        err.contains("missing required key host_id") && err.contains("FELHOM_AGENT_HOST_ID"),
        "{err}"
    );
    let out = expect_ok(check_config(&path).env("FELHOM_AGENT_HOST_ID", "h"));
    assert_eq!(out["host_id"], "h");
}

#[test]
fn bad_env_number_names_the_variable() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let err = expect_error(check_config(&path).env("FELHOM_AGENT_HUB_POLL_INTERVAL_S", "soon"));
    assert!(
        err.contains("hub.poll_interval_s") && err.contains("FELHOM_AGENT_HUB_POLL_INTERVAL_S"),
        "{err}"
    );
}

#[test]
fn secret_from_0600_file_works_and_strips_one_newline() {
    let fx = Fixture::new();
    let token_file = fx.write("token", &format!("{TOKEN}\n"), 0o600);
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"file": token_file});
    let out = expect_ok(&mut check_config(&fx.config(&config)));
    assert_eq!(
        out["proxmox"]["token"],
        json!({"value": "<redacted>", "source": "file", "path": token_file})
    );
}

#[test]
fn secret_file_with_two_newlines_keeps_one_and_fails_the_shape_check() {
    // Only one newline is stripped; the token then contains whitespace and is refused, which
    // shows the stripping is exactly one.
    let fx = Fixture::new();
    let token_file = fx.write("token", &format!("{TOKEN}\n\n"), 0o600);
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"file": token_file});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(
        err.contains("proxmox.token") && err.contains("whitespace"),
        "{err}"
    );
}

#[test]
fn world_readable_secret_file_is_refused_naming_path_and_mode() {
    let fx = Fixture::new();
    let token_file = fx.write("token", TOKEN, 0o644);
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"file": token_file});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains(&token_file.display().to_string()), "{err}");
    assert!(
        err.contains("0644") && err.contains("proxmox.token"),
        "{err}"
    );
}

#[test]
fn group_readable_secret_file_is_refused() {
    let fx = Fixture::new();
    let key_file = fx.write("hubkey", HUB_KEY, 0o640);
    let mut config = valid_config();
    config["hub"]["api_key"] = json!({"file": key_file});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("hub.api_key") && err.contains("0640"), "{err}");
}

#[test]
fn missing_secret_file_is_named() {
    let fx = Fixture::new();
    let missing = fx.path("nope/token");
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"file": missing});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("proxmox.token"),
        "{err}"
    );
}

#[test]
fn secret_file_that_is_a_directory_is_refused() {
    let fx = Fixture::new();
    let dir = fx.path("tokendir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"file": dir});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn secret_file_from_environment() {
    let fx = Fixture::new();
    let token_file = fx.write("token", TOKEN, 0o600);
    let path = fx.config(&valid_config());
    let out = expect_ok(check_config(&path).env("FELHOM_AGENT_PROXMOX_TOKEN_FILE", &token_file));
    assert_eq!(out["proxmox"]["token"]["source"], "file");
    assert_eq!(
        out["proxmox"]["token"]["path"],
        token_file.display().to_string()
    );
}

#[test]
fn two_forms_of_one_secret_in_environment_conflict() {
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    let err = expect_error(
        check_config(&path)
            .env("FELHOM_AGENT_PROXMOX_TOKEN", TOKEN)
            .env("FELHOM_AGENT_PROXMOX_TOKEN_FILE", "/x"),
    );
    assert!(err.contains("proxmox.token is set twice"), "{err}");
}

#[test]
fn credential_is_read_from_credentials_directory() {
    let fx = Fixture::new();
    let creds = fx.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("proxmox-token"), TOKEN).unwrap();
    std::fs::set_permissions(
        creds.join("proxmox-token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"credential": "proxmox-token"});
    let path = fx.config(&config);
    let out = expect_ok(check_config(&path).env("CREDENTIALS_DIRECTORY", &creds));
    assert_eq!(
        out["proxmox"]["token"],
        json!({"value": "<redacted>", "source": "credential", "name": "proxmox-token",
               "path": creds.join("proxmox-token")})
    );
}

#[test]
fn credential_from_environment_variable() {
    let fx = Fixture::new();
    let creds = fx.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("hub-key"), HUB_KEY).unwrap();
    std::fs::set_permissions(
        creds.join("hub-key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let path = fx.config(&valid_config());
    let out = expect_ok(
        check_config(&path)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("FELHOM_AGENT_HUB_API_KEY_CREDENTIAL", "hub-key"),
    );
    assert_eq!(out["hub"]["api_key"]["name"], "hub-key");
}

#[test]
fn credential_without_credentials_directory_is_an_error() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"credential": "proxmox-token"});
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(
        err.contains("CREDENTIALS_DIRECTORY") && err.contains("proxmox-token"),
        "{err}"
    );
}

#[test]
fn credential_name_cannot_walk_out() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["proxmox"]["token"] = json!({"credential": "../token"});
    let err =
        expect_error(check_config(&fx.config(&config)).env("CREDENTIALS_DIRECTORY", fx.dir.path()));
    assert!(err.contains("plain file name"), "{err}");
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let fx = Fixture::new();
    let path = fx.write(
        "config.json",
        "{\n  \"host_id\": \"h\",\n  \"state_dir\" \"/x\"\n}\n",
        0o600,
    );
    let err = expect_error(&mut check_config(&path));
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("column"), "{err}");
}

#[test]
fn bad_fingerprint_names_the_key() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["proxmox"]["fingerprint"] = json!("AA:BB:CC");
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("proxmox.fingerprint"), "{err}");
    let mut config = valid_config();
    config["proxmox"]["fingerprint"] = json!(FINGERPRINT.replacen("AA", "GG", 1));
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(
        err.contains("proxmox.fingerprint") && err.contains("byte 1"),
        "{err}"
    );
}

#[test]
fn wrong_types_and_values_name_the_key() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/proxmox/connect_timeout_s",
            json!("ten"),
            "proxmox.connect_timeout_s",
        ),
        (
            "/proxmox/request_timeout_s",
            json!(0),
            "proxmox.request_timeout_s",
        ),
        (
            "/proxmox/url",
            json!("http://127.0.0.1:8006"),
            "proxmox.url",
        ),
        ("/proxmox/token", json!("no-shape"), "proxmox.token"),
        ("/proxmox/token", json!({"path": "/x"}), "proxmox.token"),
        ("/hub/url", json!("ftp://hub"), "hub.url"),
        ("/state_dir", json!("relative/dir"), "state_dir"),
        (
            "/local_api/listen",
            json!(["localhost"]),
            "local_api.listen",
        ),
        ("/log/format", json!("xml"), "log.format"),
        ("/log/level", json!("loud=[[["), "log.level"),
    ];
    for (pointer, value, key) in cases {
        let fx = Fixture::new();
        let mut config = valid_config();
        let (parent, name) = pointer.rsplit_once('/').unwrap();
        config
            .pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()[name] = value.clone();
        let err = expect_error(&mut check_config(&fx.config(&config)));
        assert!(err.contains(key), "{pointer} = {value}: {err}");
    }
}

#[test]
fn hub_section_needs_its_key() {
    let fx = Fixture::new();
    let mut config = valid_config();
    config["hub"].as_object_mut().unwrap().remove("api_key");
    let err = expect_error(&mut check_config(&fx.config(&config)));
    assert!(err.contains("missing required key hub.api_key"), "{err}");
}

#[test]
fn minimal_config_uses_defaults() {
    let fx = Fixture::new();
    let path = fx.config(&json!({
        "host_id": "h", "state_dir": "/s",
        "proxmox": {"url": "https://pve:8006", "node": "n", "token": TOKEN, "fingerprint": FINGERPRINT}
    }));
    let out = expect_ok(&mut check_config(&path));
    assert_eq!(out["hub"], Value::Null);
    assert_eq!(out["local_api"]["listen"], json!([]));
    assert_eq!(out["log"], json!({"level": "info", "format": "text"}));
}

#[test]
fn shipped_example_config_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/config.example.json");
    let fx = Fixture::new();
    let creds = fx.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("proxmox-token"), TOKEN).unwrap();
    std::fs::set_permissions(
        creds.join("proxmox-token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    let hub_key = fx.write("hub-api-key", HUB_KEY, 0o600);
    let out = expect_ok(
        check_config(&example)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("FELHOM_AGENT_HUB_API_KEY_FILE", &hub_key),
    );
    assert_eq!(out["proxmox"]["token"]["source"], "credential");
    assert_eq!(out["hub"]["api_key"]["source"], "file");
}

#[test]
fn authz_bounds_have_defaults_and_limits() {
    let fx = Fixture::new();
    let out = expect_ok(&mut check_config(&fx.config(&valid_config())));
    assert_eq!(
        out["authz"],
        json!({"clock_skew_s": 120, "max_lifetime_s": 86400})
    );

    let mut cfg = valid_config();
    cfg["authz"] = json!({"clock_skew_s": 300, "max_lifetime_s": 3600});
    let out = expect_ok(&mut check_config(&fx.config(&cfg)));
    assert_eq!(
        out["authz"],
        json!({"clock_skew_s": 300, "max_lifetime_s": 3600})
    );

    // A skew of a day or a month-long grant is refused, naming the key.
    cfg["authz"] = json!({"clock_skew_s": 86400});
    let err = expect_error(&mut check_config(&fx.config(&cfg)));
    assert!(
        err.contains("authz.clock_skew_s") && err.contains("at most 3600"),
        "{err}"
    );
    cfg["authz"] = json!({"max_lifetime_s": 2_592_000});
    let err = expect_error(&mut check_config(&fx.config(&cfg)));
    assert!(err.contains("authz.max_lifetime_s"), "{err}");
    cfg["authz"] = json!({"skew": 1});
    let err = expect_error(&mut check_config(&fx.config(&cfg)));
    assert!(err.contains("authz.skew"), "{err}");
}

#[test]
fn hub_pin_cloudflared_and_smart_are_checked_and_named() {
    let fx = Fixture::new();
    let out = expect_ok(&mut check_config(&fx.config(&valid_config())));
    assert_eq!(out["cloudflared"], Value::Null);
    assert_eq!(out["smart"], json!({"devices": [], "interval_s": 21600}));
    assert_eq!(out["hub"]["fingerprint"], Value::Null);

    let mut cfg = valid_config();
    cfg["hub"]["url"] = json!("https://hub.example.invalid");
    cfg["hub"]["fingerprint"] = json!(FINGERPRINT.to_ascii_lowercase());
    cfg["cloudflared"] = json!({"metrics_addr": "127.0.0.1:20241"});
    cfg["smart"] = json!({"devices": ["/dev/sda", "/dev/nvme0n1"], "interval_s": 3600});
    let out = expect_ok(&mut check_config(&fx.config(&cfg)));
    assert_eq!(out["hub"]["fingerprint"], FINGERPRINT.to_ascii_uppercase());
    assert_eq!(out["cloudflared"]["metrics_addr"], "127.0.0.1:20241");
    assert_eq!(out["smart"]["devices"], json!(["/dev/sda", "/dev/nvme0n1"]));

    // The overlay reaches the new keys too (lists comma-separated).
    let out = expect_ok(
        check_config(&fx.config(&cfg))
            .env("FELHOM_AGENT_SMART_DEVICES", "/dev/sdb,/dev/sdc")
            .env("FELHOM_AGENT_CLOUDFLARED_METRICS_ADDR", "[::1]:9000"),
    );
    assert_eq!(out["smart"]["devices"], json!(["/dev/sdb", "/dev/sdc"]));
    assert_eq!(out["cloudflared"]["metrics_addr"], "[::1]:9000");

    // Each bad value is refused, naming the key.
    let cases = [
        ("hub", json!({"fingerprint": "AA:BB"}), "hub.fingerprint"),
        ("smart", json!({"devices": ["/dev/sda1"]}), "smart.devices"),
        (
            "smart",
            json!({"devices": ["/etc/shadow"]}),
            "smart.devices",
        ),
        (
            "smart",
            json!({"devices": ["/dev/../sda"]}),
            "smart.devices",
        ),
        ("smart", json!({"interval_s": 5}), "smart.interval_s"),
        (
            "cloudflared",
            json!({"metrics_addr": "localhost"}),
            "cloudflared.metrics_addr",
        ),
        ("cloudflared", json!({"url": "x"}), "cloudflared.url"),
    ];
    for (section, value, key) in cases {
        let mut cfg = cfg.clone();
        match (section, value) {
            ("hub", serde_json::Value::Object(fields)) => {
                for (k, v) in fields {
                    cfg["hub"][k] = v;
                }
            }
            (section, value) => cfg[section] = value,
        }
        let err = expect_error(&mut check_config(&fx.config(&cfg)));
        assert!(err.contains(key), "{key}: {err}");
    }

    // A pin on plain http would pin nothing.
    let mut cfg = valid_config();
    cfg["hub"]["url"] = json!("http://127.0.0.1:9");
    cfg["hub"]["fingerprint"] = json!(FINGERPRINT);
    let err = expect_error(&mut check_config(&fx.config(&cfg)));
    assert!(
        err.contains("hub.fingerprint") && err.contains("https"),
        "{err}"
    );
}

#[test]
fn reconcile_limits_have_defaults_and_bounds() {
    let fx = Fixture::new();
    let out = expect_ok(&mut check_config(&fx.config(&valid_config())));
    assert_eq!(out["reconcile"], json!({"parallel": 3, "queue_depth": 16}));

    let mut cfg = valid_config();
    cfg["reconcile"] = json!({"parallel": 1, "queue_depth": 4});
    let out = expect_ok(&mut check_config(&fx.config(&cfg)));
    assert_eq!(out["reconcile"], json!({"parallel": 1, "queue_depth": 4}));

    for (value, key, why) in [
        (json!({"parallel": 4}), "reconcile.parallel", "at most 3"),
        (json!({"parallel": 0}), "reconcile.parallel", "at least 1"),
        (
            json!({"queue_depth": 100000}),
            "reconcile.queue_depth",
            "at most 256",
        ),
    ] {
        cfg["reconcile"] = value;
        let err = expect_error(&mut check_config(&fx.config(&cfg)));
        assert!(err.contains(key) && err.contains(why), "{err}");
    }
    let err = expect_error(
        check_config(&fx.config(&valid_config())).env("FELHOM_AGENT_RECONCILE_PARALLEL", "9"),
    );
    assert!(
        err.contains("reconcile.parallel") && err.contains("FELHOM_AGENT_RECONCILE_PARALLEL"),
        "{err}"
    );
}

/// Issue 11 item 12: an inline secret in a config file everyone can read is refused, naming the
/// file and its mode; the packaged mode (0640, group = the agent) and 0600 are fine, and a
/// world-readable file whose secrets live in files is fine too.
#[test]
fn inline_secrets_in_a_world_readable_config_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let path = fx.config(&valid_config());
    for ok in [0o600, 0o640] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(ok)).unwrap();
        expect_ok(&mut check_config(&path));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = expect_error(&mut check_config(&path));
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("0644") && err.contains("inline secret"),
        "{err}"
    );

    let token = fx.write("token", TOKEN, 0o600);
    let key = fx.write("hub-key", HUB_KEY, 0o600);
    let mut doc = valid_config();
    doc["proxmox"]["token"] = json!({"file": token.display().to_string()});
    doc["hub"]["api_key"] = json!({"file": key.display().to_string()});
    let path = fx.config(&doc);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    expect_ok(&mut check_config(&path));
}
