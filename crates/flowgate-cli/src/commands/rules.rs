//! `flowgate rules check|test|compile|keygen`: policy rules files (`[[rules]]` TOML) checked
//! and tried offline, compiled into (signed) bundles for `[policy] bundle`, and the Ed25519
//! key pair that signs them. Parsing, compiling, evaluating and signing are
//! `flowgate-policy`'s; this module reads and writes the files and prints the results.

use crate::output;
use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use flowgate_policy::bundle::{BundleMetadata, PolicyBundle, SigningKey, key_id};
use flowgate_policy::{EvalContext, Policy, Preset, Rule, parse_rules_toml};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Parse and compile a `[[rules]]` TOML file; exits non-zero with one line on error.
    Check {
        file: PathBuf,
        /// Also compile on top of this preset (catches ids that repeat a preset rule).
        #[arg(long)]
        preset: Option<String>,
    },
    /// Screen a sample text and print the decision, findings and redacted text as JSON.
    Test {
        /// The text to screen.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        /// Read the text to screen from this file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// A `[[rules]]` TOML file to add to the preset.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// default, strict or audit-only (default: default).
        #[arg(long)]
        preset: Option<String>,
        /// request or response (default: request).
        #[arg(long, default_value = "request")]
        phase: String,
    },
    /// Compile a `[[rules]]` TOML file into a policy bundle, signed with --sign.
    Compile {
        file: PathBuf,
        /// The Ed25519 signing key file (base64 of a 32-byte seed, from `rules keygen`).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
        /// Where to write the bundle.
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        /// The bundle's name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        /// The bundle's revision (default: 1).
        #[arg(long, default_value_t = 1)]
        version: u64,
        /// A preset recorded in the bundle (informational: tenants keep their own preset).
        #[arg(long)]
        preset: Option<String>,
    },
    /// Create an Ed25519 key pair for signing bundles: the secret seed goes to --out (mode
    /// 0600), the public key (for `policy.bundle_public_key`) is printed.
    Keygen {
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
    },
}

pub fn run(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { file, preset } => check(&file, preset.as_deref()),
        RulesCommand::Test {
            text,
            file,
            rules,
            preset,
            phase,
        } => test(
            text,
            file.as_deref(),
            rules.as_deref(),
            preset.as_deref(),
            &phase,
        ),
        RulesCommand::Compile {
            file,
            sign,
            out,
            name,
            version,
            preset,
        } => compile(&CompileArgs {
            file: &file,
            sign: sign.as_deref(),
            out: &out,
            name,
            version,
            preset: preset.as_deref(),
        }),
        RulesCommand::Keygen { out } => keygen(&out),
    }
}

fn read_rules(file: &Path) -> anyhow::Result<Vec<Rule>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read rules file {}", file.display()))?;
    parse_rules_toml(&text).with_context(|| file.display().to_string())
}

fn preset_named(name: Option<&str>) -> anyhow::Result<Option<Preset>> {
    match name {
        None => Ok(None),
        Some(name) => match Preset::from_name(name) {
            Some(preset) => Ok(Some(preset)),
            None => bail!(
                "unknown preset `{name}` (expected one of {})",
                Preset::ALL.map(Preset::as_str).join(", ")
            ),
        },
    }
}

fn check(file: &Path, preset: Option<&str>) -> anyhow::Result<()> {
    let rules = read_rules(file)?;
    let preset = preset_named(preset)?;
    Policy::compile(preset, &rules).with_context(|| file.display().to_string())?;
    output::line(&format!("{}: {} rule(s) OK", file.display(), rules.len()));
    Ok(())
}

fn test(
    text: Option<String>,
    file: Option<&Path>,
    rules: Option<&Path>,
    preset: Option<&str>,
    phase: &str,
) -> anyhow::Result<()> {
    let text = match (text, file) {
        (Some(text), _) => text,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) => bail!("give the text to screen with --text or --file"),
    };
    let rules = match rules {
        Some(file) => read_rules(file)?,
        None => Vec::new(),
    };
    let preset = preset_named(preset)?.unwrap_or_default();
    let context = match phase {
        "request" => EvalContext::request(),
        "response" => EvalContext::response(),
        other => bail!("unknown phase `{other}` (expected request or response)"),
    };
    let policy = Policy::compile(Some(preset), &rules)?;
    let answer = policy.evaluate(&text, &context).to_test_answer(&text);
    output::json(&serde_json::to_value(&answer)?);
    Ok(())
}

struct CompileArgs<'a> {
    file: &'a Path,
    sign: Option<&'a Path>,
    out: &'a Path,
    name: Option<String>,
    version: u64,
    preset: Option<&'a str>,
}

fn compile(args: &CompileArgs<'_>) -> anyhow::Result<()> {
    let rules = read_rules(args.file)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.file.file_stem().map_or_else(
            || "rules".to_owned(),
            |stem| stem.to_string_lossy().into_owned(),
        )
    });
    let bundle = PolicyBundle::new(
        BundleMetadata {
            name,
            version: args.version,
            created_at: None,
            description: String::new(),
        },
        preset_named(args.preset)?,
        rules,
    );
    let (document, signer) = match args.sign {
        Some(key_file) => {
            let key = read_signing_key(key_file)?;
            let document = bundle
                .sign(&key)
                .with_context(|| args.file.display().to_string())?;
            (document, Some(key_id(&key.verifying_key())))
        }
        None => (
            bundle
                .to_unsigned_document()
                .with_context(|| args.file.display().to_string())?,
            None,
        ),
    };
    std::fs::write(args.out, document.as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    output::json(&json!({
        "bundle": args.out.display().to_string(),
        "name": bundle.metadata.name,
        "version": bundle.metadata.version,
        "rules": bundle.rules.len(),
        "signed": signer.is_some(),
        "key_id": signer,
    }));
    Ok(())
}

fn read_signing_key(file: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read signing key {}", file.display()))?;
    flowgate_policy::bundle::signing_key_from_base64(&text)
        .with_context(|| format!("signing key {}", file.display()))
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a key",
            out.display()
        );
    }
    let seed: [u8; 32] = flowgate_types::random_bytes();
    let key = SigningKey::from_bytes(&seed);
    let engine = base64::engine::general_purpose::STANDARD;
    write_secret(out, &engine.encode(seed))?;
    output::json(&json!({
        "signing_key_file": out.display().to_string(),
        "public_key": engine.encode(key.verifying_key().to_bytes()),
        "key_id": key_id(&key.verifying_key()),
    }));
    Ok(())
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_named_or_refused() {
        assert_eq!(
            preset_named(Some("strict")).ok().flatten(),
            Some(Preset::Strict)
        );
        assert!(preset_named(Some("lenient")).is_err());
        assert_eq!(preset_named(None).ok().flatten(), None);
    }
}
