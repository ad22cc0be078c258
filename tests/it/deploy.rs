//! Issue 16: what can be checked of deploy/kubernetes without a cluster.
//! The manifests parse; the container's config passes `config check`; the
//! probe paths and ports are the ones the config serves; the preStop drain
//! works against a running server, which then exits 0.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::free_port;

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// Every document of a YAML file, parsed by PyYAML (Debian's python3-yaml,
/// installed by scripts/test.sh), as JSON.
fn yaml(file: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(format!("{DIR}/{file}"))
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "{file} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The status of `GET path` on `addr`, if it answers.
fn get(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.get(9..12)?.parse().ok()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_kubernetes_manifests_parse_and_their_config_probes_and_prestop_work() {
    // Every manifest parses and names its kind.
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            for d in yaml(&name) {
                assert!(
                    d["apiVersion"].is_string() && d["kind"].is_string(),
                    "{name}"
                );
                assert_eq!(d["metadata"]["name"], "turnpike", "{name}");
                docs.push(d);
            }
        }
    }
    let of_kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap().clone();
    let (ds, cm) = (of_kind("DaemonSet"), of_kind("ConfigMap"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_BIND_SERVICE"])
    );

    // The container's config, as the ConfigMap mounts it.
    let toml_text = cm["data"]["turnserver.toml"].as_str().unwrap().to_string();
    let config: toml::Value = toml::from_str(&toml_text).unwrap();
    let health_port = port_of(config["health_listen"].as_str().unwrap());
    let turn_port = port_of(config["listen"][0].as_str().unwrap());
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], health_port, "{probe}");
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    let ports: Vec<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(ports.contains(&u64::from(turn_port)) && ports.contains(&u64::from(health_port)));
    let drain_timeout = config["drain_timeout"].as_integer().unwrap();
    assert!(
        pod["terminationGracePeriodSeconds"].as_i64().unwrap() > drain_timeout,
        "the grace period covers the drain"
    );

    // Here: the same file with free loopback ports and the Secret's files
    // in a temporary directory.
    let dir = std::env::temp_dir().join(format!("turnpike-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("secret")).unwrap();
    for (file, value) in [
        ("admin-jwt-secret", "k8s-test-admin-secret-0123456789"),
        ("static-auth-secret", "k8s-test-rest-secret"),
    ] {
        let path = dir.join("secret").join(file);
        std::fs::write(&path, value).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let db = crate::temp_db();
    let file = dir.join("turnserver.toml");
    // The container's args, with this file.
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("/etc/turnpike/turnserver.toml", file.to_str().unwrap())
        })
        .collect();
    assert_eq!(args[0], "serve");
    // Run it as the container would (the database URL from the Secret's
    // variable) until the health port answers. The ports are free for TCP
    // and UDP when picked, but a parallel test may take one before the
    // server binds: then it exits saying so, and new ports are picked.
    let log = dir.join("serve.log");
    let mut started = None;
    for _ in 0..3 {
        let (turn, admin, health) = (free_port(), free_port(), free_port());
        let local = toml_text
            .replace(
                "/etc/turnpike/secret",
                &dir.join("secret").display().to_string(),
            )
            .replace("0.0.0.0:3478", &format!("127.0.0.1:{turn}"))
            .replace("127.0.0.1:9641", &format!("127.0.0.1:{admin}"))
            .replace("0.0.0.0:9642", &format!("127.0.0.1:{health}"));
        std::fs::write(&file, local).unwrap();
        // `config check` passes on it.
        let check = Command::new(env!("CARGO_BIN_EXE_turnpike"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut server = Command::new(env!("CARGO_BIN_EXE_turnpike"))
            .args(&args)
            .env("TURNPIKE_DB", &db)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let health_addr: std::net::SocketAddr = format!("127.0.0.1:{health}").parse().unwrap();
        let begun = Instant::now();
        let up = loop {
            if std::net::TcpStream::connect_timeout(&health_addr, Duration::from_secs(1)).is_ok() {
                break true;
            }
            if server.try_wait().unwrap().is_some() || begun.elapsed() > Duration::from_secs(10) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if up {
            started = Some((server, health_addr));
            break;
        }
        let _ = server.kill();
        let _ = server.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("in use"),
            "the health listener comes up; the server said:\n{text}"
        );
    }
    let (mut server, health_addr) = started.expect("a start without a port taken meanwhile");
    for path in ["/livez", "/readyz"] {
        let ok = (0..30).any(|_| {
            get(health_addr, path) == Some(200) || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(ok, "{path} answers 200");
    }

    // The preStop hook, with this binary and file: drains and waits; the
    // server exits 0.
    let hook: Vec<String> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("/usr/bin/turnpike", env!("CARGO_BIN_EXE_turnpike"))
                .replace("/etc/turnpike/turnserver.toml", file.to_str().unwrap())
        })
        .collect();
    let pre_stop = Command::new(&hook[0])
        .args(&hook[1..])
        .env("TURNPIKE_DB", &db)
        .output()
        .unwrap();
    assert!(
        pre_stop.status.success(),
        "preStop: {}",
        String::from_utf8_lossy(&pre_stop.stderr)
    );
    // Its listeners close as it exits: give the exit a moment.
    let mut status = None;
    for _ in 0..50 {
        status = server.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "the server exited 0 once preStop returned: {status:?}"
    );
    let _ = server.kill();
    std::fs::remove_dir_all(&dir).ok();
}
