//! Black-box tests of `flowgate rules check|test|compile|keygen` and of a gateway loading its
//! rules from a signed bundle: a valid bundle's rules block requests, an altered or unsigned
//! bundle stops the start with one clear line.

use flowgate_policy::bundle::{verify_bundle, verifying_key_from_base64};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "fga_5c1f0e2d9b8a7c6e5f4d3c2b1a09f8e7d6c5b4a3";

const RULES: &str = r#"
[[rules]]
id = "no-falcon"
description = "codename"
phase = "request"
action = "block"
match = { keywords = ["project falcon"] }

[[rules]]
id = "tickets"
action = "redact"
match = { regex = "TICKET-[0-9]{4}" }
"#;

fn flowgate(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("running flowgate: {err}"))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|err| panic!("writing {name}: {err}"));
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// Asserts a failure with exactly one line on stderr and returns it.
fn one_error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "expected exit code 1");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "expected one error line, got: {text}"
    );
    text
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn check_accepts_good_rules_and_names_the_problem_in_bad_ones() {
    let dir = tempdir();
    write(dir.path(), "rules.toml", RULES);
    let good = flowgate(dir.path(), &[], &["rules", "check", "rules.toml"]);
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("2 rule(s) OK"));
    let on_preset = flowgate(
        dir.path(),
        &[],
        &["rules", "check", "rules.toml", "--preset", "strict"],
    );
    assert!(on_preset.status.success());

    write(
        dir.path(),
        "bad-regex.toml",
        "[[rules]]\nid = \"tickets\"\naction = \"block\"\nmatch = { regex = \"TICKET-([0-9]+\" }\n",
    );
    let line = one_error_line(&flowgate(
        dir.path(),
        &[],
        &["rules", "check", "bad-regex.toml"],
    ));
    assert!(
        line.contains("bad-regex.toml") && line.contains("tickets") && line.contains("regex"),
        "{line}"
    );

    write(
        dir.path(),
        "typo.toml",
        "[[rules]]\nid = \"x\"\naction = \"block\"\nmatch = { keywords = [\"a\"] }\nseverity = 3\n",
    );
    let line = one_error_line(&flowgate(dir.path(), &[], &["rules", "check", "typo.toml"]));
    assert!(line.contains("severity"), "{line}");

    write(
        dir.path(),
        "clash.toml",
        "[[rules]]\nid = \"builtin.credit_card\"\naction = \"flag\"\nmatch = { keywords = [\"a\"] }\n",
    );
    assert!(
        flowgate(dir.path(), &[], &["rules", "check", "clash.toml"])
            .status
            .success(),
        "alone, the id is free"
    );
    let line = one_error_line(&flowgate(
        dir.path(),
        &[],
        &["rules", "check", "clash.toml", "--preset", "default"],
    ));
    assert!(line.contains("duplicate rule id"), "{line}");

    one_error_line(&flowgate(
        dir.path(),
        &[],
        &["rules", "check", "missing.toml"],
    ));
}

#[test]
fn test_prints_the_decision_findings_and_redacted_text() {
    let dir = tempdir();
    write(dir.path(), "rules.toml", RULES);
    let answer = stdout_json(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "test",
            "--text",
            "card 4111 1111 1111 1111, see TICKET-1234",
        ],
    ));
    assert_eq!(answer["decision"], "REDACT");
    assert_eq!(answer["findings"][0]["rule_id"], "builtin.credit_card");
    assert_eq!(answer["findings"][0]["start"], 5);
    assert_eq!(
        answer["redacted_text"], "card [REDACTED:credit_card], see TICKET-1234",
        "without --rules only the preset applies"
    );

    let answer = stdout_json(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "test",
            "--rules",
            "rules.toml",
            "--text",
            "see TICKET-1234",
        ],
    ));
    assert_eq!(answer["decision"], "REDACT");
    assert_eq!(answer["findings"][0]["rule_id"], "tickets");
    assert_eq!(answer["redacted_text"], "see [REDACTED:tickets]");

    write(dir.path(), "prompt.txt", "what is Project Falcon?");
    let answer = stdout_json(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "test",
            "--rules",
            "rules.toml",
            "--file",
            "prompt.txt",
        ],
    ));
    assert_eq!(answer["decision"], "BLOCK");
    assert_eq!(answer["findings"][0]["rule_id"], "no-falcon");
    let answer = stdout_json(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "test",
            "--rules",
            "rules.toml",
            "--file",
            "prompt.txt",
            "--phase",
            "response",
        ],
    ));
    assert_eq!(
        answer["decision"], "ALLOW",
        "the rule screens requests only"
    );

    let answer = stdout_json(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "test",
            "--preset",
            "audit-only",
            "--text",
            "card 4111 1111 1111 1111",
        ],
    ));
    assert_eq!(answer["decision"], "FLAG");

    one_error_line(&flowgate(
        dir.path(),
        &[],
        &["rules", "test", "--text", "x", "--preset", "lenient"],
    ));
    assert!(
        !flowgate(dir.path(), &[], &["rules", "test"])
            .status
            .success(),
        "a text is required"
    );
}

/// Creates a signing key and a signed bundle of `RULES` in `dir`; returns the public key.
fn signed_bundle(dir: &Path) -> String {
    write(dir, "rules.toml", RULES);
    let keys = stdout_json(&flowgate(
        dir,
        &[],
        &["rules", "keygen", "--out", "signing.key"],
    ));
    let public_key = keys["public_key"].as_str().unwrap_or_default().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("signing.key"))
            .map(|meta| meta.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600, "the signing key is owner-only");
    }
    let compiled = stdout_json(&flowgate(
        dir,
        &[],
        &[
            "rules",
            "compile",
            "rules.toml",
            "--sign",
            "signing.key",
            "--out",
            "acme.bundle",
            "--version",
            "7",
        ],
    ));
    assert_eq!(compiled["signed"], true);
    assert_eq!(compiled["rules"], 2);
    assert_eq!(compiled["key_id"], keys["key_id"]);
    public_key
}

#[test]
fn compile_writes_a_bundle_that_verifies_with_the_printed_key() {
    let dir = tempdir();
    let public_key = signed_bundle(dir.path());
    let document =
        std::fs::read(dir.path().join("acme.bundle")).unwrap_or_else(|err| panic!("{err}"));
    let key = verifying_key_from_base64(&public_key).unwrap_or_else(|err| panic!("{err}"));
    let bundle = verify_bundle(&document, &key).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(bundle.metadata.name, "rules");
    assert_eq!(bundle.metadata.version, 7);
    assert_eq!(bundle.rules.len(), 2);

    // keygen never overwrites a key; compile refuses rules that do not compile.
    one_error_line(&flowgate(
        dir.path(),
        &[],
        &["rules", "keygen", "--out", "signing.key"],
    ));
    write(
        dir.path(),
        "bad.toml",
        "[[rules]]\nid = \"r\"\naction = \"block\"\nmatch = { regex = \"(\" }\n",
    );
    one_error_line(&flowgate(
        dir.path(),
        &[],
        &[
            "rules",
            "compile",
            "bad.toml",
            "--sign",
            "signing.key",
            "--out",
            "bad.bundle",
        ],
    ));
    assert!(!dir.path().join("bad.bundle").exists());
}

fn production_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "FLOWGATE_MASTER_KEY",
            flowgate_types::MasterKey::generate().to_base64(),
        ),
        ("FLOWGATE_ADMIN_API_KEY", ADMIN.to_owned()),
        (
            "FLOWGATE_DATABASE_URL",
            format!("sqlite://{}/db/flowgate.db", dir.display()),
        ),
    ]
}

#[test]
fn a_gateway_refuses_an_altered_or_unsigned_bundle_with_one_line() {
    let dir = tempdir();
    let public_key = signed_bundle(dir.path());
    let config = format!(
        "[policy]\nbundle = \"acme.bundle\"\nrequire_signature = true\nbundle_public_key = \"{public_key}\"\n"
    );
    write(dir.path(), "flowgate.toml", &config);
    let env = production_env(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let checked = flowgate(dir.path(), &env, &["config", "check"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let signed = std::fs::read_to_string(dir.path().join("acme.bundle"))
        .unwrap_or_else(|err| panic!("{err}"));
    let altered = signed.replace("\"block\"", "\"flag\"");
    assert_ne!(altered, signed);
    write(dir.path(), "acme.bundle", &altered);
    let line = one_error_line(&flowgate(dir.path(), &env, &["serve"]));
    assert!(
        line.contains("policy.bundle") && line.contains("altered"),
        "{line}"
    );

    let unsigned = stdout_json(&flowgate(
        dir.path(),
        &[],
        &["rules", "compile", "rules.toml", "--out", "acme.bundle.new"],
    ));
    assert_eq!(unsigned["signed"], false);
    std::fs::rename(
        dir.path().join("acme.bundle.new"),
        dir.path().join("acme.bundle"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let line = one_error_line(&flowgate(dir.path(), &env, &["serve"]));
    assert!(line.contains("not signed"), "{line}");

    std::fs::remove_file(dir.path().join("acme.bundle")).unwrap_or_else(|err| panic!("{err}"));
    let line = one_error_line(&flowgate(dir.path(), &env, &["serve"]));
    assert!(line.contains("policy.bundle"), "{line}");
}

/// Waits for the development banner; returns (base URL, demo tenant key).
/// The dev banner's gateway URL and demo key. The rest of the child's stdout and its stderr
/// keep being read (into the returned buffer), so the gateway never writes into a closed or
/// full pipe.
fn wait_for_banner(child: &mut Child) -> (String, String, Arc<Mutex<String>>) {
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut key) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while (base.is_none() || key.is_none()) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("gateway:") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("demo tenant key:") {
            key = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let output = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    if let Some(stderr) = child.stderr.take() {
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
    }
    match (base, key) {
        (Some(base), Some(key)) => (base, key, output),
        _ => {
            let _ = child.kill();
            panic!("dev banner not printed");
        }
    }
}

#[test]
fn a_gateway_serves_with_the_rules_of_a_signed_bundle() {
    let dir = tempdir();
    let public_key = signed_bundle(dir.path());
    write(
        dir.path(),
        "flowgate.toml",
        &format!("[policy]\nbundle = \"acme.bundle\"\nbundle_public_key = \"{public_key}\"\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--dev", "--config", "flowgate.toml"])
        .current_dir(dir.path())
        .env_clear()
        .env("FLOWGATE_PORT", "0")
        .env("FLOWGATE_INTERNAL_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn: {err}"));
    let (base, key, output) = wait_for_banner(&mut child);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let chat = |text: &str| {
        let body = serde_json::json!({"model": "mock-chat", "messages": [{"role": "user", "content": text}]});
        let authorization = format!("Bearer {key}");
        let headers = [
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        runtime.block_on(async {
            flowgate_test_support::TestClient::new()
                .try_call(
                    http::Method::POST,
                    &format!("{base}/v1/chat/completions"),
                    &headers,
                    body.to_string(),
                )
                .await
                .unwrap_or_else(|err| {
                    let output = output.lock().map(|text| text.clone()).unwrap_or_default();
                    panic!("{err}; the gateway wrote:\n{output}")
                })
        })
    };
    let blocked = chat("status of project falcon?");
    let allowed = chat("hi there");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        blocked.status,
        http::StatusCode::FORBIDDEN,
        "{}",
        blocked.text()
    );
    assert!(blocked.text().contains("no-falcon"), "{}", blocked.text());
    assert_eq!(allowed.status, http::StatusCode::OK, "{}", allowed.text());
}
