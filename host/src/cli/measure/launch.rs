//! `secllama measure launch --config FILE [--format toml|json] [--manifest OUT]`: the events the
//! launcher will extend for a launch description, the PCR values they give, the component digests,
//! and optionally a reference manifest for `secllama-verify`.

use anyhow::Context;
use secllama_measurements::eventlog::events::type_name;
use secllama_measurements::launch::{Launch, Prediction, predict};
use secllama_measurements::manifest::Manifest;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// TOML (the default).
    Toml,
    /// JSON.
    Json,
}

/// Arguments of `secllama measure launch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  $ secllama measure launch --config enclave.toml --ak-public state/ak.pub --manifest manifest.toml"
)]
pub struct Args {
    /// A launch description or the agent's config (TOML with a [launch] table); relative paths are
    /// from its folder.
    #[arg(long)]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "toml")]
    pub format: Format,
    /// Also write a reference manifest (PCRs and enclave digests; add AK trust before use).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Pin this AK in the manifest: a TPM2B_PUBLIC file (`secllama launch` writes `ak.pub` beside
    /// the enclave socket; `tpm2_readpublic -o` writes the same format).
    #[arg(long, requires = "manifest")]
    pub ak_public: Vec<PathBuf>,
}

/// The prediction as a JSON value (also rendered as TOML).
pub fn report(p: &Prediction) -> Value {
    let events: Vec<Value> = p
        .measurements
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let description = m.event_data.get(8..).map(|d| String::from_utf8_lossy(d).to_string()).unwrap_or_default();
            let digests: serde_json::Map<String, Value> =
                m.digests.iter().map(|(b, d)| (b.name().to_string(), Value::String(hex::encode(d)))).collect();
            json!({"index": i + 1, "pcr": m.pcr, "type": type_name(m.event_type), "description": description, "digests": digests})
        })
        .collect();
    let pcrs: serde_json::Map<String, Value> = p
        .pcrs
        .iter()
        .map(|(b, m)| {
            let v: serde_json::Map<String, Value> = m
                .iter()
                .map(|(i, d)| (i.to_string(), Value::String(hex::encode(d))))
                .collect();
            (b.name().to_string(), Value::Object(v))
        })
        .collect();
    let d = &p.digests;
    json!({
        "pcrs": pcrs,
        "enclave": {"agent": hex::encode(d.agent), "runner": hex::encode(d.runner), "model": hex::encode(d.model),
                    "policy": hex::encode(d.policy), "config": hex::encode(d.config),
                    "trees": d.trees.iter().map(|(n, t)| (n.clone(), Value::String(hex::encode(t)))).collect::<serde_json::Map<_, _>>()},
        "events": events,
    })
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let launch =
        Launch::from_embedding_toml(&text).with_context(|| format!("{}", args.config.display()))?;
    let base = args.config.parent().map(PathBuf::from).unwrap_or_default();
    let p = predict(&launch, &base)?;
    let mut out = match args.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&report(&p))?),
        Format::Toml => toml::to_string_pretty(&report(&p))?,
    };
    if let Some(path) = &args.manifest {
        let mut m = Manifest::for_launch(&p);
        for f in &args.ak_public {
            let public = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            m.tpm.ak_publics.push(hex::encode(public));
        }
        m.validate().context("the manifest with the pinned AKs")?;
        let toml = m.to_toml()?;
        std::fs::write(path, toml).with_context(|| format!("writing {}", path.display()))?;
        if args.format == Format::Toml {
            out.push_str(&format!(
                "# reference manifest written to {}\n",
                path.display()
            ));
        }
    }
    Ok(out)
}
